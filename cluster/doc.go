// Package cluster is a node's side of the Consul cluster: the fenced Consul
// KV store and its watch, the election of the primary, the service
// registration, admission of new nodes, and the node-to-node calls that
// carry reports to the primary.
package cluster
