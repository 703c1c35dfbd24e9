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
	return s.awaitRun(ctx, work, name, func(work context.Context) error { return s.runDeletion(work, name, resumed) },
		"Domain "+name+" is still being deleted; the deletion goes on.")
}

// awaitRun joins the run of key in this process, or starts run under work,
// and waits for its end or for ctx (then answers EUNAVAILABLE with gone).
func (s *Service) awaitRun(ctx, work context.Context, key string, run func(context.Context) error, gone string) error {
	r := &deletionRun{done: make(chan struct{})}
	if cur, loaded := s.deletions.LoadOrStore(key, r); loaded {
		r = cur.(*deletionRun)
	} else {
		go func() {
			r.err = run(work)
			s.deletions.Delete(key)
			close(r.done)
		}()
	}
	r.waiters.Add(1)
	defer r.waiters.Add(-1)
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return mailcluster.Errorf(mailcluster.EUNAVAILABLE, "%s", gone)
	}
}

// ResumeDomainDeletions finishes every domain marked as being deleted
// (a deletion that a former primary, or this node before a restart or a
// failure, left unfinished), and then every mailing list and group marked
// as being deleted. The node calls it when it becomes the
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
	for _, job := range s.markedSets() {
		if err := s.awaitRun(ctx, ctx, job.record(), job.run(s), job.gone()); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// markedSets returns the deletions of the lists and groups marked as
// being deleted in the domains in service.
func (s *Service) markedSets() []setDeletion {
	var out []setDeletion
	for _, kv := range s.store.List(schema.PrefixDomains, "", 0) {
		domain := strings.TrimPrefix(kv.Key, schema.PrefixDomains)
		if s.domainDeleting(domain) {
			continue
		}
		for _, k := range []setKind{listKind, groupKind} {
			for _, skv := range s.store.List(k.prefix(domain), "", 0) {
				m := k.of(domain, strings.TrimPrefix(skv.Key, k.prefix(domain)))
				if st, _, err := s.setState(m); err == nil && st.deleting {
					out = append(out, s.deletion(m))
				}
			}
		}
	}
	return out
}

// setDeletion is the deletion of a mailing list or a group marked as
// being deleted: the keys that keys returns (its members and
// memberships) go in bounded transactions, then its record.
type setDeletion struct {
	memberSet
	keys func(limit int) []string
}

func (j setDeletion) gone() string {
	return "The " + j.noun() + " " + j.title() + " is still being deleted; the deletion goes on."
}

// awaitSetDeletion runs (or joins) a deletion of a list or group marked
// as being deleted and waits for its end; the work goes on when the
// caller goes away.
func (s *Service) awaitSetDeletion(ctx context.Context, j setDeletion) error {
	return s.awaitRun(ctx, context.WithoutCancel(ctx), j.record(), j.run(s), j.gone())
}

// run returns the work of a deletion: every transaction checks that the
// record is the marked one, so nothing is deleted once the mark is gone.
func (j setDeletion) run(s *Service) func(context.Context) error {
	return func(ctx context.Context) error {
		deleted, _, err := s.runBatches(ctx, batchDeletion{what: "the " + j.noun() + " " + j.title(), kind: j.noun(), record: j.record(),
			marked: func(value []byte) (bool, error) {
				var mark struct {
					Deleting bool `json:"deleting"`
				}
				err := json.Unmarshal(value, &mark)
				return mark.Deleting, err
			},
			next: func(index uint64) ([]mailcluster.Op, int) {
				keys := j.keys(MaxDeleteOps - 1)
				if len(keys) == 0 {
					return []mailcluster.Op{{Verb: mailcluster.OpDeleteCAS, Key: j.record(), Index: index}}, 0
				}
				ops := []mailcluster.Op{{Verb: mailcluster.OpCheck, Key: j.record(), Index: index}}
				for _, k := range keys {
					ops = append(ops, mailcluster.Op{Verb: mailcluster.OpDelete, Key: k})
				}
				return ops, len(keys)
			}})
		if err != nil {
			s.log.Error(j.noun()+" deletion stopped", "name", j.title(), "err", err)
			return err
		}
		s.log.Info(j.noun()+" deleted", "name", j.title(), "keys", deleted)
		return nil
	}
}

// batchDeletion is a deletion in bounded transactions of what a mark on a
// record stands for (a domain, a mailing list, a group).
type batchDeletion struct {
	what   string // "domain example.com", "the group staff of example.com": in messages
	kind   string // "domain", "group": in the message of a damaged record
	record string // the key of the marked record
	// marked decodes the record and reports whether it is still marked.
	marked func(value []byte) (bool, error)
	// next returns the next transaction, whose operations check the record
	// at index (or, once nothing else is left, delete it), and how many
	// things it deletes.
	next func(index uint64) ([]mailcluster.Op, int)
}

// runBatches commits the transactions of d until its record is gone, and
// returns how many things they deleted (as next counts them) and how many
// transactions it committed, also when it stops early: when ctx ends
// (EUNAVAILABLE), when this node stops taking writes, when the record is
// damaged or no longer marked, or on a failed transaction. A transaction
// that fails on a concurrent change is built again on a fresh read, at
// most maxDeleteConflicts times in a row. Each round deletes at least one
// key or counts a conflict, so the rounds are bounded by the keys to
// delete plus the conflicts.
func (s *Service) runBatches(ctx context.Context, d batchDeletion) (deleted, txns int, err error) {
	conflicts := 0
	for {
		if err := ctx.Err(); err != nil {
			return deleted, txns, mailcluster.Errorf(mailcluster.EUNAVAILABLE, "This node stopped before %s was deleted.", d.what)
		}
		if err := s.checkWritable(); err != nil {
			return deleted, txns, err
		}
		kv, ok := s.store.Get(d.record)
		if !ok {
			return deleted, txns, nil // done, by this run or an earlier one
		}
		marked, err := d.marked(kv.Value)
		if err != nil {
			return deleted, txns, &mailcluster.Error{Code: mailcluster.EINTERNAL, Message: "A stored " + d.kind + " record is damaged.", Err: err}
		}
		if !marked {
			return deleted, txns, mailcluster.Errorf(mailcluster.ECONFLICT, "%s is no longer marked for deletion.", capitalize(d.what))
		}
		ops, n := d.next(kv.ModifyIndex)
		if _, err := s.store.Txn(ctx, ops); err != nil {
			if mailcluster.ErrorCode(err) != mailcluster.ECONFLICT {
				return deleted, txns, err
			}
			if conflicts++; conflicts > maxDeleteConflicts {
				return deleted, txns, conflictAs(err, "%s kept changing while it was being deleted; ask again to resume.", capitalize(d.what))
			}
			sleepCtx(ctx, time.Duration(conflicts)*10*time.Millisecond) // the next round sees the end of ctx
			continue
		}
		conflicts = 0
		deleted += n
		txns++
	}
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
	deleted, txns, err = s.runBatches(ctx, batchDeletion{what: "domain " + name, kind: "domain", record: schema.Domain(name),
		marked: func(value []byte) (bool, error) {
			var d mailcluster.Domain
			if err := json.Unmarshal(value, &d); err != nil || d.Deleting == nil {
				return false, err
			}
			if !started {
				started = true
				if resumed {
					s.recordEvent(mailcluster.ClusterEvent{Event: mailcluster.EventDomainDeleteStarted, Message: "resuming the deletion of a domain",
						Fields: map[string]string{"domain": name, "accounts": strconv.Itoa(s.store.Count(schema.AccountPrefix(name))),
							"by": d.Deleting.By, "resumed": "true"}})
				}
			}
			return true, nil
		},
		next: func(index uint64) ([]mailcluster.Op, int) { return s.deletionBatch(name, index) }})
	if err == nil && started {
		s.finishedDeletion(name, deleted, txns)
	}
	return err
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
// any, each with its usage, freeze and administrator records and the
// aliases pointing at it (those of other domains too) with their index
// entries; then what is left of the domain (see leftovers); then the
// domain record itself.
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
		next = append(next, s.aliasEntryOps(s.accountAliasEntries(address))...)
		if len(ops)+len(next) > MaxDeleteOps {
			break
		}
		ops = append(ops, next...)
		accounts++
	}
	if accounts > 0 {
		return ops, accounts
	}
	ops = append(ops, s.leftovers(name, MaxDeleteOps-1)...)
	if len(ops) > 1 {
		return ops, 0
	}
	return []mailcluster.Op{{Verb: mailcluster.OpDeleteCAS, Key: schema.Domain(name), Index: didx}}, 0
}

