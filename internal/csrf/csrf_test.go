package csrf_test

import (
	"crypto/tls"
	"net/http/httptest"
	"testing"

	"mailcluster/internal/csrf"
)

func TestSameOrigin(t *testing.T) {
	for _, tt := range []struct {
		name    string
		host    string
		tls     bool
		headers map[string]string
		want    bool
	}{
		{"NoOrigin", "node.test:8080", false, nil, true},
		{"Same", "node.test:8080", false, map[string]string{"Origin": "http://node.test:8080"}, true},
		{"SameCase", "Node.Test:8080", false, map[string]string{"Origin": "http://NODE.test:8080"}, true},
		{"SameDefaultPort", "node.test", false, map[string]string{"Origin": "http://node.test:80"}, true},
		{"SameTLS", "node.test", true, map[string]string{"Origin": "https://node.test"}, true},
		{"SameIPv6", "[::1]:8080", false, map[string]string{"Origin": "http://[::1]:8080"}, true},
		{"ForwardedProto", "node.test", false, map[string]string{"Origin": "https://node.test", "X-Forwarded-Proto": "https"}, true},
		{"ForwardedHost", "127.0.0.1:8080", false, map[string]string{"Origin": "http://mail.example", "X-Forwarded-Host": "mail.example"}, true},
		{"ErrOtherHost", "node.test:8080", false, map[string]string{"Origin": "http://evil.test"}, false},
		{"ErrOtherPort", "node.test:8080", false, map[string]string{"Origin": "http://node.test:8081"}, false},
		{"ErrOtherScheme", "node.test", false, map[string]string{"Origin": "https://node.test"}, false},
		{"ErrPlainOverTLS", "node.test", true, map[string]string{"Origin": "http://node.test"}, false},
		{"ErrNull", "node.test", false, map[string]string{"Origin": "null"}, false},
		{"ErrEmpty", "node.test", false, map[string]string{"Origin": ""}, false},
		{"ErrNotOrigin", "node.test", false, map[string]string{"Origin": "http://node.test/path"}, false},
		{"ErrFile", "node.test", false, map[string]string{"Origin": "file://node.test"}, false},
		{"ErrSuffix", "node.test", false, map[string]string{"Origin": "http://node.test.evil.test"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/MdMgmtWS", nil)
			r.Host = tt.host
			if tt.tls {
				r.TLS = &tls.ConnectionState{}
			}
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			if got := csrf.SameOrigin(r); got != tt.want {
				t.Fatalf("SameOrigin = %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("ErrTwoOrigins", func(t *testing.T) {
		r := httptest.NewRequest("POST", "/", nil)
		r.Host = "node.test"
		r.Header.Add("Origin", "http://node.test")
		r.Header.Add("Origin", "http://evil.test")
		if csrf.SameOrigin(r) {
			t.Fatal("two Origin headers accepted")
		}
	})
}

func TestIsXML(t *testing.T) {
	for ct, want := range map[string]bool{
		"text/xml":                            true,
		"text/xml; charset=utf-8":             true,
		"Application/XML":                     true,
		"application/soap+xml; charset=utf-8": true,
		"":                                    false,
		"text/plain":                          false,
		"application/x-www-form-urlencoded":   false,
		"multipart/form-data; boundary=x":     false,
		"text/xml-external-parsed-entity":     false,
		"text/plain+xml":                      false,
		"text/xml; charset":                   false,
	} {
		if got := csrf.IsXML(ct); got != want {
			t.Errorf("IsXML(%q) = %v, want %v", ct, got, want)
		}
	}
}
