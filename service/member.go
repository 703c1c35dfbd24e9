package service

import (
	"context"
	"encoding/json"
	"strings"

	"mailcluster/schema"

	"mailcluster"
)

// ClusterLog returns cluster-log entries of this node, or of f.Node.
// Errors: EINVALID, EFORBIDDEN, ENOTFOUND (unknown node), EUNAVAILABLE.
func (s *Service) ClusterLog(ctx context.Context, f mailcluster.ClusterLogFilter) ([]mailcluster.ClusterEvent, error) {
	if err := requireGlobalAdmin(ctx); err != nil {
		return nil, err
	}
	if !mailcluster.ValidLogLevel(f.Level) {
		return nil, mailcluster.Errorf(mailcluster.EINVALID, "Level must be info, warn or error.")
	}
	if f.Limit < 0 || f.Limit > 1000 {
		return nil, mailcluster.Errorf(mailcluster.EINVALID, "Limit must be between 1 and 1000.")
	}
	if f.Node != "" && f.Node != s.opts.NodeName {
		r, ok := s.opts.Cluster.(mailcluster.RemoteLogReader)
		if !ok {
			return nil, mailcluster.Errorf(mailcluster.ENOTFOUND, "There is no node %q here.", f.Node)
		}
		return r.NodeLog(ctx, f.Node, f)
	}
	if s.opts.Events == nil {
		return []mailcluster.ClusterEvent{}, nil
	}
	evs, err := s.opts.Events.Events(5000)
	if err != nil {
		return nil, &mailcluster.Error{Code: mailcluster.EUNAVAILABLE, Message: "The cluster log cannot be read.", Err: err}
	}
	out := mailcluster.FilterEvents(evs, f)
	if out == nil {
		out = []mailcluster.ClusterEvent{}
	}
	return out, nil
}

// Servers lists the registered servers. Errors: EFORBIDDEN.
func (s *Service) Members(ctx context.Context) ([]mailcluster.Member, error) {
	if err := requireGlobalAdmin(ctx); err != nil {
		return nil, err
	}
	return s.registeredMembers(), nil
}

// registeredMembers returns the registered servers (no authorization).
func (s *Service) registeredMembers() []mailcluster.Member {
	var out []mailcluster.Member
	for _, kv := range s.store.List(schema.PrefixServers, "", 0) {
		var sv mailcluster.Member
		if json.Unmarshal(kv.Value, &sv) == nil {
			out = append(out, sv)
		}
	}
	return out
}

// RegisteredServer returns one registered server.
func (s *Service) registeredMember(name string) (mailcluster.Member, bool) {
	var sv mailcluster.Member
	kv, ok := s.store.Get(schema.Server(name))
	if !ok || json.Unmarshal(kv.Value, &sv) != nil {
		return mailcluster.Member{}, false
	}
	return sv, true
}

// isRegistered reports whether a node name is registered.
func (s *Service) isRegistered(name string) bool {
	_, ok := s.store.Get(schema.Server(name))
	return ok
}

// RegisterServer admits a node, found by name or address, after the
// admission checks (primary only). A refusal is recorded in the cluster
// log with its reason. Errors: EINVALID (refused, with the reason),
// ECONFLICT (registered already), EFORBIDDEN, EREADONLY, EUNAVAILABLE.
func (s *Service) AddMember(ctx context.Context, nameOrAddress string) (*mailcluster.Member, error) {
	if err := requireGlobalAdmin(ctx); err != nil {
		return nil, err
	}
	nameOrAddress = strings.TrimSpace(nameOrAddress)
	if nameOrAddress == "" || len(nameOrAddress) > 255 || strings.ContainsAny(nameOrAddress, " \t\r\n") {
		return nil, mailcluster.Errorf(mailcluster.EINVALID, "Give the node's name or its address (host:port or URL).")
	}
	if err := s.checkWritable(); err != nil {
		return nil, err
	}
	if s.opts.Admit == nil {
		return nil, mailcluster.Errorf(mailcluster.EINVALID, "A standalone node has no other servers to register.")
	}
	registered := s.registeredMembers()
	sv, err := s.opts.Admit.Check(ctx, nameOrAddress, registered)
	if err != nil {
		if s.opts.Events != nil {
			s.opts.Events.Record(mailcluster.ClusterEvent{Level: "warn", Event: mailcluster.EventRegistrationRefused, Message: mailcluster.ErrorMessage(err),
				Fields: map[string]string{"node": nameOrAddress}})
		}
		return nil, err
	}
	if _, ok := s.store.Get(schema.Server(sv.Name)); ok {
		return nil, mailcluster.Errorf(mailcluster.ECONFLICT, "Node %s is registered already.", sv.Name)
	}
	sv.RegisteredAt = s.now()
	b, _ := json.Marshal(sv)
	if err := s.txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpCAS, Key: schema.Server(sv.Name), Value: b}}); err != nil {
		return nil, conflictAs(err, "Node %s was registered concurrently.", sv.Name)
	}
	if s.opts.Events != nil {
		s.opts.Events.Record(mailcluster.ClusterEvent{Event: mailcluster.EventRegistration, Message: "a node was registered",
			Fields: map[string]string{"node": sv.Name, "api": sv.APIURL, "version": sv.Version}})
	}
	return sv, nil
}

// RegisterSelf registers this node without checks: the first node of a
// new cluster, which nobody else could admit (primary only).
func (s *Service) RegisterSelf(ctx context.Context, sv mailcluster.Member) error {
	if err := requireSystem(ctx); err != nil {
		return err
	}
	if err := s.checkWritable(); err != nil {
		return err
	}
	sv.RegisteredAt = s.now()
	b, _ := json.Marshal(sv)
	_, err := s.store.Txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpCAS, Key: schema.Server(sv.Name), Value: b}})
	if mailcluster.ErrorCode(err) == mailcluster.ECONFLICT {
		return nil
	}
	return err
}

// RemoveServer unregisters a node; it goes back to pending.
// Errors: EINVALID, ENOTFOUND, ECONFLICT (the primary itself), EFORBIDDEN, EREADONLY.
func (s *Service) RemoveMember(ctx context.Context, name string) error {
	if err := requireGlobalAdmin(ctx); err != nil {
		return err
	}
	if err := s.checkWritable(); err != nil {
		return err
	}
	kv, ok := s.store.Get(schema.Server(name))
	if !ok {
		return mailcluster.Errorf(mailcluster.ENOTFOUND, "Node %q is not registered.", name)
	}
	if name == s.opts.NodeName {
		return mailcluster.Errorf(mailcluster.ECONFLICT, "The primary cannot unregister itself; switch over first.")
	}
	if err := s.txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpDeleteCAS, Key: kv.Key, Index: kv.ModifyIndex}}); err != nil {
		return err
	}
	if s.opts.Events != nil {
		s.opts.Events.Record(mailcluster.ClusterEvent{Level: "warn", Event: mailcluster.EventUnregistered, Message: "a node was unregistered", Fields: map[string]string{"node": name}})
	}
	return nil
}
