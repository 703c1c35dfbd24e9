package service

import (
	"context"
	"crypto/rand"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"mailcluster"
)

// Service applies the business rules (validation, authorization, the
// read-only rule of secondaries) over a Store. Both management APIs call
// it, so every rule is written once. It is safe for concurrent use. Build
// it with New; it has no settable fields.
type Service struct {
	store mailcluster.Store
	lead  mailcluster.Leadership
	log   *slog.Logger
	opts  Options

	scrOnce   sync.Once
	screen    *screeningState
	dummyOnce sync.Once
	dummyHash []byte

	// decoded holds decoded domains, accounts and usage by key, valid for the
	// modify index they were decoded at (least recently used out first).
	decoded decodedCache

	lastAdmin lastAdminMemo

	// deletions holds the domain deletions running in this process (domain
	// -> *deletionRun), so that a domain has at most one worker.
	deletions sync.Map

	// bcryptRuns counts password comparisons (for tests and metrics).
	bcryptRuns atomic.Int64

	authKey []byte
	logins  loginCache

	// dkimKeys holds the unsealed DKIM keys that sign outgoing mail.
	dkimKeys dkimCache
}

// Options are the optional parts of a Service; the zero value of each field
// is its documented default, so Options{} is a standalone node's service
// with nothing attached.
type Options struct {
	// NodeName is the local node's name, reported by NodeInfo.
	NodeName string
	// NodeKeyID is a hash of the node key, reported by NodeInfo.
	NodeKeyID string
	// Mode is reported by NodeInfo; "" means ModeStandalone.
	Mode mailcluster.Mode
	// BcryptCost is the cost of new password hashes; 0 means bcrypt.DefaultCost.
	BcryptCost int
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Cluster answers cluster status and switchover; nil on a standalone
	// node (which then reports only itself).
	Cluster mailcluster.ClusterControl
	// Lag reports the replication lag; nil means none (standalone).
	Lag mailcluster.Lagger
	// Events records cluster events; nil means none.
	Events mailcluster.ClusterLog
	// Failures receives failed logins for dynamic screening; nil: none.
	Failures mailcluster.FailureSink
	// Notify mails thaw tokens to frozen accounts; nil: no mail is sent.
	Notify mailcluster.Notifier
	// Admit checks nodes that ask to join (cluster mode); nil standalone.
	Admit mailcluster.Admission
	// Checks are asked for problems by NodeInfo (and so by /health).
	Checks []mailcluster.HealthCheck
	// SealKey (32 bytes, from mailcluster.SealKey(cluster secret)) seals
	// certificate private keys in the replicated state; nil refuses
	// certificate imports.
	SealKey []byte
	// Queue is the outbound queue the management APIs list and manage;
	// nil answers EUNAVAILABLE.
	Queue mailcluster.OutboundQueue
	// ScreeningKey keys the hashes of failed passwords so that the same
	// wrong password is recognised cluster-wide (derive it from the
	// cluster secret); nil means a random per-process key.
	ScreeningKey []byte
}

// New returns a Service over store that asks lead for the node's role.
func New(store mailcluster.Store, lead mailcluster.Leadership, log *slog.Logger, opts Options) *Service {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return &Service{store: store, lead: lead, log: log, opts: opts, authKey: key}
}

// getShared returns one key for a reader that only decodes its value
// (neither modifies nor keeps it): without a copy when the store can.
func (s *Service) getShared(key string) (mailcluster.KV, bool) {
	if g, ok := s.store.(mailcluster.SharedGetter); ok {
		return g.GetShared(key)
	}
	return s.store.Get(key)
}

func (s *Service) now() time.Time {
	if s.opts.Now != nil {
		return s.opts.Now().UTC()
	}
	return time.Now().UTC()
}

