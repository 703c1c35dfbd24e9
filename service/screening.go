package service

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"mailcluster/schema"
	"mailcluster/screening"

	"mailcluster"
)

func (s *Service) durSetting(key string, def time.Duration) time.Duration {
	if n, err := strconv.Atoi(s.stringSetting(mailcluster.SectionScreening, key, "")); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	return def
}

// screeningSettings returns [Screening] with defaults applied.
func (s *Service) screeningSettings() mailcluster.ScreeningConfig {
	c := mailcluster.ScreeningConfig{
		Enabled:          true,
		IPFailures:       s.intSettingIn(mailcluster.SectionScreening, mailcluster.KeyIPFailures, 5),
		IPWindow:         s.durSetting(mailcluster.KeyIPWindow, 10*time.Minute),
		BlockDuration:    s.durSetting(mailcluster.KeyBlockDuration, 30*time.Minute),
		MaxBlockDuration: s.durSetting(mailcluster.KeyMaxBlockDuration, 7*24*time.Hour),
		AccountFailures:  s.intSettingIn(mailcluster.SectionScreening, mailcluster.KeyAccountFailures, 10),
		AccountWindow:    s.durSetting(mailcluster.KeyAccountWindow, 24*time.Hour),
		AllowAccounts:    map[string]bool{},
		ThawTokenTTL:     time.Duration(s.intSettingIn(mailcluster.SectionScreening, mailcluster.KeyThawTokenLifetime, 48)) * time.Hour,
	}
	if v := s.stringSetting(mailcluster.SectionScreening, mailcluster.KeyScreeningEnabled, "Yes"); v != "" {
		c.Enabled, _ = mailcluster.ParseFlag(v)
	}
	for _, p := range splitList(s.stringSetting(mailcluster.SectionScreening, mailcluster.KeyAllowIPs, "")) {
		if pre, err := parsePrefix(p); err == nil {
			c.AllowIPs = append(c.AllowIPs, pre)
		}
	}
	for _, a := range splitList(s.stringSetting(mailcluster.SectionScreening, mailcluster.KeyAllowAccounts, "")) {
		c.AllowAccounts[strings.ToLower(a)] = true
	}
	return c
}

func (s *Service) intSettingIn(section, key string, def int) int {
	if n, err := strconv.Atoi(s.stringSetting(section, key, "")); err == nil && n > 0 {
		return n
	}
	return def
}

