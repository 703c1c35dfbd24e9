package service

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mailcluster/schema"
	"mailcluster/screening"

	"mailcluster"

	"golang.org/x/crypto/bcrypt"
)

// Service applies the business rules (validation, authorization, the
// read-only rule of secondaries) over a Store. Both management APIs call
// it, so every rule is written once. It is safe for concurrent use.
type Service struct {
	store mailcluster.Store
	lead  mailcluster.Leadership
	log   *slog.Logger

	// NodeName is the local node's name, reported by NodeInfo.
	NodeName string
	// NodeKeyID is a hash of the node key, reported by NodeInfo.
	NodeKeyID string
	// Mode is reported by NodeInfo; the zero value means ModeStandalone.
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
	// Log records cluster events; nil means none.
	Events mailcluster.ClusterLog
	// Failures receives failed logins for dynamic screening; nil: none.
	Failures mailcluster.FailureSink
	// Notify mails thaw tokens to frozen accounts; nil: no mail is sent.
	Notify mailcluster.Notifier
	// Admit checks nodes that ask to join (cluster mode); nil standalone.
	Admit mailcluster.Admission
	// Checks are asked for problems by NodeInfo (and so by /health).
	Checks []mailcluster.HealthCheck
	// SealKey (32 bytes, from SealKey(cluster secret)) seals certificate
	// private keys in the replicated state.
	SealKey []byte
	// ScreeningKey keys the hashes of failed passwords so that the same
	// wrong password counts once cluster-wide (derive it from the cluster
	// secret); nil means a random per-process key.
	ScreeningKey []byte

	scrOnce   sync.Once
	screen    *screeningState
	dummyOnce sync.Once
	dummyHash []byte

	// decodedCache holds decoded domains and accounts by key, valid for
	// the modify index they were decoded at.
	decodedCache sync.Map
	decodedCount atomic.Int64

	// bcryptRuns counts password comparisons (for tests and metrics).
	bcryptRuns atomic.Int64

	authMu    sync.Mutex
	authKey   []byte
	authCache map[[32]byte]time.Time
}

