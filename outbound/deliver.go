package outbound

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
)

// delivery is one call of Deliver.
type delivery struct {
	c       *Client
	domain  string
	msg     Message
	body    io.Reader // the opened message
	results []Result
	pending []int // indexes of recipients without a result yet
	tries   int   // connections made
}

// target is where a session goes.
type target struct {
	host      string // MX host or smarthost name, for results and TLS
	port      int
	mode      TLSMode
	smarthost bool
}

// run fills d.results.
func (d *delivery) run(ctx context.Context) {
	for i, rcpt := range d.msg.Rcpts {
		d.results[i].Rcpt = rcpt
		switch {
		case !validAddress(rcpt, false):
			d.results[i] = permanent("", "5.1.3", "invalid recipient address").result(rcpt)
		case d.c.cfg.Smarthost == nil && !strings.EqualFold(strings.TrimSuffix(domainOf(rcpt), "."), d.domain):
			// A caller's mistake: keep the message for when it is fixed.
			d.results[i] = temporary("", "4.3.5", "recipient is not in domain %s", d.domain).result(rcpt)
		default:
			d.pending = append(d.pending, i)
		}
	}
	if len(d.pending) == 0 {
		return
	}
	if !validAddress(d.msg.From, true) {
		d.failAll(permanent("", "5.1.7", "invalid sender address"))
		return
	}
	if d.msg.Open == nil {
		d.failAll(temporary("", "4.3.0", "no message to send"))
		return
	}
	rc, err := d.msg.Open()
	if err != nil {
		d.c.log.Error("outbound: open message", "domain", d.domain, "err", err)
		d.failAll(temporary("", "4.3.0", "the queued message cannot be read"))
		return
	}
	defer rc.Close()
	d.body = rc
	if sh := d.c.cfg.Smarthost; sh != nil {
		d.viaSmarthost(ctx, sh)
	} else {
		d.viaMX(ctx)
	}
}

// failAll gives every pending recipient f.
func (d *delivery) failAll(f *failure) {
	for _, i := range d.pending {
		d.results[i] = f.result(d.msg.Rcpts[i])
	}
	d.pending = nil
}

// requireTLS reports whether the destination domain must be encrypted.
func (d *delivery) requireTLS() bool {
	return d.c.cfg.RequireTLS != nil && d.c.cfg.RequireTLS(d.domain)
}

// viaMX tries the MX hosts of the domain in order (RFC 5321 5.1).
func (d *delivery) viaMX(ctx context.Context) {
	mxs, err := d.c.resolver.mx(ctx, d.domain)
	switch {
	case errors.Is(err, errNXDomain):
		d.failAll(permanent("", "5.1.2", "domain %s does not exist (DNS: NXDOMAIN)", d.domain))
		return
	case err != nil:
		d.c.log.Warn("outbound: MX lookup", "domain", d.domain, "err", err)
		d.failAll(temporary("", "4.4.3", "DNS lookup of the MX records of %s failed; will retry", d.domain))
		return
	case isNullMX(mxs):
		d.failAll(permanent("", "5.1.10", "domain %s accepts no mail (null MX, RFC 7505)", d.domain))
		return
	}
	mode := TLSOpportunistic
	if d.requireTLS() {
		mode = TLSStartTLS
	}
	var hosts []string
	for _, mx := range mxs {
		if h := strings.TrimSuffix(mx.Host, "."); h != "" {
			hosts = append(hosts, h)
		}
	}
	implicit := len(hosts) == 0
	if implicit {
		hosts = []string{d.domain}
	}
	var last *failure
	for _, h := range hosts {
		ips, err := d.c.resolver.addrs(ctx, h)
		if implicit && (errors.Is(err, errNXDomain) || err == nil && len(ips) == 0) {
			d.failAll(permanent("", "5.1.2", "domain %s has no MX and no address record", d.domain))
			return
		}
		if err != nil || len(ips) == 0 {
			d.c.log.Warn("outbound: address lookup", "domain", d.domain, "host", h, "err", err)
			last = temporary("", "4.4.3", "MX host %s of %s has no usable address", h, d.domain)
			continue
		}
		if f := d.tryAddrs(ctx, target{host: h, port: d.c.cfg.Port, mode: mode}, ips); f != nil {
			last = f
			continue
		}
		return
	}
	if last == nil {
		last = temporary("", "4.4.1", "no MX host of %s could be tried", d.domain)
	}
	d.failAll(last)
}

// viaSmarthost sends everything to the smarthost.
func (d *delivery) viaSmarthost(ctx context.Context, sh *Smarthost) {
	t := target{host: sh.Host, port: sh.Port, mode: sh.TLS, smarthost: true}
	if t.mode == "" {
		t.mode = TLSOpportunistic
	}
	if t.port <= 0 {
		t.port = 587
		if t.mode == TLSImplicit {
			t.port = 465
		}
	}
	if d.requireTLS() && (t.mode == TLSNone || t.mode == TLSOpportunistic) {
		t.mode = TLSStartTLS
	}
	ips, err := d.c.resolver.addrs(ctx, sh.Host)
	if err != nil || len(ips) == 0 {
		d.c.log.Warn("outbound: smarthost address lookup", "host", sh.Host, "err", err)
		d.failAll(temporary("", "4.4.3", "smarthost %s has no usable address", sh.Host))
		return
	}
	if f := d.tryAddrs(ctx, t, ips); f != nil {
		d.failAll(f)
	}
}

// tryAddrs tries the addresses of one host until a session reaches the
// transaction; it returns the last failure when none did.
func (d *delivery) tryAddrs(ctx context.Context, t target, ips []net.IP) *failure {
	var last *failure
	for _, ip := range ips {
		if d.tries >= maxAttempts {
			break
		}
		if ctx.Err() != nil {
			return temporary("", "4.4.7", "delivery canceled")
		}
		d.tries++
		f := d.session(ctx, t, ip)
		if f != nil && f.plainRetry && d.tries < maxAttempts && ctx.Err() == nil {
			d.tries++
			plain := t
			plain.mode = TLSNone
			f = d.session(ctx, plain, ip)
		}
		if f == nil {
			return nil
		}
		last = f
	}
	return last
}

// validAddress reports whether addr can be sent in MAIL or RCPT: no
// control characters, angle brackets or spaces, a local part and a domain
// (the null sender when nullOK).
func validAddress(addr string, nullOK bool) bool {
	if addr == "" {
		return nullOK
	}
	if len(addr) > 320 || strings.ContainsAny(addr, "<> \t") {
		return false
	}
	for _, r := range addr {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	at := strings.LastIndexByte(addr, '@')
	return at > 0 && at < len(addr)-1
}

// domainOf returns the domain of addr in lower case.
func domainOf(addr string) string {
	return strings.ToLower(addr[strings.LastIndexByte(addr, '@')+1:])
}