func splitList(v string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == ';' }) {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// screeningState is the node's screening state that is not replicated: the
// detector's failure windows, the attempt gate, and the decisions a node
// made on its own while no primary was reachable.
type screeningState struct {
	detector *screening.Detector
	gate     *screening.Gate
	hasher   *screening.Hasher

	mu       sync.Mutex
	local    map[string]mailcluster.BlockedIP // ip -> a block decided locally
	localAcc map[string]mailcluster.FrozenAccount
}

func (s *Service) scr() *screeningState {
	s.scrOnce.Do(func() {
		s.screen = &screeningState{detector: screening.NewDetector(), gate: screening.NewGate(), hasher: screening.NewHasher(s.opts.ScreeningKey),
			local: map[string]mailcluster.BlockedIP{}, localAcc: map[string]mailcluster.FrozenAccount{}}
	})
	return s.screen
}

// failureHash keys an address and password so that the same wrong
// password counts once; the password itself is never kept.
func (s *Service) failureHash(address, password string) string {
	return s.scr().hasher.Hash(address, password)
}

// blockedIP returns the active block of ip, from the replicated state or a
// local decision. Expiry is checked against the clock.
func (s *Service) blockedIP(ip string) (*mailcluster.BlockedIP, bool) {
	ip, err := mailcluster.NormalizeIP(ip)
	if err != nil {
		return nil, false
	}
	now := s.now()
	if kv, ok := s.getShared(schema.BlockedIP(ip)); ok {
		var b mailcluster.BlockedIP
		if json.Unmarshal(kv.Value, &b) == nil && b.Active(now) {
			return &b, true
		}
	}
	sc := s.scr()
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if b, ok := sc.local[ip]; ok && b.Active(now) {
		return &b, true
	}
	return nil, false
}

// checkClientIP refuses a request from a blocked address (EFORBIDDEN).
func (s *Service) checkClientIP(ctx context.Context) error {
	ip := mailcluster.ClientIPFromContext(ctx)
	if ip == "" {
		return nil
	}
	if b, ok := s.blockedIP(ip); ok {
		until := "until an administrator unblocks it"
		if !b.Until.IsZero() {
			until = "until " + b.Until.UTC().Format(time.RFC3339)
		}
		return mailcluster.Errorf(mailcluster.EFORBIDDEN, "Your address %s is blocked by dynamic screening %s.", b.IP, until)
	}
	return nil
}

// recordFailure reports a failed login (never for a frozen account, whose
// failures do not count further).
func (s *Service) recordFailure(ctx context.Context, address, password, proto string) {
	if s.opts.Failures == nil {
		return
	}
	ip := mailcluster.ClientIPFromContext(ctx)
	if ip == "" {
		return
	}
	s.opts.Failures.Report(mailcluster.LoginFailure{Time: s.now(), IP: ip, Address: address, Hash: s.failureHash(address, password),
		Node: s.opts.NodeName, Proto: proto})
}

// ReportFailures counts failed logins and decides (primary only): an IP
// with IPFailures distinct failures within IPWindow is blocked for
// BlockDuration doubled per earlier offence; an account with
// AccountFailures distinct failures within AccountWindow is frozen and a
// thaw token is mailed to it. Errors: EREADONLY, EUNAVAILABLE.
func (s *Service) ReportFailures(ctx context.Context, fs []mailcluster.LoginFailure) error {
	if err := requireSystem(ctx); err != nil {
		return err
	}
	if err := s.checkWritable(); err != nil {
		return err
	}
	cfg := s.screeningSettings()
	if !cfg.Enabled {
		return nil
	}
	ips, accs := s.count(cfg, fs)
	for _, ip := range ips {
		if err := s.autoBlock(ctx, cfg, ip); err != nil {
			return err
		}
	}
	for _, addr := range accs {
		if err := s.autoFreeze(ctx, cfg, addr); err != nil {
			return err
		}
	}
	return nil
}

// decideLocally counts failures on a node that cannot reach a primary and
// blocks on this node only; the primary's state replaces these decisions
// when it is reachable again (ClearLocalDecisions).
func (s *Service) decideLocally(fs []mailcluster.LoginFailure) {
	cfg := s.screeningSettings()
	if !cfg.Enabled {
		return
	}
	ips, accs := s.count(cfg, fs)
	sc := s.scr()
	now := s.now()
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for _, ip := range ips {
		offences := 0
		if kv, ok := s.store.Get(schema.BlockedIP(ip)); ok {
			var b mailcluster.BlockedIP
			if json.Unmarshal(kv.Value, &b) == nil {
				offences = b.Offences
			}
		}
		sc.local[ip] = mailcluster.BlockedIP{IP: ip, Until: now.Add(screening.BlockDuration(cfg, offences)), Offences: offences + 1,
			Reason: "too many failed logins (decided locally, no primary reachable)", Source: "local", CreatedAt: now}
	}
	for _, a := range accs {
		if mailbox, domain, err := mailcluster.SplitAddress(a); err == nil {
			if acc, _, err := s.getAccount(domain, mailbox); err == nil && s.isLastUsableAdmin(acc) {
				continue // never lock out the last usable global administrator
			}
		}
		sc.localAcc[a] = mailcluster.FrozenAccount{Address: a, Since: now, Reason: "too many failed logins (decided locally)", Source: "local"}
	}
}

// clearLocalDecisions drops the blocks and freezes this node decided on
// its own; it returns how many there were.
func (s *Service) clearLocalDecisions() int {
	sc := s.scr()
	sc.mu.Lock()
	defer sc.mu.Unlock()
	n := len(sc.local) + len(sc.localAcc)
	clear(sc.local)
	clear(sc.localAcc)
	sc.detector.Reset()
	return n
}

// count adds failures to the detector's windows and returns the IPs and
// accounts whose threshold is reached.
func (s *Service) count(cfg mailcluster.ScreeningConfig, fs []mailcluster.LoginFailure) (ips, accs []string) {
	return s.scr().detector.Observe(cfg, s.now(), fs)
}

func (s *Service) autoBlock(ctx context.Context, cfg mailcluster.ScreeningConfig, ip string) error {
	for range 10 {
		now := s.now()
		b := mailcluster.BlockedIP{IP: ip, Source: "auto", CreatedAt: now, Reason: "too many failed logins"}
		kv, ok := s.store.Get(schema.BlockedIP(ip))
		if ok {
			var old mailcluster.BlockedIP
			if json.Unmarshal(kv.Value, &old) == nil {
				if old.Active(now) {
					return nil // already blocked
				}
				b.Offences = old.Offences
			}
		}
		b.Until = now.Add(screening.BlockDuration(cfg, b.Offences))
		b.Offences++
		v, _ := json.Marshal(b)
		_, err := s.store.Txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpCAS, Key: schema.BlockedIP(ip), Value: v, Index: kv.ModifyIndex}})
		if mailcluster.ErrorCode(err) == mailcluster.ECONFLICT {
			continue
		}
		if err == nil && s.opts.Events != nil {
			s.opts.Events.Record(mailcluster.ClusterEvent{Level: "warn", Event: mailcluster.EventIPBlocked, Message: "an address was blocked by dynamic screening",
				Fields: map[string]string{"ip": ip, "until": b.Until.Format(time.RFC3339), "offences": strconv.Itoa(b.Offences)}})
		}
		return err
	}
	return mailcluster.Errorf(mailcluster.ECONFLICT, "The block of %s changed concurrently.", ip)
}

