package cluster

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
)

// MetaInternalURL is the Consul service meta key under which a node that
// runs an HTTPS listener advertises the URL of its internal API there
// ("https://host:port").
const MetaInternalURL = "internal_url"

// DefaultInternalPeersTTL is how long InternalTLS reuses the advertised
// internal URLs when InternalTLS.TTL is 0.
const DefaultInternalPeersTTL = 10 * time.Second

// InternalTLS routes internal calls over HTTPS to the nodes that advertise
// their internal API there. All nodes serve the cluster's replicated
// certificates, so a peer is accepted only when it presents one of the
// certificates this node serves itself (pinned by the SHA-256 of the leaf
// certificate; names are not checked, since nodes are called by
// address). A node without a replicated certificate (Pins empty) and a
// peer that advertises no HTTPS URL are called over plain HTTP; the
// signature still protects those requests, but not their answers.
type InternalTLS struct {
	// Peers returns the internal HTTPS URL each node advertises, keyed by
	// the host:port of its API URL (see ConsulInternalURLs).
	Peers func(ctx context.Context) (map[string]string, error)
	// Pins returns the fingerprints (hex SHA-256 of the DER leaf) that a
	// peer's certificate may have: the certificates this node serves
	// (CertManager.Served). nil or empty calls every node over plain HTTP.
	Pins func() map[string]string
	// TTL is how long an answer of Peers is reused; 0 means
	// DefaultInternalPeersTTL. When Peers fails, the last answer stays
	// in use.
	TTL time.Duration

	once    sync.Once
	hc      *http.Client
	mu      sync.Mutex
	peers   map[string]string
	fetched time.Time
}

// ConsulInternalURLs returns a function for InternalTLS.Peers that reads
// the advertised internal URLs of the cluster's nodes from Consul's
// catalog (service meta MetaInternalURL); only https URLs are taken.
func ConsulInternalURLs(client *api.Client, cluster string) func(context.Context) (map[string]string, error) {
	return func(ctx context.Context) (map[string]string, error) {
		entries, _, err := client.Health().Service(ServiceName, "cluster-"+cluster, false, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("cluster: read internal urls: %w", err)
		}
		out := map[string]string{}
		for _, e := range entries {
			u, err := url.Parse(e.Service.Meta[MetaInternalURL])
			if err != nil || u.Scheme != "https" || u.Host == "" {
				continue
			}
			out[net.JoinHostPort(e.Service.Address, strconv.Itoa(e.Service.Port))] = "https://" + u.Host
		}
		return out, nil
	}
}

// route returns the base URL to call the node whose API is at baseURL
// over HTTPS, with the pinning client; a nil client means plain HTTP.
func (t *InternalTLS) route(ctx context.Context, baseURL string) (string, *http.Client) {
	if t.Pins == nil || len(t.Pins()) == 0 || t.Peers == nil {
		return baseURL, nil
	}
	u, err := url.Parse(baseURL)
	if err != nil || u.Host == "" {
		return baseURL, nil
	}
	internal, ok := t.lookup(ctx)[u.Host]
	if !ok {
		return baseURL, nil
	}
	t.once.Do(t.newClient)
	return internal, t.hc
}

// lookup returns the advertised internal URLs, asking Peers at most once
// per TTL.
func (t *InternalTLS) lookup(ctx context.Context) map[string]string {
	t.mu.Lock()
	defer t.mu.Unlock()
	ttl := t.TTL
	if ttl <= 0 {
		ttl = DefaultInternalPeersTTL
	}
	if t.peers != nil && time.Since(t.fetched) < ttl {
		return t.peers
	}
	peers, err := t.Peers(ctx)
	if err == nil {
		t.peers, t.fetched = peers, time.Now()
	}
	return t.peers
}

// newClient builds the HTTPS client that accepts only pinned certificates.
func (t *InternalTLS) newClient() {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The chain and the names are not verified: the peer must present
		// exactly one of this node's own certificates (VerifyConnection),
		// which is stricter than any chain check.
		InsecureSkipVerify: true,
		VerifyConnection:   t.verify,
	}
	t.hc = &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// verify accepts a TLS connection whose leaf certificate is pinned.
func (t *InternalTLS) verify(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("cluster: the node presented no certificate")
	}
	sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
	fp := hex.EncodeToString(sum[:])
	for _, pin := range t.Pins() {
		if pin == fp {
			return nil
		}
	}
	return fmt.Errorf("cluster: the node presented certificate %s, which is not one of the cluster's", fp)
}
