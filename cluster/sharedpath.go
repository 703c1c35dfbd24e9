package cluster

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"mailcluster/internal/atomicfile"
	"mailcluster/schema"

	"mailcluster"
)

// probeFile is the primary's probe in the shared path.
const probeFile = ".mailcluster-probe"

// SharedPath proves that a node sees the same shared path as the primary:
// the primary writes a random token both into a file on the path and into
// the replicated state; a node must read the same token from the file and
// be able to create and delete a file of its own there.
type SharedPath struct {
	Dir   string // the node's --shared-path ("" when none)
	Node  string
	Store mailcluster.Store

	// CacheFor is how long a Verify answer is reused; 0 means 5 s. Verify
	// is asked on every /health (load balancers poll it) and its answer
	// touches the file system.
	CacheFor time.Duration
	// Now is the clock of the cache; nil means time.Now.
	Now func() time.Time

	mu      sync.Mutex
	checked time.Time
	ok      bool
	detail  string
	token   string // the probe token the answer was for
}

// defaultCacheFor is how long a Verify answer is reused by default.
const defaultCacheFor = 5 * time.Second

// EnsureProbe writes the probe (primary only); a no-op without a path.
func (p *SharedPath) EnsureProbe(ctx context.Context) error {
	if p.Dir == "" {
		return nil
	}
	if err := os.MkdirAll(p.Dir, 0o750); err != nil {
		return fmt.Errorf("cluster: shared path %s: %w", p.Dir, err)
	}
	token := ""
	if kv, ok := p.Store.Get(schema.KeySharedProbe); ok {
		token = string(kv.Value)
	}
	path := filepath.Join(p.Dir, probeFile)
	if cur, err := os.ReadFile(path); err == nil && token != "" && strings.TrimSpace(string(cur)) == token {
		return nil
	}
	if token == "" {
		token = rand.Text()
		if _, err := p.Store.Txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpSet, Key: schema.KeySharedProbe, Value: []byte(token)}}); err != nil {
			return err
		}
	}
	return atomicfile.Write(path, []byte(token+"\n"), 0o644)
}

// Verify reports whether this node can use the cluster's shared path, and
// why not. The answer is reused for CacheFor unless the probe token
// changed.
func (p *SharedPath) Verify() (bool, string) {
	token := ""
	if kv, ok := p.Store.Get(schema.KeySharedProbe); ok {
		token = string(kv.Value)
	}
	now, cacheFor := time.Now, p.CacheFor
	if p.Now != nil {
		now = p.Now
	}
	if cacheFor <= 0 {
		cacheFor = defaultCacheFor
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	t := now()
	if token == p.token && !p.checked.IsZero() && t.Sub(p.checked) < cacheFor {
		return p.ok, p.detail
	}
	p.ok, p.detail = p.verify()
	p.checked, p.token = t, token
	return p.ok, p.detail
}

func (p *SharedPath) verify() (bool, string) {
	kv, clusterUsesPath := p.Store.Get(schema.KeySharedProbe)
	if p.Dir == "" {
		if clusterUsesPath {
			return false, "the cluster keeps its mailboxes on a shared path; start this node with --shared-path"
		}
		return true, "no shared path is used"
	}
	if !clusterUsesPath {
		return false, "the primary has not written its probe into the shared path yet"
	}
	b, err := os.ReadFile(filepath.Join(p.Dir, probeFile))
	if err != nil {
		return false, fmt.Sprintf("the primary's probe file is not readable in %s: the path is not the cluster's shared path", p.Dir)
	}
	if strings.TrimSpace(string(b)) != string(kv.Value) {
		return false, fmt.Sprintf("the probe file in %s is not the primary's: the path is not the cluster's shared path", p.Dir)
	}
	own := filepath.Join(p.Dir, ".probe-"+p.Node)
	if err := os.WriteFile(own, []byte(p.Node), 0o644); err != nil {
		return false, fmt.Sprintf("cannot create a file in %s", p.Dir)
	}
	if err := os.Remove(own); err != nil {
		return false, fmt.Sprintf("cannot delete a file in %s", p.Dir)
	}
	return true, "the shared path is readable and writable"
}