func (s *Service) autoFreeze(ctx context.Context, cfg mailcluster.ScreeningConfig, address string) error {
	err := s.freeze(ctx, cfg, address, "too many failed logins", "auto")
	if errors.Is(err, errLastAdmin) {
		s.log.Warn("not freezing the last usable global administrator", "address", address)
		if s.opts.Events != nil {
			s.opts.Events.Record(mailcluster.ClusterEvent{Level: "warn", Event: mailcluster.EventFreezeSkipped,
				Message: "too many failed logins, but the account is the last usable global administrator and stays usable",
				Fields:  map[string]string{"address": address}})
		}
		return nil
	}
	if err != nil && mailcluster.ErrorCode(err) != mailcluster.ENOTFOUND && mailcluster.ErrorCode(err) != mailcluster.ECONFLICT {
		return err
	}
	return nil
}

// errLastAdmin refuses to freeze the last usable global administrator.
var errLastAdmin = mailcluster.Errorf(mailcluster.ECONFLICT, "This is the last usable global administrator: freezing it would lock every administrator out.")

// isLastUsableAdmin reports whether a is a usable global administrator
// and no other usable one exists. The answer (a read of the global
// administrators listed in the index) is remembered for the state's index,
// so that a guesser hammering a global administrator costs one read per
// change of state, not one per attempt.
func (s *Service) isLastUsableAdmin(a *mailcluster.Account) bool {
	if a.AdminRights != mailcluster.AdminGlobal || a.Frozen || a.Disabled {
		return false
	}
	index := s.store.Index()
	m := &s.lastAdmin
	m.mu.Lock()
	if m.valid && m.index == index && m.address == a.Address() {
		last := m.last
		m.mu.Unlock()
		return last
	}
	m.mu.Unlock()
	last := s.checkLastAdmin("", a.Address()) != nil
	m.mu.Lock()
	m.valid, m.index, m.address, m.last = true, index, a.Address(), last
	m.mu.Unlock()
	return last
}

