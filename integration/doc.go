// Package integration holds tests that build the mailcluster binary and
// drive real processes over their real listeners (HTTP, SMTP, Consul).
// The processes are started through internal/harness, which the
// benchmarks (bench/) share. Every process a test starts is stopped in
// t.Cleanup, also when the test fails.
package integration
