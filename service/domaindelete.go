package service

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"mailcluster/schema"

	"mailcluster"
)

// MaxDeleteOps bounds the operations of one transaction of a domain
// deletion, well within Consul's 128 per transaction with room for what
// the store adds to a write.
const MaxDeleteOps = 100

// maxDeleteConflicts is how many transactions of a deletion in a row may
// fail on a concurrent change (each is retried on a fresh read) before
// the deletion stops.
const maxDeleteConflicts = 20

// deletionRun is one deletion running in this process; callers that ask
// for the same domain meanwhile wait on done and share err.
type deletionRun struct {
	done    chan struct{}
	err     error
	waiters atomic.Int32 // callers waiting for it
}

// awaitDeletion joins the deletion of name running here, or starts one
// whose work runs under work (not cancelled when the caller goes away),
// and waits for its end or for ctx. resumed tells a run it starts that it
// picks up a deletion marked before (for the cluster log).
func (s *Service) awaitDeletion(ctx, work context.Context, name string, resumed bool) error {
	run := &deletionRun{done: make(chan struct{})}
	key := name
	if cur, loaded := s.deletions.LoadOrStore(key, run); loaded {
		run = cur.(*deletionRun)
	} else {
		go func() {
			run.err = s.runDeletion(work, name, resumed)
			s.deletions.Delete(key)
			close(run.done)
		}()
	}
	run.waiters.Add(1)
	defer run.waiters.Add(-1)
	select {
	case <-run.done:
		return run.err
	case <-ctx.Done():
		return mailcluster.Errorf(mailcluster.EUNAVAILABLE, "Domain %s is still being deleted; the deletion goes on.", name)
	}
}