// lastAdminMemo remembers the last answer of isLastUsableAdmin.
type lastAdminMemo struct {
	mu      sync.Mutex
	valid   bool
	index   uint64
	address string
	last    bool
}

// freeze sets the account's Frozen flag and writes the screening record
// with a fresh thaw token in one transaction, then mails the token.
func (s *Service) freeze(ctx context.Context, cfg mailcluster.ScreeningConfig, address, reason, source string) error {
	mailbox, domain, err := mailcluster.SplitAddress(address)
	if err != nil {
		return err
	}
	a, idx, err := s.getAccount(domain, mailbox)
	if err != nil {
		return err
	}
	if a.Frozen {
		return mailcluster.Errorf(mailcluster.ECONFLICT, "Account %s is frozen already.", a.Address())
	}
	if s.isLastUsableAdmin(a) {
		return errLastAdmin
	}
	token := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(randomBytes(20))
	now := s.now()
	fa := mailcluster.FrozenAccount{Address: a.Address(), Since: now, Reason: reason, Source: source,
		TokenHash: tokenHash(token), TokenExpires: now.Add(cfg.ThawTokenTTL)}
	a.Frozen, a.UpdatedAt = true, now
	ab, _ := json.Marshal(a)
	fb, _ := json.Marshal(fa)
	ops := []mailcluster.Op{
		{Verb: mailcluster.OpCAS, Key: schema.Account(domain, mailbox), Value: ab, Index: idx},
		{Verb: mailcluster.OpSet, Key: schema.FrozenAccount(a.Address()), Value: fb},
	}
	if _, err := s.store.Txn(ctx, ops); err != nil {
		return err
	}
	if s.opts.Events != nil {
		s.opts.Events.Record(mailcluster.ClusterEvent{Level: "warn", Event: mailcluster.EventAccountFrozen, Message: "an account was frozen",
			Fields: map[string]string{"address": a.Address(), "source": source}})
	}
	if s.opts.Notify != nil {
		if err := s.opts.Notify.NotifyFrozen(ctx, a.Public(), token, fa.TokenExpires); err != nil {
			s.log.Error("mailing the thaw token", "address", a.Address(), "err", err)
		}
	}
	return nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(strings.ToUpper(strings.TrimSpace(token))))
	return hex.EncodeToString(sum[:])
}

// ---- admin views ----

// ListBlockedIPs returns every block record (active or kept for counting
// offences), plus this node's local decisions. Errors: EFORBIDDEN.
func (s *Service) ListBlockedIPs(ctx context.Context) ([]mailcluster.BlockedIP, error) {
	if err := requireGlobalAdmin(ctx); err != nil {
		return nil, err
	}
	var out []mailcluster.BlockedIP
	seen := map[string]bool{}
	for _, kv := range s.store.List(schema.PrefixBlockedIPs, "", 0) {
		var b mailcluster.BlockedIP
		if json.Unmarshal(kv.Value, &b) == nil {
			out = append(out, b)
			seen[b.IP] = true
		}
	}
	sc := s.scr()
	sc.mu.Lock()
	for ip, b := range sc.local {
		if !seen[ip] {
			out = append(out, b)
		}
	}
	sc.mu.Unlock()
	return out, nil
}