// aliasEntryOps returns the deletion of index entries and of the aliases
// they name (with a compare-and-set: an alias changed meanwhile fails the
// transaction, which is then built again).
func (s *Service) aliasEntryOps(entries []aliasEntry) []mailcluster.Op {
	var ops []mailcluster.Op
	for _, e := range entries {
		ops = append(ops, mailcluster.Op{Verb: mailcluster.OpDelete, Key: e.key})
		if kv, ok := s.store.Get(schema.Alias(e.domain, e.name)); ok {
			ops = append(ops, mailcluster.Op{Verb: mailcluster.OpDeleteCAS, Key: kv.Key, Index: kv.ModifyIndex})
		}
	}
	return ops
}

// leftovers returns the deletion of up to limit records of a domain
// without accounts: its DKIM key; usage records under its prefix; its aliases (with
// their index entries), list members, lists, group members and groups;
// freeze and administrator records of its addresses; and last, index
// entries of aliases that point into the domain or belong to it.
func (s *Service) leftovers(name string, limit int) []mailcluster.Op {
	var ops []mailcluster.Op
	del := func(key string) { ops = append(ops, mailcluster.Op{Verb: mailcluster.OpDelete, Key: key}) }
	if _, ok := s.store.Get(schema.DKIMKey(name)); ok {
		del(schema.DKIMKey(name))
	}
	for _, kv := range s.store.List(schema.UsagePrefix(name), "", limit-len(ops)) {
		del(kv.Key)
	}
	for _, kv := range s.store.List(schema.AliasPrefix(name), "", 0) {
		if len(ops)+2 > limit {
			return ops
		}
		del(kv.Key)
		var a mailcluster.Alias
		if json.Unmarshal(kv.Value, &a) == nil && a.Target != "" {
			del(schema.AliasTarget(a.Target, strings.TrimPrefix(kv.Key, schema.AliasPrefix(name))+"@"+name))
		}
	}
	for _, prefix := range []string{schema.PrefixListMembers + name + "/", schema.ListPrefix(name),
		schema.PrefixGroupMembers + name + "/", schema.GroupPrefix(name)} {
		if len(ops) >= limit {
			return ops
		}
		for _, kv := range s.store.List(prefix, "", limit-len(ops)) {
			del(kv.Key)
		}
	}
	for _, prefix := range []string{schema.PrefixFrozenAccounts, schema.PrefixGlobalAdmins} {
		for _, kv := range s.store.List(prefix, "", 0) {
			if len(ops) == limit {
				return ops
			}
			if strings.HasSuffix(kv.Key, "@"+name) {
				del(kv.Key)
			}
		}
	}
	if len(ops) > 0 {
		return ops
	}
	// Index entries whose alias or target is in the domain and that the
	// steps above left (an alias whose record was damaged or gone).
	var entries []aliasEntry
	for _, kv := range s.store.List(schema.PrefixAliasTargets, "", 0) {
		target, alias, ok := strings.Cut(strings.TrimPrefix(kv.Key, schema.PrefixAliasTargets), "/")
		if !ok || !strings.HasSuffix(target, "@"+name) && !strings.HasSuffix(alias, "@"+name) {
			continue
		}
		if aname, adomain, err := mailcluster.SplitAddress(alias); err == nil && len(ops)+len(entries)*2+2 <= limit {
			entries = append(entries, aliasEntry{key: kv.Key, domain: adomain, name: aname})
		}
	}
	return s.aliasEntryOps(entries)
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
