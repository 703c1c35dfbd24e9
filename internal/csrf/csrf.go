// Package csrf holds the checks that keep a web browser from being used
// against the management APIs (cross-site request forgery): a page of
// another site can make a browser send a "simple" request (a form post,
// Content-Type text/plain, application/x-www-form-urlencoded or
// multipart/form-data) with the Basic credentials the browser has cached.
// Such a request carries the other site's Origin (RFC 6454, Fetch
// standard) and cannot carry custom headers or an XML or JSON content
// type without a CORS preflight, which the servers never grant.
package csrf

import (
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// SameOrigin reports whether r may be served as far as its Origin header
// goes: true when the header is absent (not a browser, or a same-origin
// navigation that sends none) or names the server's own origin. The own
// origin is the scheme (https when the request came over TLS, or what
// X-Forwarded-Proto says) with the Host of the request, or with
// X-Forwarded-Host; a cross-site browser request cannot set those headers.
// Default ports (80 for http, 443 for https) compare equal to none, names
// compare without regard to case. "Origin: null" is never the own origin.
func SameOrigin(r *http.Request) bool {
	vals := r.Header.Values("Origin")
	if len(vals) == 0 {
		return true
	}
	if len(vals) != 1 {
		return false
	}
	origin, ok := normalize(vals[0])
	if !ok {
		return false
	}
	schemes := []string{"http"}
	if r.TLS != nil {
		schemes = []string{"https"}
	} else if p := strings.ToLower(strings.TrimSpace(firstValue(r.Header.Get("X-Forwarded-Proto")))); p == "https" || p == "http" {
		schemes = []string{p}
	}
	hosts := []string{r.Host}
	if h := firstValue(r.Header.Get("X-Forwarded-Host")); h != "" {
		hosts = append(hosts, h)
	}
	for _, scheme := range schemes {
		for _, host := range hosts {
			if own, ok := normalize(scheme + "://" + strings.TrimSpace(host)); ok && own == origin {
				return true
			}
		}
	}
	return false
}

// firstValue returns the first entry of a comma-separated header value.
func firstValue(v string) string {
	if i := strings.IndexByte(v, ','); i >= 0 {
		v = v[:i]
	}
	return strings.TrimSpace(v)
}

// normalize returns an origin as scheme://host[:port], lower-cased and
// without a default port; ok is false when s is no http(s) origin.
func normalize(s string) (string, bool) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", false
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return "", false
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	if port != "" {
		host = net.JoinHostPort(host, port)
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return scheme + "://" + host, true
}

// IsXML reports whether a Content-Type header value is an XML media type:
// text/xml, application/xml or any application/*+xml, parameters (such as
// charset) allowed. Everything else, an absent or malformed header
// included, is not.
func IsXML(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "text/xml" || mt == "application/xml" ||
		strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+xml")
}