// BlockIP blocks an address until the given time (zero: no expiry).
// Errors: EINVALID, EFORBIDDEN, EREADONLY, EUNAVAILABLE.
func (s *Service) BlockIP(ctx context.Context, ip string, until time.Time, reason string) (*mailcluster.BlockedIP, error) {
	if err := requireGlobalAdmin(ctx); err != nil {
		return nil, err
	}
	ip, err := mailcluster.NormalizeIP(ip)
	if err != nil {
		return nil, err
	}
	now := s.now()
	if !until.IsZero() && !until.After(now) {
		return nil, mailcluster.Errorf(mailcluster.EINVALID, "The block must end in the future (or never).")
	}
	if len(reason) > 256 || strings.ContainsAny(reason, "\r\n\x00") {
		return nil, mailcluster.Errorf(mailcluster.EINVALID, "Reason must be one line of at most 256 bytes.")
	}
	if err := s.checkWritable(); err != nil {
		return nil, err
	}
	b := mailcluster.BlockedIP{IP: ip, Until: until.UTC(), Reason: reason, Source: "admin", CreatedAt: now}
	if b.Reason == "" {
		b.Reason = "blocked by an administrator"
	}
	if kv, ok := s.store.Get(schema.BlockedIP(ip)); ok {
		var old mailcluster.BlockedIP
		if json.Unmarshal(kv.Value, &old) == nil {
			b.Offences = old.Offences
		}
	}
	v, _ := json.Marshal(b)
	if err := s.txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpSet, Key: schema.BlockedIP(ip), Value: v}}); err != nil {
		return nil, err
	}
	return &b, nil
}

// UnblockIP removes an address's block record (and its offence count).
// Errors: EINVALID, ENOTFOUND, EFORBIDDEN, EREADONLY.
func (s *Service) UnblockIP(ctx context.Context, ip string) error {
	if err := requireGlobalAdmin(ctx); err != nil {
		return err
	}
	ip, err := mailcluster.NormalizeIP(ip)
	if err != nil {
		return err
	}
	if err := s.checkWritable(); err != nil {
		return err
	}
	kv, ok := s.store.Get(schema.BlockedIP(ip))
	if !ok {
		return mailcluster.Errorf(mailcluster.ENOTFOUND, "Address %s is not blocked.", ip)
	}
	if err := s.txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpDeleteCAS, Key: kv.Key, Index: kv.ModifyIndex}}); err != nil {
		return err
	}
	s.scr().gate.ForgetAddress(ip)
	return nil
}

// ListFrozenAccounts returns the frozen accounts the caller may see,
// without token hashes (a domain administrator sees its own domain).
func (s *Service) ListFrozenAccounts(ctx context.Context) ([]mailcluster.FrozenAccount, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	var out []mailcluster.FrozenAccount
	for _, kv := range s.store.List(schema.PrefixFrozenAccounts, "", 0) {
		var f mailcluster.FrozenAccount
		if json.Unmarshal(kv.Value, &f) != nil {
			continue
		}
		_, domain, _ := strings.Cut(f.Address, "@")
		if authorizeDomain(ctx, domain) != nil {
			continue
		}
		f.TokenHash = ""
		out = append(out, f)
	}
	return out, nil
}

// FreezeAccount freezes an account by hand (a thaw token is mailed to it).
// Errors: EINVALID, ENOTFOUND, ECONFLICT, EFORBIDDEN, EREADONLY.
func (s *Service) FreezeAccount(ctx context.Context, address, reason string) error {
	if err := requireSignedIn(ctx); err != nil {
		return err
	}
	mailbox, domain, err := mailcluster.SplitAddress(address)
	if err != nil {
		return err
	}
	if err := authorizeDomain(ctx, domain); err != nil {
		return err
	}
	caller := CallerFromContext(ctx)
	if caller != nil && caller.Address() == mailbox+"@"+domain {
		return mailcluster.Errorf(mailcluster.ECONFLICT, "You cannot freeze your own account.")
	}
	if err := s.checkWritable(); err != nil {
		return err
	}
	if caller != nil && caller.AdminRights != mailcluster.AdminGlobal {
		if a, _, err := s.getAccount(domain, mailbox); err == nil && a.AdminRights == mailcluster.AdminGlobal {
			return mailcluster.Errorf(mailcluster.EFORBIDDEN, "Only global administrators may freeze a global administrator.")
		}
	}
	if len(reason) > 256 || strings.ContainsAny(reason, "\r\n\x00") {
		return mailcluster.Errorf(mailcluster.EINVALID, "Reason must be one line of at most 256 bytes.")
	}
	if reason == "" {
		reason = "frozen by an administrator"
	}
	return s.freeze(ctx, s.screeningSettings(), mailbox+"@"+domain, reason, "admin")
}

