package service

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"unicode/utf8"

	"mailcluster/schema"

	"mailcluster"
)

// maxFolderName bounds a reported folder name (bytes).
const maxFolderName = 1024

// validDelta checks one reported change: a sequence number, an account
// name, and either no folder or a folder name with a known kind.
func validDelta(d mailcluster.UsageDelta) bool {
	if d.Seq == 0 || mailcluster.NormalizeDomain(d.Domain) == "" || mailcluster.NormalizeMailbox(d.Mailbox) == "" || strings.Contains(d.Domain+d.Mailbox, "/") {
		return false
	}
	if d.Folder == "" {
		return d.Kind == ""
	}
	if !d.Kind.Valid() || len(d.Folder) > maxFolderName || !utf8.ValidString(d.Folder) || strings.ContainsAny(d.Folder, "/\\") {
		return false
	}
	for _, r := range d.Folder {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// applyUsageOnce applies the deltas of r not applied yet in one
// transaction: the usage of each account whose usage they change (CAS),
// and the node's mark (CAS) with its new sequence number and the folder
// changes, coalesced per folder with those of the latest earlier reports.
func (s *Service) applyUsageOnce(ctx context.Context, r mailcluster.UsageReport) (uint64, error) {
	seqKey := schema.Report(r.Node)
	var mark mailcluster.ReportMark
	seqKV, _ := s.store.Get(seqKey)
	if len(seqKV.Value) > 0 {
		_ = json.Unmarshal(seqKV.Value, &mark)
	}
	var last uint64
	if mark.Epoch == r.Epoch {
		last = mark.Seq
	}
	type acc struct {
		u   mailcluster.Usage
		idx uint64
	}
	touched := map[string]*acc{}
	var order []string
	var fresh folderChanges
	maxSeq := last
	now := s.now()
	for _, d := range r.Deltas {
		if d.Seq <= last {
			continue // applied before
		}
		maxSeq = max(maxSeq, d.Seq)
		dom, mb := mailcluster.NormalizeDomain(d.Domain), mailcluster.NormalizeMailbox(d.Mailbox)
		if _, ok := s.store.Get(schema.Account(dom, mb)); !ok {
			continue // the account is gone; nothing to count or tell
		}
		if d.Folder != "" {
			fresh.add(mailcluster.MailChange{Domain: dom, Mailbox: mb, Folder: d.Folder, Kinds: []mailcluster.MailChangeKind{d.Kind}, Seq: d.Seq})
		}
		if d.Bytes == 0 && d.Messages == 0 {
			continue // a change of flags or folders: no usage
		}
		key := schema.Usage(dom, mb)
		a := touched[key]
		if a == nil {
			a = &acc{}
			if kv, ok := s.store.Get(key); ok {
				_ = json.Unmarshal(kv.Value, &a.u)
				a.idx = kv.ModifyIndex
			}
			touched[key] = a
			order = append(order, key)
		}
		if !a.u.RecountedAt.IsZero() && d.At.Before(a.u.RecountedAt) {
			continue
		}
		a.u.Bytes = max(0, a.u.Bytes+d.Bytes)
		a.u.Messages = max(0, a.u.Messages+d.Messages)
		a.u.UpdatedAt = now
	}
	if maxSeq == last {
		return s.store.Index(), nil
	}
	seqVal, _ := json.Marshal(nextMark(mark, r.Epoch, maxSeq, fresh))
	ops := []mailcluster.Op{{Verb: mailcluster.OpCAS, Key: seqKey, Value: seqVal, Index: seqKV.ModifyIndex}}
	for _, key := range order {
		b, _ := json.Marshal(touched[key].u)
		ops = append(ops, mailcluster.Op{Verb: mailcluster.OpCAS, Key: key, Value: b, Index: touched[key].idx})
	}
	return s.store.Txn(ctx, ops)
}

// folderChanges coalesces folder changes: one per folder, with every kind
// and the highest sequence number.
type folderChanges struct {
	byFolder map[string]int // index in list
	list     []mailcluster.MailChange
}

func (f *folderChanges) add(c mailcluster.MailChange) {
	if f.byFolder == nil {
		f.byFolder = map[string]int{}
	}
	k := c.Domain + "/" + c.Mailbox + "/" + c.Folder
	i, ok := f.byFolder[k]
	if !ok {
		c.Kinds = slices.Clone(c.Kinds)
		f.byFolder[k] = len(f.list)
		f.list = append(f.list, c)
		return
	}
	e := &f.list[i]
	e.Seq = max(e.Seq, c.Seq)
	for _, kind := range c.Kinds {
		if !slices.Contains(e.Kinds, kind) {
			e.Kinds = append(e.Kinds, kind)
		}
	}
}

// nextMark is the mark after a report of epoch up to seq with the folder
// changes fresh: those and, from the same epoch, the changes of earlier
// reports (coalesced per folder), of which at most MarkChangesKept are
// kept, the latest; From moves past what is dropped.
func nextMark(prev mailcluster.ReportMark, epoch string, seq uint64, fresh folderChanges) mailcluster.ReportMark {
	next := mailcluster.ReportMark{Epoch: epoch, Seq: seq}
	var all folderChanges
	if prev.Epoch == epoch {
		next.From = prev.From
		for _, c := range prev.Changes {
			all.add(c)
		}
	}
	for _, c := range fresh.list {
		all.add(c)
	}
	// Changes of this report (above the previous mark) are all kept; of
	// the earlier ones, the latest.
	var kept, older []mailcluster.MailChange
	for _, c := range all.list {
		if prev.Epoch == epoch && c.Seq <= prev.Seq {
			older = append(older, c)
		} else {
			kept = append(kept, c)
		}
	}
	slices.SortFunc(older, func(a, b mailcluster.MailChange) int { return cmp.Compare(b.Seq, a.Seq) })
	for i, c := range older {
		if i < mailcluster.MarkChangesKept {
			kept = append(kept, c)
		} else {
			next.From = max(next.From, c.Seq)
		}
	}
	slices.SortStableFunc(kept, func(a, b mailcluster.MailChange) int { return cmp.Compare(a.Seq, b.Seq) })
	next.Changes = kept
	return next
}

// FollowMailChanges tells publish of every folder change that the
// primary published from the reports of other nodes (their
// mailcluster.ReportMark records), as this node's copy of the replicated
// state applies them, until ctx ends; each change once. What was
// published before it started is not told. When
// a node's record moved on by more than it keeps since it was last read
// (this node fell far behind), missed is called besides: every folder
// read by this node should be read again. self is this node's name: its
// own changes are not told (it published them when it made them). The
// cost of a change is reading the records of the nodes whose records
// changed, never anything per mailbox.
func (l *Local) FollowMailChanges(ctx context.Context, self string, publish func(mailcluster.MailChange), missed func()) {
	s := l.s
	changed, stop := s.store.Notify(schema.PrefixReports)
	defer stop()
	type seen struct {
		index uint64
		epoch string
		seq   uint64
	}
	known := map[string]seen{}
	scan := func(first bool) {
		for _, kv := range s.store.List(schema.PrefixReports, "", 0) {
			node := strings.TrimPrefix(kv.Key, schema.PrefixReports)
			was, ok := known[node]
			if node == self || ok && was.index == kv.ModifyIndex {
				continue
			}
			var m mailcluster.ReportMark
			if json.Unmarshal(kv.Value, &m) != nil {
				continue
			}
			known[node] = seen{index: kv.ModifyIndex, epoch: m.Epoch, seq: m.Seq}
			if first {
				continue
			}
			var from uint64 // a record first seen, or of a new epoch: everything in it is new
			if ok && was.epoch == m.Epoch {
				if m.Seq <= was.seq {
					continue // nothing new (or an older state restored)
				}
				from = was.seq
			}
			if from < m.From {
				missed()
			}
			for _, c := range m.Changes {
				if c.Seq > from {
					publish(c)
				}
			}
		}
	}
	scan(true)
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
			scan(false)
		}
	}
}
