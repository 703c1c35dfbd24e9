package mailcluster

import (
	"net/netip"
	"strings"
)

// Settings of [Network] in the main ini file, read at every connection.
const (
	SectionNetwork = "Network"
	// KeyProxyProtocolFrom lists the load balancers (IPs and CIDRs,
	// separated by commas or spaces) whose connections to the SMTP,
	// submission, IMAP and POP3 listeners must start with a PROXY protocol
	// header (v1 or v2) naming the real client. Empty (the default): no
	// PROXY header is ever read; from an address not listed, a connection
	// is an ordinary client whatever it sends.
	KeyProxyProtocolFrom = "ProxyProtocolFrom"
)

// ParsePrefixList parses a list of IP addresses and CIDR prefixes
// separated by commas or white space ("10.0.0.10, 192.168.0.0/24 ::1").
// An address stands for itself (a /32 or /128). An empty list is valid.
// Errors: EINVALID naming the first bad entry.
func ParsePrefixList(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		if strings.Contains(f, "/") {
			p, err := netip.ParsePrefix(f)
			if err != nil || p.Addr().Zone() != "" {
				return nil, Errorf(EINVALID, "%q is not an IP address or CIDR prefix (like 10.0.0.10 or 10.0.0.0/24).", f)
			}
			if p.Addr().Is4In6() {
				if p.Bits() < 96 {
					return nil, Errorf(EINVALID, "%q mixes IPv4 and IPv6: write IPv4 prefixes as a.b.c.d/n.", f)
				}
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil || a.Zone() != "" {
			return nil, Errorf(EINVALID, "%q is not an IP address or CIDR prefix (like 10.0.0.10 or 10.0.0.0/24).", f)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// prefixListRule is the setting rule of a list of IPs and CIDR prefixes.
func prefixListRule(v string) string {
	if _, err := ParsePrefixList(v); err != nil {
		return ErrorMessage(err)
	}
	return ""
}