// NewService returns a Service over store, asking lead for the node's role.
func NewService(store mailcluster.Store, lead mailcluster.Leadership, log *slog.Logger) *Service {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return &Service{store: store, lead: lead, log: log, authKey: key, authCache: map[[32]byte]time.Time{}}
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// NodeInfo describes the local node.
func (s *Service) NodeInfo() mailcluster.NodeInfo {
	mode := s.Mode
	if mode == "" {
		mode = mailcluster.ModeStandalone
	}
	info := mailcluster.NodeInfo{Name: s.NodeName, KeyID: s.NodeKeyID, Mode: mode, Role: s.lead.Role(), Version: mailcluster.Version, Index: s.store.Index()}
	if p, ok := s.lead.Primary(); ok {
		info.Primary = &p
	}
	for _, c := range s.Checks {
		info.Problems = append(info.Problems, c.Problems()...)
	}
	if s.Lag != nil {
		if lag := s.Lag.Lag(); lag < 0 {
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
	if s.Cluster != nil {
		return s.Cluster.Status(ctx)
	}
	info := s.NodeInfo()
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
	if s.Cluster == nil {
		return mailcluster.Errorf(mailcluster.EINVALID, "A standalone node has no other node to hand the primary role to.")
	}
	return s.Cluster.Switchover(ctx, target)
}

// Serving reports whether this node serves the configuration: a pending
// node (not registered in the cluster) does not.
func (s *Service) Serving() bool { return s.lead.Role() != mailcluster.RolePending }

// checkServing refuses reads on a pending node.
func (s *Service) checkServing() error {
	if s.Serving() {
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

// Authenticate checks an address and password and returns the account if
// it may use the management APIs (admin rights, not frozen or disabled).
// Every failure is the same EUNAUTHORIZED error so that it reveals nothing.
func (s *Service) Authenticate(ctx context.Context, address, password string) (*mailcluster.Account, error) {
	if err := requireCaller(ctx); err != nil {
		return nil, err
	}
	a, err := s.authenticate(ctx, address, password, "api")
	if err != nil {
		return nil, err
	}
	if a.AdminRights == mailcluster.AdminNone {
		return nil, mailcluster.Errorf(mailcluster.EUNAUTHORIZED, "Authentication failed.")
	}
	return a, nil
}

// authenticate checks credentials for any login. A blocked client
// address is refused (EFORBIDDEN) before anything else; then the attempt
// takes a slot of the client address and of the account (attemptGate), so
// that no more attempts are checked than screening allows, whether they
// come one by one or in parallel. Every wrong password is reported to
// dynamic screening (unknown addresses and frozen accounts count toward
// the client address only). Frozen, disabled and unknown accounts cost the
// same password check as a wrong password. Every credential failure is
// the same EUNAUTHORIZED.
func (s *Service) authenticate(ctx context.Context, address, password, proto string) (*mailcluster.Account, error) {
	if err := s.checkClientIP(ctx); err != nil {
		return nil, err
	}
	fail := mailcluster.Errorf(mailcluster.EUNAUTHORIZED, "Authentication failed.")
	mailbox, domain, err := mailcluster.SplitAddress(address)
	if err != nil || password == "" || len(password) > 1024 {
		s.recordFailure(ctx, "", address+"\x00"+password, proto)
		return nil, fail
	}
	address = mailbox + "@" + domain
	a, _, err := s.getAccount(domain, mailbox)
	if err != nil {
		a = nil
	}
	if a != nil && !a.Frozen && !a.Disabled && s.recentSuccess(a, password) {
		return a.Public(), nil // checked within the last minute: no bcrypt, no slot
	}
	cfg := s.ScreeningSettings()
	hash := s.failureHash(address, password)
	var at *screening.Attempt
	if ip := normalizedClientIP(ctx); cfg.Enabled && ip != "" {
		gateAddr := "" // unknown and frozen accounts need no account limit: no guess can succeed
		if a != nil && !a.Frozen {
			gateAddr = address
		}
		var refused screening.Refusal
		at, refused = s.scr().gate.Reserve(ctx, cfg, s.now, ip, gateAddr, func() bool { return s.isLastUsableAdmin(a) })
		// A refused attempt is not counted: its password was not checked.
		switch refused {
		case screening.RefusedAddress:
			return nil, mailcluster.Errorf(mailcluster.EFORBIDDEN, "Too many failed logins from your address %s; try again later.", ip)
		case screening.RefusedAccount:
			// As slow as a checked password, so that the answer does not
			// tell that the account exists.
			withBcryptSlot(ctx, func() { _ = s.checkDummy(password) })
			return nil, fail
		}
	}
	failed := true
	defer func() {
		if at != nil {
			at.Finish(s.now(), failed, hash)
		}
	}()
	if a == nil {
		if !withBcryptSlot(ctx, func() { _ = s.checkDummy(password) }) {
			return nil, ctxFailure(ctx)
		}
		s.recordFailure(ctx, "", address+"\x00"+password, proto)
		return nil, fail
	}
	frozen := a.Frozen || s.locallyFrozen(a.Address())
	var ok bool
	if !withBcryptSlot(ctx, func() { ok = s.checkPassword(a, password, frozen) }) {
		return nil, ctxFailure(ctx)
	}
	switch {
	case !ok && frozen:
		// A frozen account's failures count toward the client address
		// only; its own count stopped with the freeze.
		s.recordFailure(ctx, "", address+"\x00"+password, proto)
		return nil, fail
	case !ok:
		s.recordFailure(ctx, a.Address(), password, proto)
		return nil, fail
	}
	failed = false
	if frozen || a.Disabled {
		return nil, fail
	}
	return a.Public(), nil
}

// ctxFailure answers a login whose request ended while it waited for a
// password-check slot.
func ctxFailure(ctx context.Context) error {
	return &mailcluster.Error{Code: mailcluster.EUNAVAILABLE, Message: "The server is busy; try again.", Err: ctx.Err()}
}

// normalizedClientIP returns the client address of ctx in canonical form
// ("" when unknown).
func normalizedClientIP(ctx context.Context) string {
	ip, err := mailcluster.NormalizeIP(mailcluster.ClientIPFromContext(ctx))
	if err != nil {
		return ""
	}
	return ip
}

// locallyFrozen reports a freeze this node decided without a primary.
func (s *Service) locallyFrozen(address string) bool {
	sc := s.scr()
	sc.mu.Lock()
	defer sc.mu.Unlock()
	_, ok := sc.localAcc[address]
	return ok
}

// checkDummy spends the time of a real password check (at the cost of
// new hashes), so that an unknown address cannot be told from a wrong
// password by timing.
func (s *Service) checkDummy(password string) error {
	s.dummyOnce.Do(func() {
		cost := s.BcryptCost
		if cost == 0 {
			cost = bcrypt.DefaultCost
		}
		s.dummyHash, _ = bcrypt.GenerateFromPassword([]byte("mailcluster-dummy-password"), cost)
	})
	s.bcryptRuns.Add(1)
	return bcrypt.CompareHashAndPassword(s.dummyHash, []byte(password))
}

// checkPassword compares with bcrypt, remembering recent successes for a
// minute (keyed by an HMAC of address, password and hash, so a changed
// password or hash invalidates the entry and no password is kept). With
// noCache the comparison always runs bcrypt (a frozen account: its
// answer must cost what a wrong password costs).
func (s *Service) checkPassword(a *mailcluster.Account, password string, noCache bool) bool {
	if !noCache && s.recentSuccess(a, password) {
		return true
	}
	if a.PasswordHash == "" {
		_ = s.checkDummy(password)
		return false
	}
	s.bcryptRuns.Add(1)
	if bcrypt.CompareHashAndPassword([]byte(a.PasswordHash), []byte(password)) != nil {
		return false
	}
	k := s.successKey(a, password)
	s.authMu.Lock()
	if len(s.authCache) >= 4096 {
		clear(s.authCache)
	}
	s.authCache[k] = time.Now()
	s.authMu.Unlock()
	return true
}

// successKey keys the success cache: an HMAC of address, password and
// hash, so a changed password or hash invalidates the entry and no
// password is kept.
func (s *Service) successKey(a *mailcluster.Account, password string) [32]byte {
	m := hmac.New(sha256.New, s.authKey)
	m.Write([]byte(a.Address() + "\x00" + password + "\x00" + a.PasswordHash))
	var k [32]byte
	copy(k[:], m.Sum(nil))
	return k
}

// recentSuccess reports whether these credentials were checked
// successfully within the last minute.
func (s *Service) recentSuccess(a *mailcluster.Account, password string) bool {
	k := s.successKey(a, password)
	s.authMu.Lock()
	defer s.authMu.Unlock()
	t, ok := s.authCache[k]
	return ok && time.Since(t) < time.Minute
}

func (s *Service) hashPassword(password string) (string, error) {
	if min := s.intSetting(mailcluster.SectionPasswords, mailcluster.KeyMinLength, mailcluster.DefaultMinPasswordLength); len(password) < min {
		return "", mailcluster.Errorf(mailcluster.EINVALID, "Password must be at least %d characters long.", min)
	}
	if len(password) > 72 {
		return "", mailcluster.Errorf(mailcluster.EINVALID, "Password must be at most 72 bytes long.")
	}
	cost := s.BcryptCost
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return "", err
	}
	return string(h), nil
}

// ---- domains ----

func (s *Service) getDomain(name string) (*mailcluster.Domain, uint64, error) {
	kv, ok := s.store.Get(schema.Domain(name))
	if !ok {
		return nil, 0, mailcluster.Errorf(mailcluster.ENOTFOUND, "Domain %s does not exist.", name)
	}
	var d mailcluster.Domain
	if !s.decodeCached(kv, &d) {
		if err := json.Unmarshal(kv.Value, &d); err != nil {
			return nil, 0, &mailcluster.Error{Code: mailcluster.EINTERNAL, Message: "A stored domain record is damaged.", Err: err}
		}
		s.storeDecoded(kv, d)
	}
	d.AccountCount = s.store.Count(schema.AccountPrefix(name))
	return &d, kv.ModifyIndex, nil
}

// decoded is a record decoded from the store at one modify index.
type decoded struct {
	index uint64
	value any // Domain or Account, by value
}

// maxDecoded bounds the cache of decoded records.
const maxDecoded = 20000

// decodeCached copies the decoded form of kv into dst when the cache holds
// it at kv's modify index (records never change at one index).
func (s *Service) decodeCached(kv mailcluster.KV, dst any) bool {
	v, ok := s.decodedCache.Load(kv.Key)
	if !ok || v.(decoded).index != kv.ModifyIndex {
		return false
	}
	switch d := dst.(type) {
	case *mailcluster.Domain:
		rec, ok := v.(decoded).value.(mailcluster.Domain)
		*d = rec
		return ok
	case *mailcluster.Account:
		rec, ok := v.(decoded).value.(mailcluster.Account)
		*d = rec
		return ok
	}
	return false
}

func (s *Service) storeDecoded(kv mailcluster.KV, value any) {
	if s.decodedCount.Add(1) > maxDecoded {
		s.decodedCache.Clear()
		s.decodedCount.Store(0)
	}
	s.decodedCache.Store(kv.Key, decoded{index: kv.ModifyIndex, value: value})
}

// FindDomains returns every domain the caller may see, by name.
func (s *Service) FindDomains(ctx context.Context) ([]*mailcluster.Domain, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	if err := s.checkServing(); err != nil {
		return nil, err
	}
	var out []*mailcluster.Domain
	for _, kv := range s.store.List(schema.PrefixDomains, "", 0) {
		name := strings.TrimPrefix(kv.Key, schema.PrefixDomains)
		if authorizeDomain(ctx, name) != nil {
			continue
		}
		d, _, err := s.getDomain(name)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// FindDomain returns one domain. Errors: ENOTFOUND, EINVALID, EFORBIDDEN.
func (s *Service) FindDomain(ctx context.Context, name string) (*mailcluster.Domain, error) {
	if err := requireSignedIn(ctx); err != nil {
		return nil, err
	}
	if err := s.checkServing(); err != nil {
		return nil, err
	}
	name = mailcluster.NormalizeDomain(name)
	if err := mailcluster.ValidateDomainName(name); err != nil {
		return nil, err
	}
	if err := authorizeDomain(ctx, name); err != nil {
		return nil, err
	}
	d, _, err := s.getDomain(name)
	return d, err
}

// CreateDomain adds a domain. Errors: EINVALID, ECONFLICT (exists),
// EFORBIDDEN, EREADONLY, EUNAVAILABLE.
func (s *Service) CreateDomain(ctx context.Context, d *mailcluster.Domain) (*mailcluster.Domain, error) {
	if err := requireGlobalAdmin(ctx); err != nil {
		return nil, err
	}
	d.Name = mailcluster.NormalizeDomain(d.Name)
	if err := mailcluster.ValidateDomainName(d.Name); err != nil {
		return nil, err
	}
	if err := validateDomainFields(d.Description, d.MaxAccounts); err != nil {
		return nil, err
	}
	if err := s.checkWritable(); err != nil {
		return nil, err
	}
	if _, ok := s.store.Get(schema.Domain(d.Name)); ok {
		return nil, mailcluster.Errorf(mailcluster.ECONFLICT, "Domain %s already exists.", d.Name)
	}
	d.CreatedAt, d.UpdatedAt, d.AccountCount = s.now(), s.now(), 0
	b, _ := json.Marshal(d)
	if err := s.txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpCAS, Key: schema.Domain(d.Name), Value: b, Index: 0}}); err != nil {
		return nil, conflictAs(err, "Domain %s already exists.", d.Name)
	}
	s.log.Info("domain created", "domain", d.Name)
	if out, _, err := s.getDomain(d.Name); err == nil {
		return out, nil
	}
	return d, nil // committed; this node's snapshot has not shown it yet
}

func validateDomainFields(description string, maxAccounts int) error {
	if len(description) > 1024 || strings.ContainsAny(description, "\r\n\x00") {
		return mailcluster.Errorf(mailcluster.EINVALID, "Description must be one line of at most 1024 bytes.")
	}
	if maxAccounts < 0 {
		return mailcluster.Errorf(mailcluster.EINVALID, "MaxAccounts must be 0 (unlimited) or more.")
	}
	return nil
}

// UpdateDomain changes a domain's fields. Errors as CreateDomain plus ENOTFOUND.
func (s *Service) UpdateDomain(ctx context.Context, name string, upd mailcluster.DomainUpdate) (*mailcluster.Domain, error) {
	if err := requireGlobalAdmin(ctx); err != nil {
		return nil, err
	}
	name = mailcluster.NormalizeDomain(name)
	if err := mailcluster.ValidateDomainName(name); err != nil {
		return nil, err
	}
	if err := s.checkWritable(); err != nil {
		return nil, err
	}
	d, idx, err := s.getDomain(name)
	if err != nil {
		return nil, err
	}
	if upd.Description != nil {
		d.Description = *upd.Description
	}
	if upd.MaxAccounts != nil {
		d.MaxAccounts = *upd.MaxAccounts
	}
	if err := validateDomainFields(d.Description, d.MaxAccounts); err != nil {
		return nil, err
	}
	d.UpdatedAt = s.now()
	d.AccountCount = 0
	b, _ := json.Marshal(d)
	if err := s.txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpCAS, Key: schema.Domain(name), Value: b, Index: idx}}); err != nil {
		return nil, conflictAs(err, "Domain %s was changed concurrently; try again.", name)
	}
	if out, _, err := s.getDomain(name); err == nil {
		return out, nil
	}
	return d, nil // committed; this node's snapshot has not shown it yet
}

