package cluster_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"mailcluster"
	"mailcluster/cluster"
	"mailcluster/internal/nodeauth"
	"mailcluster/internal/testcert"
)

var testKey = nodeauth.Key("test-cluster-secret")

// internalPeer is a fake node's internal API: it verifies every request
// with nodeauth and records what it accepted.
type internalPeer struct {
	mu       sync.Mutex
	accepted []string // "node method path tls"
	refused  []error
}

func (p *internalPeer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	v := verifiers.get(r.Host)
	node, err := v.Verify(r, func() ([]byte, error) { return io.ReadAll(r.Body) })
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.refused = append(p.refused, err)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	p.accepted = append(p.accepted, node+" "+r.Method+" "+r.URL.RequestURI()+" "+map[bool]string{true: "tls", false: "plain"}[r.TLS != nil])
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"index":7,"name":"node1","unixNano":1,"entries":[]}`)
}

func (p *internalPeer) Accepted() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.accepted...)
}

// verifiers keeps one verifier per listener, like one per node.
var verifiers = &verifierSet{m: map[string]*nodeauth.Verifier{}}

type verifierSet struct {
	mu sync.Mutex
	m  map[string]*nodeauth.Verifier
}

func (s *verifierSet) get(host string) *nodeauth.Verifier {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[host] == nil {
		s.m[host] = nodeauth.NewVerifier(testKey)
	}
	return s.m[host]
}

func TestInternalClientSigns(t *testing.T) {
	peer := &internalPeer{}
	srv := httptest.NewServer(peer)
	t.Cleanup(srv.Close)
	c := &cluster.InternalClient{Signer: &nodeauth.Signer{Key: testKey, Node: "node2"}}
	ctx := context.Background()
	if idx, err := c.SendUsage(ctx, srv.URL, mailcluster.UsageReport{Node: "node2", Epoch: "e1"}); err != nil || idx != 7 {
		t.Fatalf("SendUsage = %d, %v", idx, err)
	}
	if err := c.SendFailures(ctx, srv.URL, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Info(ctx, srv.URL); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Time(ctx, srv.URL); err != nil {
		t.Fatal(err)
	}
	if _, err := c.NodeLogFrom(ctx, srv.URL, mailcluster.ClusterLogFilter{Level: "warn", Limit: 5}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"node2 POST /internal/v1/usage plain",
		"node2 POST /internal/v1/screening/failures plain",
		"node2 GET /internal/v1/info plain",
		"node2 GET /internal/v1/time plain",
		"node2 GET /internal/v1/log?level=warn&limit=5 plain",
	}
	if got := peer.Accepted(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("accepted:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	t.Run("ErrNoKey", func(t *testing.T) {
		for _, c := range []*cluster.InternalClient{{}, {Signer: &nodeauth.Signer{Node: "node2"}}} {
			if err := c.SendFailures(ctx, srv.URL, nil); err == nil {
				t.Error("a client without a key sent a request")
			}
		}
		if n := len(peer.Accepted()); n != len(want) {
			t.Errorf("%d requests accepted", n)
		}
	})
}

// TestInternalClientTLS checks that a node advertising an HTTPS internal
// URL is called there, that its certificate must be one this node serves
// (pinned), and that a failed TLS call never falls back to plain HTTP.
func TestInternalClientTLS(t *testing.T) {
	cluster1 := testcert.New(testcert.Options{Names: []string{"mail.example.com"}})
	foreign := testcert.New(testcert.Options{Names: []string{"mail.example.com"}})
	peer := &internalPeer{}
	plain := httptest.NewServer(peer)
	t.Cleanup(plain.Close)
	secure := httptest.NewUnstartedServer(peer)
	cert, err := tls.X509KeyPair([]byte(cluster1.Chain), []byte(cluster1.Key))
	if err != nil {
		t.Fatal(err)
	}
	secure.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	secure.StartTLS()
	t.Cleanup(secure.Close)
	plainHost := mustHost(t, plain.URL)

	pins := &pinSet{m: map[string]string{"mail": cluster1.Fingerprint}}
	lookups := 0
	tlsRoute := &cluster.InternalTLS{
		Peers: func(context.Context) (map[string]string, error) {
			lookups++
			return map[string]string{plainHost: secure.URL}, nil
		},
		Pins: pins.get,
	}
	c := &cluster.InternalClient{Signer: &nodeauth.Signer{Key: testKey, Node: "node2"}, TLS: tlsRoute}
	ctx := context.Background()

	t.Run("OK", func(t *testing.T) {
		if err := c.SendFailures(ctx, plain.URL, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Info(ctx, plain.URL); err != nil {
			t.Fatal(err)
		}
		want := "node2 POST /internal/v1/screening/failures tls\nnode2 GET /internal/v1/info tls"
		if got := strings.Join(peer.Accepted(), "\n"); got != want {
			t.Errorf("accepted:\n%s\nwant:\n%s", got, want)
		}
		if lookups != 1 {
			t.Errorf("%d lookups of the internal URLs, want 1 (cached)", lookups)
		}
	})
	t.Run("ErrForeignCertificate", func(t *testing.T) {
		pins.set(map[string]string{"mail": foreign.Fingerprint})
		fresh := &cluster.InternalClient{Signer: c.Signer, TLS: &cluster.InternalTLS{Peers: tlsRoute.Peers, Pins: pins.get}}
		before := len(peer.Accepted())
		err := fresh.SendFailures(ctx, plain.URL, nil)
		if err == nil || !strings.Contains(err.Error(), "not one of the cluster's") {
			t.Fatalf("SendFailures to a node with a foreign certificate: %v", err)
		}
		if n := len(peer.Accepted()); n != before {
			t.Errorf("the request reached the node (%d accepted, %d before): it fell back to plain HTTP", n, before)
		}
	})
	t.Run("PlainWithoutCertificate", func(t *testing.T) {
		noCert := &cluster.InternalClient{Signer: c.Signer, TLS: &cluster.InternalTLS{Peers: tlsRoute.Peers,
			Pins: func() map[string]string { return nil }}}
		if err := noCert.SendFailures(ctx, plain.URL, nil); err != nil {
			t.Fatal(err)
		}
		got := peer.Accepted()
		if last := got[len(got)-1]; last != "node2 POST /internal/v1/screening/failures plain" {
			t.Errorf("last accepted %q", last)
		}
	})
	t.Run("PlainWhenNotAdvertised", func(t *testing.T) {
		other := httptest.NewServer(peer)
		t.Cleanup(other.Close)
		pins.set(map[string]string{"mail": cluster1.Fingerprint})
		fresh := &cluster.InternalClient{Signer: c.Signer, TLS: &cluster.InternalTLS{Peers: tlsRoute.Peers, Pins: pins.get}}
		if err := fresh.SendFailures(ctx, other.URL, nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("StaleAnswerKeptOnError", func(t *testing.T) {
		pins.set(map[string]string{"mail": cluster1.Fingerprint})
		calls := 0
		flaky := &cluster.InternalTLS{TTL: 1, Pins: pins.get, Peers: func(context.Context) (map[string]string, error) {
			calls++
			if calls > 1 {
				return nil, errors.New("consul is down")
			}
			return map[string]string{plainHost: secure.URL}, nil
		}}
		fresh := &cluster.InternalClient{Signer: c.Signer, TLS: flaky}
		for range 2 {
			if err := fresh.SendFailures(ctx, plain.URL, nil); err != nil {
				t.Fatal(err)
			}
			got := peer.Accepted()
			if last := got[len(got)-1]; !strings.HasSuffix(last, " tls") {
				t.Fatalf("sent over plain HTTP: %q", last)
			}
		}
	})
}

type pinSet struct {
	mu sync.Mutex
	m  map[string]string
}

func (p *pinSet) get() map[string]string  { p.mu.Lock(); defer p.mu.Unlock(); return p.m }
func (p *pinSet) set(m map[string]string) { p.mu.Lock(); p.m = m; p.mu.Unlock() }

func mustHost(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}