// nodeInfo describes the local node.
func (s *Service) nodeInfo() mailcluster.NodeInfo {
	mode := s.opts.Mode
	if mode == "" {
		mode = mailcluster.ModeStandalone
	}
	info := mailcluster.NodeInfo{Name: s.opts.NodeName, KeyID: s.opts.NodeKeyID, Mode: mode, Role: s.lead.Role(), Version: mailcluster.Version, Index: s.store.Index()}
	if p, ok := s.lead.Primary(); ok {
		info.Primary = &p
	}
	for _, c := range s.opts.Checks {
		info.Problems = append(info.Problems, c.Problems()...)
	}
	if s.opts.Lag != nil {
		if lag := s.opts.Lag.Lag(); lag < 0 {
			info.LagMS = -1
		} else {
			info.LagMS = lag.Milliseconds()
		}
	}
	return info
}

// ClusterStatus lists the nodes of the cluster (just this one when
// standalone). Errors: EFORBIDDEN, EUNAVAILABLE.
func (s *Service) ClusterStatus(ctx context.Context) (*mailcluster.ClusterStatus, error) {
	if err := requireGlobalAdmin(ctx); err != nil {
		return nil, err
	}
	if s.opts.Cluster != nil {
		return s.opts.Cluster.Status(ctx)
	}
	info := s.nodeInfo()
	self := mailcluster.NodeStatus{Name: info.Name, Role: info.Role, Version: info.Version, Healthy: true, Index: info.Index, Self: true, Registered: true, Warnings: []string{}}
	if info.Primary != nil {
		self.APIURL = info.Primary.APIURL
	}
	return &mailcluster.ClusterStatus{Mode: info.Mode, Primary: info.Primary, Nodes: []mailcluster.NodeStatus{self}}, nil
}

// Switchover hands the primary role to target ("" = any other node).
// Errors: EFORBIDDEN, EINVALID (standalone, unknown target), EREADONLY,
// EUNAVAILABLE.
func (s *Service) Switchover(ctx context.Context, target string) error {
	if err := requireGlobalAdmin(ctx); err != nil {
		return err
	}
	if err := s.checkWritable(); err != nil {
		return err
	}
	if s.opts.Cluster == nil {
		return mailcluster.Errorf(mailcluster.EINVALID, "A standalone node has no other node to hand the primary role to.")
	}
	return s.opts.Cluster.Switchover(ctx, target)
}

// serving reports whether this node serves the configuration: a pending
// node (not registered in the cluster) does not.
func (s *Service) serving() bool { return s.lead.Role() != mailcluster.RolePending }

// checkServing refuses reads on a pending node.
func (s *Service) checkServing() error {
	if s.serving() {
		return nil
	}
	return mailcluster.Errorf(mailcluster.EUNAVAILABLE, "This node is not registered in the cluster yet; an administrator must add it on the primary.")
}

// checkWritable is the one place where the read-only rule of secondaries
// lives: a write is refused unless this node is the primary.
func (s *Service) checkWritable() error {
	if s.lead.Role() == mailcluster.RolePrimary {
		return nil
	}
	p, ok := s.lead.Primary()
	if !ok || p.APIURL == "" {
		return mailcluster.Errorf(mailcluster.EUNAVAILABLE, "This node is not the primary and no primary is elected at the moment; try again shortly.")
	}
	return &mailcluster.Error{Code: mailcluster.EREADONLY, Primary: p.APIURL,
		Message: "This node is a read-only secondary; send changes to the primary " + p.Name + " at " + p.APIURL + "."}
}

// txn runs ops after the read-only check.
func (s *Service) txn(ctx context.Context, ops []mailcluster.Op) error {
	if err := s.checkWritable(); err != nil {
		return err
	}
	_, err := s.store.Txn(ctx, ops)
	return err
}

// conflictAs replaces the store's generic conflict with a precise message.
func conflictAs(err error, format string, args ...any) error {
	if mailcluster.ErrorCode(err) == mailcluster.ECONFLICT {
		e := mailcluster.Errorf(mailcluster.ECONFLICT, format, args...)
		e.Err = err
		return e
	}
	return err
}

// ---- accounts ----