// DeleteDomain removes a domain. A domain with accounts is removed, with
// all its accounts in the same transaction, only when force is set.
// Errors: ENOTFOUND, ECONFLICT (has accounts), EFORBIDDEN, EREADONLY.
func (s *Service) DeleteDomain(ctx context.Context, name string, force bool) error {
	if err := requireGlobalAdmin(ctx); err != nil {
		return err
	}
	name = mailcluster.NormalizeDomain(name)
	if err := mailcluster.ValidateDomainName(name); err != nil {
		return err
	}
	if err := s.checkWritable(); err != nil {
		return err
	}
	_, idx, err := s.getDomain(name)
	if err != nil {
		return err
	}
	accounts := s.store.List(schema.AccountPrefix(name), "", 0)
	if len(accounts) > 0 && !force {
		return mailcluster.Errorf(mailcluster.ECONFLICT, "Domain %s has %d accounts; delete them first or use force.", name, len(accounts))
	}
	if c := CallerFromContext(ctx); c != nil && c.Domain == name {
		return mailcluster.Errorf(mailcluster.ECONFLICT, "You cannot delete the domain of your own account.")
	}
	if err := s.checkLastAdmin(name, ""); err != nil {
		return err
	}
	ops := []mailcluster.Op{{Verb: mailcluster.OpDeleteCAS, Key: schema.Domain(name), Index: idx}}
	for _, kv := range accounts {
		ops = append(ops, mailcluster.Op{Verb: mailcluster.OpDeleteCAS, Key: kv.Key, Index: kv.ModifyIndex})
	}
	for _, kv := range s.store.List(schema.PrefixUsage+name+"/", "", 0) {
		ops = append(ops, mailcluster.Op{Verb: mailcluster.OpDelete, Key: kv.Key})
	}
	for _, kv := range s.store.List(schema.PrefixFrozenAccounts, "", 0) {
		if strings.HasSuffix(kv.Key, "@"+name) {
			ops = append(ops, mailcluster.Op{Verb: mailcluster.OpDelete, Key: kv.Key})
		}
	}
	if err := s.txn(ctx, ops); err != nil {
		return conflictAs(err, "Domain %s was changed concurrently; try again.", name)
	}
	s.log.Info("domain deleted", "domain", name, "accounts", len(accounts))
	return nil
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

func (s *Service) getAccount(domain, mailbox string) (*mailcluster.Account, uint64, error) {
	kv, ok := s.store.Get(schema.Account(domain, mailbox))
	if !ok {
		return nil, 0, mailcluster.Errorf(mailcluster.ENOTFOUND, "Account %s@%s does not exist.", mailbox, domain)
	}
	var a mailcluster.Account
	if !s.decodeCached(kv, &a) {
		if err := json.Unmarshal(kv.Value, &a); err != nil {
			return nil, 0, &mailcluster.Error{Code: mailcluster.EINTERNAL, Message: "A stored account record is damaged.", Err: err}
		}
		s.storeDecoded(kv, a)
	}
	return &a, kv.ModifyIndex, nil
}

func normalizeAccountName(domain, mailbox string) (string, string, error) {
	domain, mailbox = mailcluster.NormalizeDomain(domain), mailcluster.NormalizeMailbox(mailbox)
	if err := mailcluster.ValidateDomainName(domain); err != nil {
		return "", "", err
	}
	if err := mailcluster.ValidateMailbox(mailbox); err != nil {
		return "", "", err
	}
	return domain, mailbox, nil
}

// FindAccount returns one account without its password hash.
// Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
func (s *Service) FindAccount(ctx context.Context, domain, mailbox string) (*mailcluster.Account, error) {
	if err := requireSignedIn(ctx); err != nil {
		return nil, err
	}
	if err := s.checkServing(); err != nil {
		return nil, err
	}
	domain, mailbox, err := normalizeAccountName(domain, mailbox)
	if err != nil {
		return nil, err
	}
	if err := authorizeDomain(ctx, domain); err != nil {
		return nil, err
	}
	if _, _, err := s.getDomain(domain); err != nil {
		return nil, err
	}
	a, _, err := s.getAccount(domain, mailbox)
	if err != nil {
		return nil, err
	}
	return a.Public(), nil
}

// FindAccounts returns one page of a domain's accounts and the cursor of
// the next page ("" on the last page).
func (s *Service) FindAccounts(ctx context.Context, f mailcluster.AccountFilter) ([]*mailcluster.Account, string, error) {
	if err := requireSignedIn(ctx); err != nil {
		return nil, "", err
	}
	if err := s.checkServing(); err != nil {
		return nil, "", err
	}
	domain := mailcluster.NormalizeDomain(f.Domain)
	if err := mailcluster.ValidateDomainName(domain); err != nil {
		return nil, "", err
	}
	if err := authorizeDomain(ctx, domain); err != nil {
		return nil, "", err
	}
	if _, _, err := s.getDomain(domain); err != nil {
		return nil, "", err
	}
	if f.Limit == 0 {
		f.Limit = 100
	}
	if f.Limit < 1 || f.Limit > 1000 {
		return nil, "", mailcluster.Errorf(mailcluster.EINVALID, "Limit must be between 1 and 1000.")
	}
	after := ""
	if f.Cursor != "" {
		after = schema.Account(domain, mailcluster.NormalizeMailbox(f.Cursor))
	}
	search := strings.ToLower(f.Search)
	var out []*mailcluster.Account
	next := ""
	for after != "\xff" {
		batch := s.store.List(schema.AccountPrefix(domain), after, 256)
		if len(batch) == 0 {
			break
		}
		for _, kv := range batch {
			after = kv.Key
			var a mailcluster.Account
			if err := json.Unmarshal(kv.Value, &a); err != nil {
				return nil, "", &mailcluster.Error{Code: mailcluster.EINTERNAL, Message: "A stored account record is damaged.", Err: err}
			}
			if search != "" && !accountMatches(&a, search) {
				continue
			}
			if len(out) == f.Limit {
				next = out[len(out)-1].Mailbox
				after = "\xff"
				break
			}
			out = append(out, a.Public())
		}
	}
	return out, next, nil
}

func accountMatches(a *mailcluster.Account, search string) bool {
	for _, s := range []string{a.Mailbox, a.FullName, a.FirstName, a.LastName} {
		if strings.Contains(strings.ToLower(s), search) {
			return true
		}
	}
	return false
}

func validateAccountFields(a *mailcluster.Account) error {
	for name, v := range map[string]string{"FullName": a.FullName, "FirstName": a.FirstName, "LastName": a.LastName} {
		if len(v) > 256 || strings.ContainsAny(v, "\r\n\x00") {
			return mailcluster.Errorf(mailcluster.EINVALID, "%s must be one line of at most 256 bytes.", name)
		}
	}
	if a.QuotaBytes < 0 || a.QuotaMessages < 0 {
		return mailcluster.Errorf(mailcluster.EINVALID, "Quotas must be 0 (unlimited) or more.")
	}
	rights, err := mailcluster.ParseAdminRights(string(a.AdminRights))
	if err != nil {
		return err
	}
	a.AdminRights = rights
	if a.MailboxPath != "" && (!strings.HasPrefix(a.MailboxPath, "/") || strings.Contains(a.MailboxPath, "..") ||
		strings.ContainsAny(a.MailboxPath, "\r\n\x00") || len(a.MailboxPath) > 1024) {
		return mailcluster.Errorf(mailcluster.EINVALID, "Mailbox path must be an absolute path without '..'.")
	}
	sendAs, err := normalizeSendAs(a.SendAs)
	if err != nil {
		return err
	}
	a.SendAs = sendAs
	return nil
}

// MaxSendAs is the most entries an account's SendAs list may hold.
const MaxSendAs = 100

// normalizeSendAs lower-cases and checks a SendAs list: addresses or
// "@domain" entries, no duplicates.
func normalizeSendAs(list []string) ([]string, error) {
	if len(list) > MaxSendAs {
		return nil, mailcluster.Errorf(mailcluster.EINVALID, "SendAs may list at most %d addresses.", MaxSendAs)
	}
	var out []string
	seen := map[string]bool{}
	for _, e := range list {
		e = strings.ToLower(strings.TrimSpace(e))
		if rest, ok := strings.CutPrefix(e, "@"); ok {
			if err := mailcluster.ValidateDomainName(rest); err != nil {
				return nil, mailcluster.Errorf(mailcluster.EINVALID, "SendAs entry %q is neither an address nor @domain.", e)
			}
		} else if mailbox, domain, err := mailcluster.SplitAddress(e); err != nil {
			return nil, mailcluster.Errorf(mailcluster.EINVALID, "SendAs entry %q is neither an address nor @domain.", e)
		} else {
			e = mailbox + "@" + domain
		}
		if !seen[e] {
			seen[e] = true
			out = append(out, e)
		}
	}
	return out, nil
}

// sendAsDomain returns the domain an SendAs entry belongs to.
func sendAsDomain(e string) string { return e[strings.LastIndexByte(e, '@')+1:] }

// authorizeAccountFields refuses the fields that only a global
// administrator may set: global rights, a mailbox path (it names files on
// the host), and sender addresses outside the caller's own domain.
// pathChanged tells whether the request sets a mailbox path other than the
// one the account has (or would get from the template), sendAsSet whether
// it sets the SendAs list.
func authorizeAccountFields(ctx context.Context, a *mailcluster.Account, pathChanged, sendAsSet bool) error {
	c := CallerFromContext(ctx)
	if c == nil || c.AdminRights == mailcluster.AdminGlobal {
		return nil
	}
	if a.AdminRights == mailcluster.AdminGlobal {
		return mailcluster.Errorf(mailcluster.EFORBIDDEN, "Only global administrators may grant global admin rights.")
	}
	if pathChanged {
		return mailcluster.Errorf(mailcluster.EFORBIDDEN, "Only global administrators may set a mailbox path.")
	}
	for _, e := range a.SendAs {
		if sendAsSet && sendAsDomain(e) != c.Domain {
			return mailcluster.Errorf(mailcluster.EFORBIDDEN, "You may only allow sender addresses of your own domain %s.", c.Domain)
		}
	}
	return nil
}

// confineMailboxPath resolves an account's mailbox path and refuses one
// outside the mailbox roots (EINVALID, as bad input of a global
// administrator, the only caller who can choose a path).
func (s *Service) confineMailboxPath(p string) error {
	if _, err := mailcluster.ConfineMailboxPath(p, mailcluster.MailboxRoots(s.Setting)...); err != nil {
		return mailcluster.Errorf(mailcluster.EINVALID, "Mailbox path %q must lie below the mailbox root %s.", p,
			s.stringSetting(mailcluster.SectionDirectories, mailcluster.KeyMailboxRoot, mailcluster.DefaultMailboxRoot))
	}
	return nil
}

// CreateAccount adds an account to an existing domain. The mailbox path
// comes from [NewAccounts] MailboxPath unless given.
// Errors: EINVALID, ENOTFOUND (domain), ECONFLICT (exists or domain full),
// EFORBIDDEN, EREADONLY, EUNAVAILABLE.
func (s *Service) CreateAccount(ctx context.Context, in mailcluster.AccountCreate) (*mailcluster.Account, error) {
	if err := requireSignedIn(ctx); err != nil {
		return nil, err
	}
	domain, mailbox, err := normalizeAccountName(in.Domain, in.Mailbox)
	if err != nil {
		return nil, err
	}
	if err := authorizeDomain(ctx, domain); err != nil {
		return nil, err
	}
	a := &mailcluster.Account{Domain: domain, Mailbox: mailbox, FullName: in.FullName, FirstName: in.FirstName, LastName: in.LastName,
		MailboxPath: in.MailboxPath, Frozen: in.Frozen, Disabled: in.Disabled, QuotaBytes: in.QuotaBytes,
		QuotaMessages: in.QuotaMessages, AdminRights: in.AdminRights, SendAs: in.SendAs}
	if err := validateAccountFields(a); err != nil {
		return nil, err
	}
	if err := authorizeAccountFields(ctx, a, in.MailboxPath != "" && in.MailboxPath != s.MailboxPathFor(domain, mailbox), true); err != nil {
		return nil, err
	}
	if in.Password == "" {
		return nil, mailcluster.Errorf(mailcluster.EINVALID, "Password is required.")
	}
	if err := s.checkWritable(); err != nil {
		return nil, err
	}
	d, didx, err := s.getDomain(domain)
	if err != nil {
		return nil, err
	}
	if _, ok := s.store.Get(schema.Account(domain, mailbox)); ok {
		return nil, mailcluster.Errorf(mailcluster.ECONFLICT, "Account %s@%s already exists.", mailbox, domain)
	}
	if d.MaxAccounts > 0 && d.AccountCount >= d.MaxAccounts {
		return nil, mailcluster.Errorf(mailcluster.ECONFLICT, "Domain %s already has its maximum of %d accounts.", domain, d.MaxAccounts)
	}
	if a.MailboxPath == "" {
		a.MailboxPath = s.MailboxPathFor(domain, mailbox)
	}
	if err := s.confineMailboxPath(a.MailboxPath); err != nil {
		return nil, err
	}
	if a.PasswordHash, err = s.hashPassword(in.Password); err != nil {
		return nil, err
	}
	a.CreatedAt, a.UpdatedAt = s.now(), s.now()
	b, _ := json.Marshal(a)
	ops := []mailcluster.Op{
		{Verb: mailcluster.OpCheck, Key: schema.Domain(domain), Index: didx},
		{Verb: mailcluster.OpCAS, Key: schema.Account(domain, mailbox), Value: b, Index: 0},
	}
	if err := s.txn(ctx, ops); err != nil {
		return nil, conflictAs(err, "Account %s@%s already exists or its domain changed; try again.", mailbox, domain)
	}
	s.log.Info("account created", "address", a.Address())
	return a.Public(), nil
}

// MailboxPathFor expands the new-account template for an address.
func (s *Service) MailboxPathFor(domain, mailbox string) string {
	tmpl := s.stringSetting(mailcluster.SectionNewAccounts, mailcluster.KeyMailboxPath, mailcluster.DefaultMailboxPathTemplate)
	root := s.stringSetting(mailcluster.SectionDirectories, mailcluster.KeyMailboxRoot, mailcluster.DefaultMailboxRoot)
	return mailcluster.ExpandMailboxPath(tmpl, root, domain, mailbox)
}

// UpdateAccount changes an account. Errors as CreateAccount.
func (s *Service) UpdateAccount(ctx context.Context, domain, mailbox string, upd mailcluster.AccountUpdate) (*mailcluster.Account, error) {
	if err := requireSignedIn(ctx); err != nil {
		return nil, err
	}
	domain, mailbox, err := normalizeAccountName(domain, mailbox)
	if err != nil {
		return nil, err
	}
	if err := authorizeDomain(ctx, domain); err != nil {
		return nil, err
	}
	caller := CallerFromContext(ctx)
	if err := s.checkWritable(); err != nil {
		return nil, err
	}
	a, idx, err := s.getAccount(domain, mailbox)
	if err != nil {
		return nil, err
	}
	if caller != nil && caller.AdminRights != mailcluster.AdminGlobal && a.AdminRights == mailcluster.AdminGlobal {
		return nil, mailcluster.Errorf(mailcluster.EFORBIDDEN, "Only global administrators may change a global administrator.")
	}
	wasGlobal := a.AdminRights == mailcluster.AdminGlobal && !a.Disabled && !a.Frozen
	oldPath := a.MailboxPath
	setIf(&a.FullName, upd.FullName)
	setIf(&a.FirstName, upd.FirstName)
	setIf(&a.LastName, upd.LastName)
	setIf(&a.MailboxPath, upd.MailboxPath)
	setIf(&a.Frozen, upd.Frozen)
	setIf(&a.Disabled, upd.Disabled)
	setIf(&a.QuotaBytes, upd.QuotaBytes)
	setIf(&a.QuotaMessages, upd.QuotaMessages)
	setIf(&a.AdminRights, upd.AdminRights)
	setIf(&a.SendAs, upd.SendAs)
	if upd.MailboxPath != nil && *upd.MailboxPath == "" {
		return nil, mailcluster.Errorf(mailcluster.EINVALID, "Mailbox path may not be empty.")
	}
	if err := validateAccountFields(a); err != nil {
		return nil, err
	}
	if err := authorizeAccountFields(ctx, a, a.MailboxPath != oldPath, upd.SendAs != nil); err != nil {
		return nil, err
	}
	if a.MailboxPath != oldPath {
		if err := s.confineMailboxPath(a.MailboxPath); err != nil {
			return nil, err
		}
	}
	if wasGlobal && (a.AdminRights != mailcluster.AdminGlobal || a.Disabled || a.Frozen) {
		if err := s.checkLastAdmin("", a.Address()); err != nil {
			return nil, err
		}
	}
	if upd.Password != nil {
		if a.PasswordHash, err = s.hashPassword(*upd.Password); err != nil {
			return nil, err
		}
	}
	a.UpdatedAt = s.now()
	b, _ := json.Marshal(a)
	ops := []mailcluster.Op{{Verb: mailcluster.OpCAS, Key: schema.Account(domain, mailbox), Value: b, Index: idx}}
	if !a.Frozen {
		// Thawing by hand also ends a freeze by dynamic screening.
		if rec, ok := s.store.Get(schema.PrefixFrozenAccounts + a.Address()); ok {
			ops = append(ops, mailcluster.Op{Verb: mailcluster.OpDeleteCAS, Key: rec.Key, Index: rec.ModifyIndex})
		}
	}
	if err := s.txn(ctx, ops); err != nil {
		return nil, conflictAs(err, "Account %s@%s was changed concurrently; try again.", mailbox, domain)
	}
	s.log.Info("account updated", "address", a.Address())
	return a.Public(), nil
}

func setIf[T any](dst *T, src *T) {
	if src != nil {
		*dst = *src
	}
}

// DeleteAccount removes an account. Its mail on disk is left in place; the
// mail service removes it when asked to (RemoveMailbox).
// Errors: EINVALID, ENOTFOUND, ECONFLICT (last global admin, own account),
// EFORBIDDEN, EREADONLY.
func (s *Service) DeleteAccount(ctx context.Context, domain, mailbox string) error {
	if err := requireSignedIn(ctx); err != nil {
		return err
	}
	domain, mailbox, err := normalizeAccountName(domain, mailbox)
	if err != nil {
		return err
	}
	if err := authorizeDomain(ctx, domain); err != nil {
		return err
	}
	if err := s.checkWritable(); err != nil {
		return err
	}
	a, idx, err := s.getAccount(domain, mailbox)
	if err != nil {
		return err
	}
	caller := CallerFromContext(ctx)
	if caller != nil && caller.AdminRights != mailcluster.AdminGlobal && a.AdminRights == mailcluster.AdminGlobal {
		return mailcluster.Errorf(mailcluster.EFORBIDDEN, "Only global administrators may delete a global administrator.")
	}
	if caller != nil && caller.Address() == a.Address() {
		return mailcluster.Errorf(mailcluster.ECONFLICT, "You cannot delete your own account.")
	}
	if a.AdminRights == mailcluster.AdminGlobal {
		if err := s.checkLastAdmin("", a.Address()); err != nil {
			return err
		}
	}
	ops := []mailcluster.Op{{Verb: mailcluster.OpDeleteCAS, Key: schema.Account(domain, mailbox), Index: idx}}
	for _, k := range []string{schema.Usage(domain, mailbox), schema.PrefixFrozenAccounts + a.Address()} {
		if _, ok := s.store.Get(k); ok {
			ops = append(ops, mailcluster.Op{Verb: mailcluster.OpDelete, Key: k})
		}
	}
	if err := s.txn(ctx, ops); err != nil {
		return conflictAs(err, "Account %s@%s was changed concurrently; try again.", mailbox, domain)
	}
	s.log.Info("account deleted", "address", a.Address())
	return nil
}

// checkLastAdmin refuses a change that would leave no usable global
// administrator: excluding the accounts of domain exceptDomain and the
// account exceptAddress, one must remain.
func (s *Service) checkLastAdmin(exceptDomain, exceptAddress string) error {
	for _, kv := range s.store.List(schema.PrefixAccounts, "", 0) {
		var a mailcluster.Account
		if json.Unmarshal(kv.Value, &a) != nil {
			continue
		}
		if a.AdminRights == mailcluster.AdminGlobal && !a.Disabled && !a.Frozen && a.Domain != exceptDomain && a.Address() != exceptAddress {
			return nil
		}
	}
	return mailcluster.Errorf(mailcluster.ECONFLICT, "This would leave no usable global administrator.")
}

// ---- settings ----

func (s *Service) stringSetting(section, key, def string) string {
	if kv, ok := s.store.Get(schema.Setting(mailcluster.MainSettingsFile, section, key)); ok && len(kv.Value) > 0 {
		return string(kv.Value)
	}
	return def
}

func (s *Service) intSetting(section, key string, def int) int {
	if n, err := strconv.Atoi(s.stringSetting(section, key, "")); err == nil {
		return n
	}
	return def
}

// Setting returns one value of the main settings file, or def when unset.
// It reads the local snapshot and needs no authorization (for the node's
// own components).
func (s *Service) Setting(section, key, def string) string { return s.stringSetting(section, key, def) }

// SettingsFiles lists the names of the ini files.
func (s *Service) SettingsFiles(ctx context.Context) ([]string, error) {
	if err := requireSignedIn(ctx); err != nil {
		return nil, err
	}
	if err := s.checkServing(); err != nil {
		return nil, err
	}
	if err := requireGlobalAdmin(ctx); err != nil {
		return nil, err
	}
	return schema.ListSettingsFiles(s.store), nil
}

// SettingsFile returns one ini file. Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
func (s *Service) SettingsFile(ctx context.Context, file string) (*mailcluster.SettingsFile, error) {
	if err := requireSignedIn(ctx); err != nil {
		return nil, err
	}
	if err := s.checkServing(); err != nil {
		return nil, err
	}
	if err := requireGlobalAdmin(ctx); err != nil {
		return nil, err
	}
	if err := mailcluster.ValidateSettingsFileName(file); err != nil {
		return nil, err
	}
	secs, ok := schema.ReadSettingsFile(s.store, file)
	if !ok {
		return nil, mailcluster.Errorf(mailcluster.ENOTFOUND, "Settings file %s does not exist.", file)
	}
	return &mailcluster.SettingsFile{Name: file, Sections: secs}, nil
}

// ReplaceSettingsFile makes file hold exactly secs, in one transaction
// (keys not in secs are deleted; an empty secs deletes the file).
func (s *Service) ReplaceSettingsFile(ctx context.Context, file string, secs mailcluster.Sections) (*mailcluster.SettingsFile, error) {
	if err := requireGlobalAdmin(ctx); err != nil {
		return nil, err
	}
	if err := mailcluster.ValidateSettingsFileName(file); err != nil {
		return nil, err
	}
	for sec, keys := range secs {
		for k, v := range keys {
			if err := mailcluster.ValidateSetting(file, sec, k, v); err != nil {
				return nil, err
			}
			if err := s.clusterRule(file, sec, k, v); err != nil {
				return nil, err
			}
		}
	}
	if err := s.checkWritable(); err != nil {
		return nil, err
	}
	var ops []mailcluster.Op
	for _, kv := range s.store.List(schema.PrefixSettings+file+"/", "", 0) {
		sec, key, _ := strings.Cut(strings.TrimPrefix(kv.Key, schema.PrefixSettings+file+"/"), "/")
		if v, ok := secs[sec][key]; ok {
			if v != string(kv.Value) {
				ops = append(ops, mailcluster.Op{Verb: mailcluster.OpCAS, Key: kv.Key, Value: []byte(v), Index: kv.ModifyIndex})
			}
			continue
		}
		ops = append(ops, mailcluster.Op{Verb: mailcluster.OpDeleteCAS, Key: kv.Key, Index: kv.ModifyIndex})
	}
	for sec, keys := range secs {
		for k, v := range keys {
			if _, ok := s.store.Get(schema.Setting(file, sec, k)); !ok {
				ops = append(ops, mailcluster.Op{Verb: mailcluster.OpCAS, Key: schema.Setting(file, sec, k), Value: []byte(v), Index: 0})
			}
		}
	}
	if len(ops) > 0 {
		if err := s.txn(ctx, ops); err != nil {
			return nil, conflictAs(err, "Settings file %s was changed concurrently; try again.", file)
		}
		s.log.Info("settings file replaced", "file", file, "changes", len(ops))
	}
	out, ok := schema.ReadSettingsFile(s.store, file)
	if !ok {
		out = mailcluster.Sections{}
	}
	return &mailcluster.SettingsFile{Name: file, Sections: out}, nil
}

// UpdateSettings sets (or, for a nil value, deletes) the given keys of
// several files in one transaction. Errors: EINVALID, EFORBIDDEN, EREADONLY.
func (s *Service) UpdateSettings(ctx context.Context, changes map[string]map[string]map[string]*string) error {
	if err := requireGlobalAdmin(ctx); err != nil {
		return err
	}
	var ops []mailcluster.Op
	for file, secs := range changes {
		for sec, keys := range secs {
			for k, v := range keys {
				if v == nil {
					// A delete needs valid names only, not a valid value.
					if err := mailcluster.ValidateSetting(file, sec, k, ""); err != nil && !isRuleError(file, sec, k) {
						return err
					}
				} else if err := mailcluster.ValidateSetting(file, sec, k, *v); err != nil {
					return err
				} else if err := s.clusterRule(file, sec, k, *v); err != nil {
					return err
				}
				val := ""
				if v != nil {
					val = *v
				}
				key := schema.Setting(file, sec, k)
				if v == nil {
					ops = append(ops, mailcluster.Op{Verb: mailcluster.OpDelete, Key: key})
				} else {
					ops = append(ops, mailcluster.Op{Verb: mailcluster.OpSet, Key: key, Value: []byte(val)})
				}
			}
		}
	}
	if len(ops) == 0 {
		return mailcluster.Errorf(mailcluster.EINVALID, "No settings to change were given.")
	}
	if err := s.checkWritable(); err != nil {
		return err
	}
	if err := s.txn(ctx, ops); err != nil {
		return err
	}
	s.log.Info("settings updated", "changes", len(ops))
	return nil
}

// clusterRule refuses settings that a cluster cannot honour.
func (s *Service) clusterRule(file, section, key, value string) error {
	if s.Mode != mailcluster.ModeCluster || file != mailcluster.MainSettingsFile {
		return nil
	}
	if section == mailcluster.SectionAttachmentLinking && key == mailcluster.KeyEnabled {
		if on, _ := mailcluster.ParseFlag(value); on {
			return mailcluster.Errorf(mailcluster.EINVALID, "Attachment linking cannot be used in a cluster (attachments extracted to links live on one node's disk); [AttachmentLinking] Enabled must stay No.")
		}
	}
	return nil
}

// AttachmentLinkingEnabled reports [AttachmentLinking] Enabled.
func (s *Service) AttachmentLinkingEnabled() bool {
	on, _ := mailcluster.ParseFlag(s.stringSetting(mailcluster.SectionAttachmentLinking, mailcluster.KeyEnabled, "No"))
	return on
}

// GetSetting returns one value. Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
func (s *Service) GetSetting(ctx context.Context, file, section, key string) (string, error) {
	if err := requireSignedIn(ctx); err != nil {
		return "", err
	}
	if err := s.checkServing(); err != nil {
		return "", err
	}
	if err := requireGlobalAdmin(ctx); err != nil {
		return "", err
	}
	if err := mailcluster.ValidateSetting(file, section, key, ""); err != nil && mailcluster.ErrorCode(err) == mailcluster.EINVALID && !isRuleError(file, section, key) {
		return "", err
	}
	kv, ok := s.store.Get(schema.Setting(file, section, key))
	if !ok {
		return "", mailcluster.Errorf(mailcluster.ENOTFOUND, "Setting [%s] %s does not exist in %s.", section, key, file)
	}
	return string(kv.Value), nil
}

// isRuleError tells whether the names are valid (so that an EINVALID from
// ValidateSetting with an empty value came from a value rule).
func isRuleError(file, section, key string) bool {
	return mailcluster.ValidSettingNames(file, section, key)
}

// SetSetting writes one value. Errors: EINVALID, EFORBIDDEN, EREADONLY.
func (s *Service) SetSetting(ctx context.Context, file, section, key, value string) error {
	if err := requireSignedIn(ctx); err != nil {
		return err
	}
	return s.UpdateSettings(ctx, map[string]map[string]map[string]*string{file: {section: {key: &value}}})
}

// DeleteSetting removes one key. Errors: EINVALID, ENOTFOUND, EFORBIDDEN, EREADONLY.
func (s *Service) DeleteSetting(ctx context.Context, file, section, key string) error {
	if err := requireGlobalAdmin(ctx); err != nil {
		return err
	}
	if err := s.checkWritable(); err != nil {
		return err
	}
	if _, err := s.GetSetting(ctx, file, section, key); err != nil {
		return err
	}
	kv, _ := s.store.Get(schema.Setting(file, section, key))
	if err := s.txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpDeleteCAS, Key: kv.Key, Index: kv.ModifyIndex}}); err != nil {
		return conflictAs(err, "Setting [%s] %s was changed concurrently; try again.", section, key)
	}
	return nil
}
