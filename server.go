package mailcluster

import (
	"context"
	"encoding/json"
	"strings"
	"time"
)

// PrefixServers holds the registered servers: servers/<node-name>.
const PrefixServers = "servers/"

// Server is a node registered in the cluster by an administrator (or
// automatically with --auto-admit). Only registered nodes serve the
// configuration and take part in the election.
type Server struct {
	Name         string    `json:"name"`
	APIURL       string    `json:"apiUrl"`
	NodeKeyID    string    `json:"nodeKeyId"` // a hash of the node key, never the key
	Version      string    `json:"version"`
	TimeZone     string    `json:"timeZone"`
	RegisteredAt time.Time `json:"registeredAt"`
}

// Admission finds a node that asks to join and checks it (version, unique
// node key, shared path, attachment linking), over the internal API.
type Admission interface {
	// Check returns the node's registration record, or an error whose
	// message says why it is refused. Errors: EINVALID (refused, unknown),
	// EUNAVAILABLE (cannot reach it).
	Check(ctx context.Context, nameOrAddress string, registered []Server) (*Server, error)
}

// ClusterLogFilter selects cluster-log entries.
type ClusterLogFilter struct {
	Since time.Time // only entries at or after
	Level string    // info, warn or error: that level and above
	Node  string    // read that node's log (over the internal API) instead of this node's
	Limit int       // the newest Limit entries (1-1000; 0 means 100)
}

var levelRank = map[string]int{"": 0, "info": 1, "warn": 2, "error": 3}

