// Package integration holds tests that build the mailcluster binary and
// drive real processes over their real listeners (HTTP now; Consul and
// SMTP as the cluster grows). Every process a test starts is stopped in
// t.Cleanup, also when the test fails.
package integration