// ThawAccount clears an account's Frozen flag and screening record.
// Errors: EINVALID, ENOTFOUND, EFORBIDDEN, EREADONLY.
func (s *Service) ThawAccount(ctx context.Context, address string) error {
	if err := requireSignedIn(ctx); err != nil {
		return err
	}
	mailbox, domain, err := mailcluster.SplitAddress(address)
	if err != nil {
		return err
	}
	if err := authorizeDomain(ctx, domain); err != nil {
		return err
	}
	if err := s.checkWritable(); err != nil {
		return err
	}
	return s.thaw(ctx, domain, mailbox)
}

func (s *Service) thaw(ctx context.Context, domain, mailbox string) error {
	a, idx, err := s.getAccount(domain, mailbox)
	if err != nil {
		return err
	}
	rec, hasRec := s.store.Get(schema.FrozenAccount(a.Address()))
	if !a.Frozen && !hasRec {
		return mailcluster.Errorf(mailcluster.ENOTFOUND, "Account %s is not frozen.", a.Address())
	}
	a.Frozen, a.UpdatedAt = false, s.now()
	ab, _ := json.Marshal(a)
	ops := []mailcluster.Op{{Verb: mailcluster.OpCAS, Key: schema.Account(domain, mailbox), Value: ab, Index: idx}}
	if hasRec {
		ops = append(ops, mailcluster.Op{Verb: mailcluster.OpDeleteCAS, Key: rec.Key, Index: rec.ModifyIndex})
	}
	if err := s.txn(ctx, ops); err != nil {
		return conflictAs(err, "Account %s was changed concurrently; try again.", a.Address())
	}
	sc := s.scr()
	sc.mu.Lock()
	delete(sc.localAcc, a.Address())
	sc.mu.Unlock()
	sc.detector.ForgetAccount(a.Address())
	sc.gate.ForgetAccount(a.Address())
	if s.opts.Events != nil {
		s.opts.Events.Record(mailcluster.ClusterEvent{Event: mailcluster.EventAccountThawed, Message: "an account was thawed", Fields: map[string]string{"address": a.Address()}})
	}
	return nil
}

// RedeemThawToken thaws a frozen account with the single-use token that
// was mailed to it. It needs no credentials; a wrong token counts as a
// failed login of the client's address. Errors: EINVALID, EUNAUTHORIZED,
// EFORBIDDEN (blocked address), EREADONLY, EUNAVAILABLE.
func (s *Service) RedeemThawToken(ctx context.Context, address, token string) error {
	if err := requireCaller(ctx); err != nil {
		return err
	}
	if err := s.checkClientIP(ctx); err != nil {
		return err
	}
	fail := mailcluster.Errorf(mailcluster.EUNAUTHORIZED, "The thaw token is not valid (wrong, used or expired).")
	mailbox, domain, err := mailcluster.SplitAddress(address)
	if err != nil || token == "" || len(token) > 128 {
		return mailcluster.Errorf(mailcluster.EINVALID, "An address and a token are required.")
	}
	if err := s.checkWritable(); err != nil {
		return err
	}
	kv, ok := s.store.Get(schema.FrozenAccount(mailbox + "@" + domain))
	var fa mailcluster.FrozenAccount
	if ok {
		ok = json.Unmarshal(kv.Value, &fa) == nil
	}
	if !ok || fa.TokenHash == "" || !hmac.Equal([]byte(fa.TokenHash), []byte(tokenHash(token))) || s.now().After(fa.TokenExpires) {
		s.recordFailure(ctx, "", address+"\x00"+token, "thaw")
		return fail
	}
	return s.thaw(ctx, domain, mailbox)
}