// FilterEvents applies Since, Level and Limit (Node is not looked at).
func FilterEvents(evs []ClusterEvent, f ClusterLogFilter) []ClusterEvent {
	var out []ClusterEvent
	for _, e := range evs {
		if !f.Since.IsZero() && e.Time.Before(f.Since) {
			continue
		}
		if levelRank[e.Level] < levelRank[f.Level] {
			continue
		}
		out = append(out, e)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out
}

// RemoteLogReader reads another node's cluster log (cluster mode).
type RemoteLogReader interface {
	NodeLog(ctx context.Context, node string, f ClusterLogFilter) ([]ClusterEvent, error)
}

// ClusterLog returns cluster-log entries of this node, or of f.Node.
// Errors: EINVALID, EFORBIDDEN, ENOTFOUND (unknown node), EUNAVAILABLE.
func (s *Service) ClusterLog(ctx context.Context, f ClusterLogFilter) ([]ClusterEvent, error) {
	if err := authorizeServer(ctx); err != nil {
		return nil, err
	}
	if _, ok := levelRank[f.Level]; !ok {
		return nil, Errorf(EINVALID, "Level must be info, warn or error.")
	}
	if f.Limit < 0 || f.Limit > 1000 {
		return nil, Errorf(EINVALID, "Limit must be between 1 and 1000.")
	}
	if f.Node != "" && f.Node != s.NodeName {
		r, ok := s.Cluster.(RemoteLogReader)
		if !ok {
			return nil, Errorf(ENOTFOUND, "There is no node %q here.", f.Node)
		}
		return r.NodeLog(ctx, f.Node, f)
	}
	if s.Events == nil {
		return []ClusterEvent{}, nil
	}
	evs, err := s.Events.Events(5000)
	if err != nil {
		return nil, &Error{Code: EUNAVAILABLE, Message: "The cluster log cannot be read.", Err: err}
	}
	out := FilterEvents(evs, f)
	if out == nil {
		out = []ClusterEvent{}
	}
	return out, nil
}

// Servers lists the registered servers. Errors: EFORBIDDEN.
func (s *Service) Servers(ctx context.Context) ([]Server, error) {
	if err := authorizeServer(ctx); err != nil {
		return nil, err
	}
	return s.RegisteredServers(), nil
}

// RegisteredServers returns the registered servers (no authorization).
func (s *Service) RegisteredServers() []Server {
	var out []Server
	for _, kv := range s.store.List(PrefixServers, "", 0) {
		var sv Server
		if json.Unmarshal(kv.Value, &sv) == nil {
			out = append(out, sv)
		}
	}
	return out
}

// RegisteredServer returns one registered server.
func (s *Service) RegisteredServer(name string) (Server, bool) {
	var sv Server
	kv, ok := s.store.Get(PrefixServers + name)
	if !ok || json.Unmarshal(kv.Value, &sv) != nil {
		return Server{}, false
	}
	return sv, true
}

// IsRegistered reports whether a node name is registered.
func (s *Service) IsRegistered(name string) bool {
	_, ok := s.store.Get(PrefixServers + name)
	return ok
}

// RegisterServer admits a node, found by name or address, after the
// admission checks (primary only). A refusal is recorded in the cluster
// log with its reason. Errors: EINVALID (refused, with the reason),
// ECONFLICT (registered already), EFORBIDDEN, EREADONLY, EUNAVAILABLE.
func (s *Service) RegisterServer(ctx context.Context, nameOrAddress string) (*Server, error) {
	if err := authorizeServer(ctx); err != nil {
		return nil, err
	}
	nameOrAddress = strings.TrimSpace(nameOrAddress)
	if nameOrAddress == "" || len(nameOrAddress) > 255 || strings.ContainsAny(nameOrAddress, " \t\r\n") {
		return nil, Errorf(EINVALID, "Give the node's name or its address (host:port or URL).")
	}
	if err := s.checkWritable(); err != nil {
		return nil, err
	}
	if s.Admit == nil {
		return nil, Errorf(EINVALID, "A standalone node has no other servers to register.")
	}
	registered := s.RegisteredServers()
	sv, err := s.Admit.Check(ctx, nameOrAddress, registered)
	if err != nil {
		if s.Events != nil {
			s.Events.Record(ClusterEvent{Level: "warn", Event: "registration-refused", Message: ErrorMessage(err),
				Fields: map[string]string{"node": nameOrAddress}})
		}
		return nil, err
	}
	if _, ok := s.store.Get(PrefixServers + sv.Name); ok {
		return nil, Errorf(ECONFLICT, "Node %s is registered already.", sv.Name)
	}
	sv.RegisteredAt = s.now()
	b, _ := json.Marshal(sv)
	if err := s.txn(ctx, []Op{{Verb: OpCAS, Key: PrefixServers + sv.Name, Value: b}}); err != nil {
		return nil, conflictAs(err, "Node %s was registered concurrently.", sv.Name)
	}
	if s.Events != nil {
		s.Events.Record(ClusterEvent{Event: "registration", Message: "a node was registered",
			Fields: map[string]string{"node": sv.Name, "api": sv.APIURL, "version": sv.Version}})
	}
	return sv, nil
}

// RegisterSelf registers this node without checks: the first node of a
// new cluster, which nobody else could admit (primary only).
func (s *Service) RegisterSelf(ctx context.Context, sv Server) error {
	if err := s.checkWritable(); err != nil {
		return err
	}
	sv.RegisteredAt = s.now()
	b, _ := json.Marshal(sv)
	_, err := s.store.Txn(ctx, []Op{{Verb: OpCAS, Key: PrefixServers + sv.Name, Value: b}})
	if ErrorCode(err) == ECONFLICT {
		return nil
	}
	return err
}

// RemoveServer unregisters a node; it goes back to pending.
// Errors: EINVALID, ENOTFOUND, ECONFLICT (the primary itself), EFORBIDDEN, EREADONLY.
func (s *Service) RemoveServer(ctx context.Context, name string) error {
	if err := authorizeServer(ctx); err != nil {
		return err
	}
	if err := s.checkWritable(); err != nil {
		return err
	}
	kv, ok := s.store.Get(PrefixServers + name)
	if !ok {
		return Errorf(ENOTFOUND, "Node %q is not registered.", name)
	}
	if name == s.NodeName {
		return Errorf(ECONFLICT, "The primary cannot unregister itself; switch over first.")
	}
	if err := s.txn(ctx, []Op{{Verb: OpDeleteCAS, Key: kv.Key, Index: kv.ModifyIndex}}); err != nil {
		return err
	}
	if s.Events != nil {
		s.Events.Record(ClusterEvent{Level: "warn", Event: "unregistered", Message: "a node was unregistered", Fields: map[string]string{"node": name}})
	}
	return nil
}