// ResumeDomainDeletions finishes every domain marked as being deleted
// (a deletion that a former primary, or this node before a restart or a
// failure, left unfinished). The node calls it when it becomes the
// primary and when a standalone node starts, with a context that ends
// with the node; it returns once every such deletion ended, or ctx did.
// Errors: EFORBIDDEN unless ctx carries a system caller, EREADONLY,
// EUNAVAILABLE, and the error of the first deletion that failed.
func (s *Service) ResumeDomainDeletions(ctx context.Context) error {
	if err := requireSystem(ctx); err != nil {
		return err
	}
	if err := s.checkWritable(); err != nil {
		return err
	}
	var names []string
	for _, kv := range s.store.List(schema.PrefixDomains, "", 0) {
		name := strings.TrimPrefix(kv.Key, schema.PrefixDomains)
		if s.domainDeleting(name) {
			names = append(names, name)
		}
	}
	var first error
	for _, name := range names {
		if err := s.awaitDeletion(ctx, ctx, name, true); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// runDeletion carries out the steps after the mark: the accounts of name
// in bounded transactions, then what is left under its prefixes and the
// domain record. Every transaction checks that the domain record is the
// marked one, so nothing is deleted once the mark is gone.
func (s *Service) runDeletion(ctx context.Context, name string, resumed bool) (err error) {
	deleted, txns := 0, 0
	started := false
	defer func() {
		if err == nil || !started {
			return
		}
		s.log.Error("domain deletion stopped", "domain", name, "accounts_deleted", deleted, "err", err)
		s.recordEvent(mailcluster.ClusterEvent{Level: "error", Event: mailcluster.EventDomainDeleteFailed,
			Message: "a domain deletion stopped before its end; it resumes on the next primary or when asked again",
			Fields:  map[string]string{"domain": name, "accounts": strconv.Itoa(deleted), "code": mailcluster.ErrorCode(err)}})
		if mailcluster.ErrorCode(err) == mailcluster.EINTERNAL {
			err = &mailcluster.Error{Code: mailcluster.EINTERNAL,
				Message: "Domain " + name + " could not be deleted completely; the deletion resumes when asked again.", Err: err}
		}
	}()
	conflicts := 0
	// Each round deletes at least one key or counts a conflict, so the
	// rounds are bounded by the keys under the domain plus the conflicts.
	for {
		if err := ctx.Err(); err != nil {
			return mailcluster.Errorf(mailcluster.EUNAVAILABLE, "This node stopped before domain %s was deleted.", name)
		}
		if err := s.checkWritable(); err != nil {
			return err
		}
		dkv, ok := s.store.Get(schema.Domain(name))
		if !ok {
			if started {
				s.finishedDeletion(name, deleted, txns)
			}
			return nil // done, by this run or an earlier one
		}
		var d mailcluster.Domain
		if err := json.Unmarshal(dkv.Value, &d); err != nil {
			return &mailcluster.Error{Code: mailcluster.EINTERNAL, Message: "A stored domain record is damaged.", Err: err}
		}
		if d.Deleting == nil {
			return mailcluster.Errorf(mailcluster.ECONFLICT, "Domain %s is no longer marked for deletion.", name)
		}
		if !started {
			started = true
			if resumed {
				s.recordEvent(mailcluster.ClusterEvent{Event: mailcluster.EventDomainDeleteStarted, Message: "resuming the deletion of a domain",
					Fields: map[string]string{"domain": name, "accounts": strconv.Itoa(s.store.Count(schema.AccountPrefix(name))),
						"by": d.Deleting.By, "resumed": "true"}})
			}
		}
		ops, accounts := s.deletionBatch(name, dkv.ModifyIndex)
		if _, err := s.store.Txn(ctx, ops); err != nil {
			if mailcluster.ErrorCode(err) != mailcluster.ECONFLICT {
				return err
			}
			if conflicts++; conflicts > maxDeleteConflicts {
				return conflictAs(err, "Domain %s kept changing while it was being deleted; ask again to resume.", name)
			}
			sleepCtx(ctx, time.Duration(conflicts)*10*time.Millisecond) // the next round sees the end of ctx
			continue
		}
		conflicts = 0
		deleted += accounts
		txns++
	}
}

// finishedDeletion logs and records the end of a deletion.
func (s *Service) finishedDeletion(name string, deleted, txns int) {
	s.log.Info("domain deleted", "domain", name, "accounts", deleted, "transactions", txns)
	s.recordEvent(mailcluster.ClusterEvent{Event: mailcluster.EventDomainDeleteFinished, Message: "a domain was deleted",
		Fields: map[string]string{"domain": name, "accounts": strconv.Itoa(deleted), "transactions": strconv.Itoa(txns)}})
}

// deletionBatch returns the next transaction of a deletion (at most
// MaxDeleteOps operations, the first a check of the marked domain record
// at didx) and how many accounts it deletes: accounts while there are
// any; then the usage, freeze and administrator records left under the
// domain; then the domain record itself.
func (s *Service) deletionBatch(name string, didx uint64) ([]mailcluster.Op, int) {
	ops := []mailcluster.Op{{Verb: mailcluster.OpCheck, Key: schema.Domain(name), Index: didx}}
	accounts := 0
	for _, kv := range s.store.List(schema.AccountPrefix(name), "", MaxDeleteOps/4) {
		mailbox := strings.TrimPrefix(kv.Key, schema.AccountPrefix(name))
		address := mailbox + "@" + name
		next := []mailcluster.Op{{Verb: mailcluster.OpDeleteCAS, Key: kv.Key, Index: kv.ModifyIndex}}
		for _, k := range []string{schema.Usage(name, mailbox), schema.FrozenAccount(address), schema.GlobalAdmin(address)} {
			if _, ok := s.store.Get(k); ok {
				next = append(next, mailcluster.Op{Verb: mailcluster.OpDelete, Key: k})
			}
		}
		if len(ops)+len(next) > MaxDeleteOps {
			break
		}
		ops = append(ops, next...)
		accounts++
	}
	if accounts > 0 {
		return ops, accounts
	}
	for _, kv := range s.leftovers(name, MaxDeleteOps-1) {
		ops = append(ops, mailcluster.Op{Verb: mailcluster.OpDelete, Key: kv.Key})
	}
	if len(ops) > 1 {
		return ops, 0
	}
	return []mailcluster.Op{{Verb: mailcluster.OpDeleteCAS, Key: schema.Domain(name), Index: didx}}, 0
}

// leftovers returns up to limit records of a domain without an account:
// usage records under its prefix, freeze and administrator records of its
// addresses.
func (s *Service) leftovers(name string, limit int) []mailcluster.KV {
	out := s.store.List(schema.UsagePrefix(name), "", limit)
	for _, prefix := range []string{schema.PrefixFrozenAccounts, schema.PrefixGlobalAdmins} {
		for _, kv := range s.store.List(prefix, "", 0) {
			if len(out) == limit {
				return out
			}
			if strings.HasSuffix(kv.Key, "@"+name) {
				out = append(out, kv)
			}
		}
	}
	return out
}

// recordEvent writes a cluster-log event when the node keeps a log.
func (s *Service) recordEvent(ev mailcluster.ClusterEvent) {
	if s.opts.Events != nil {
		s.opts.Events.Record(ev)
	}
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
