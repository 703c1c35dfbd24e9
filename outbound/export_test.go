package outbound

import "net"

// NewWithGoResolver returns a Client whose DNS lookups go through r (the
// path taken when /etc/resolv.conf cannot be read).
func NewWithGoResolver(cfg Config, r *net.Resolver) *Client {
	c := New(cfg)
	c.resolver.servers = nil
	c.resolver.goRes = r
	return c
}
