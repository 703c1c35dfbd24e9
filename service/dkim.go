package service

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"sync"

	"github.com/emersion/go-msgauth/dkim"

	"mailcluster"
	"mailcluster/internal/dkimsign"
	"mailcluster/schema"
)

// A domain has at most one DKIM key, at schema.DKIMKey(domain), with its
// private key sealed with the cluster's seal key (Options.SealKey), so
// that every node signs with the same key and no answer or log holds it.
// Global administrators and the domain's administrators manage it; a
// create or an import replaces the domain's key (publish the new
// selector's TXT record before mail signed with it goes out).

// maxDKIMKeyPEM bounds an imported private key (a 4096-bit RSA key in
// PEM is about 3.3 KiB).
const maxDKIMKeyPEM = 16 << 10

// dkimWrite checks a change of domain's DKIM key: a signed-in caller with
// rights on domain, this node takes writes and domain is in service. It
// returns the normalized domain and the index of its record.
func (s *Service) dkimWrite(ctx context.Context, domain string) (string, uint64, error) {
	domain, err := s.dkimDomain(ctx, domain)
	if err != nil {
		return "", 0, err
	}
	didx, err := s.writableDomain(domain)
	return domain, didx, err
}

// dkimDomain checks the caller's rights on domain and returns it normalized.
func (s *Service) dkimDomain(ctx context.Context, domain string) (string, error) {
	if err := requireSignedIn(ctx); err != nil {
		return "", err
	}
	domain = mailcluster.NormalizeDomain(domain)
	if err := mailcluster.ValidateDomainName(domain); err != nil {
		return "", err
	}
	if err := authorizeDomain(ctx, domain); err != nil {
		return "", err
	}
	return domain, nil
}

// dkimSelector normalizes and checks a selector.
func dkimSelector(selector string) (string, error) {
	selector = mailcluster.NormalizeSelector(selector)
	return selector, mailcluster.ValidateSelector(selector)
}

// CreateDKIMKey generates a DKIM key for domain under selector, replacing
// the domain's key: algorithm is mailcluster.DKIMRSASHA256 (2048 bits; ""
// means it) or mailcluster.DKIMEd25519SHA256. It returns the key without
// its private part. Errors: EINVALID, ENOTFOUND (domain), ECONFLICT (the
// domain is being deleted, or a concurrent change), EFORBIDDEN, EREADONLY,
// EUNAVAILABLE (no seal key on this node).
func (s *Service) CreateDKIMKey(ctx context.Context, domain, selector, algorithm string) (*mailcluster.DKIMKey, error) {
	domain, err := s.dkimDomain(ctx, domain)
	if err != nil {
		return nil, err
	}
	if selector, err = dkimSelector(selector); err != nil {
		return nil, err
	}
	if algorithm == "" {
		algorithm = mailcluster.DKIMRSASHA256
	}
	if algorithm != mailcluster.DKIMRSASHA256 && algorithm != mailcluster.DKIMEd25519SHA256 {
		return nil, mailcluster.Errorf(mailcluster.EINVALID, "Algorithm must be %s or %s.", mailcluster.DKIMRSASHA256, mailcluster.DKIMEd25519SHA256)
	}
	didx, err := s.dkimWritable(domain)
	if err != nil {
		return nil, err
	}
	var key crypto.Signer
	if algorithm == mailcluster.DKIMEd25519SHA256 {
		_, key, err = ed25519.GenerateKey(rand.Reader)
	} else {
		key, err = rsa.GenerateKey(rand.Reader, mailcluster.DKIMRSABits)
	}
	if err != nil {
		return nil, &mailcluster.Error{Code: mailcluster.EINTERNAL, Message: "The key could not be generated.", Err: err}
	}
	return s.storeDKIMKey(ctx, domain, didx, selector, key, "dkim key created")
}

// ImportDKIMKey stores keyPEM as domain's DKIM key under selector,
// replacing the domain's key: an RSA key (PKCS#1 or PKCS#8, 1024 to 4096
// bits) or an Ed25519 key (PKCS#8), unencrypted. Errors as CreateDKIMKey,
// and ETOOLARGE (more than 16 KiB of PEM).
func (s *Service) ImportDKIMKey(ctx context.Context, domain, selector, keyPEM string) (*mailcluster.DKIMKey, error) {
	domain, err := s.dkimDomain(ctx, domain)
	if err != nil {
		return nil, err
	}
	if selector, err = dkimSelector(selector); err != nil {
		return nil, err
	}
	if len(keyPEM) > maxDKIMKeyPEM {
		return nil, mailcluster.Errorf(mailcluster.ETOOLARGE, "The private key is larger than %d bytes.", maxDKIMKeyPEM)
	}
	key, _, err := mailcluster.ParseDKIMPrivateKey(keyPEM)
	if err != nil {
		return nil, err
	}
	didx, err := s.dkimWritable(domain)
	if err != nil {
		return nil, err
	}
	return s.storeDKIMKey(ctx, domain, didx, selector, key, "dkim key imported")
}

// dkimWritable checks that this node takes writes, that domain is in
// service and that this node can seal keys; it returns the index of the
// domain's record.
func (s *Service) dkimWritable(domain string) (uint64, error) {
	didx, err := s.writableDomain(domain)
	if err != nil {
		return 0, err
	}
	if len(s.opts.SealKey) != 32 {
		return 0, mailcluster.Errorf(mailcluster.EUNAVAILABLE, "This node has no key to seal private keys with.")
	}
	return didx, nil
}

// storeDKIMKey seals key and writes it as domain's DKIM key in one
// transaction that checks the domain's record at didx and the key's
// record as read.
func (s *Service) storeDKIMKey(ctx context.Context, domain string, didx uint64, selector string, key crypto.Signer, event string) (*mailcluster.DKIMKey, error) {
	k, err := mailcluster.NewDKIMKey(s.opts.SealKey, domain, selector, key, s.now())
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(k)
	if err != nil {
		return nil, &mailcluster.Error{Code: mailcluster.EINTERNAL, Message: "The key could not be encoded.", Err: err}
	}
	var index uint64
	old, replaced := s.store.Get(schema.DKIMKey(domain))
	if replaced {
		index = old.ModifyIndex
	}
	var o opSet
	o.check(schema.Domain(domain), didx)
	o.add(mailcluster.Op{Verb: mailcluster.OpCAS, Key: schema.DKIMKey(domain), Value: b, Index: index})
	if err := s.txn(ctx, o.ops); err != nil {
		return nil, conflictAs(err, "The DKIM key of %s or the domain was changed concurrently; try again.", domain)
	}
	s.log.Info(event, "domain", domain, "selector", selector, "algorithm", k.Algorithm, "replaced", replaced)
	return k.Public(), nil
}

// DKIMKey returns domain's DKIM key without its private part (see
// mailcluster.DKIMKey.TXTRecord for the record to publish).
// Errors: EINVALID, ENOTFOUND (domain, or no key), EFORBIDDEN.
func (s *Service) DKIMKey(ctx context.Context, domain string) (*mailcluster.DKIMKey, error) {
	domain, err := s.dkimDomain(ctx, domain)
	if err != nil {
		return nil, err
	}
	if err := s.checkServing(); err != nil {
		return nil, err
	}
	if err := s.checkDomain(domain); err != nil {
		return nil, err
	}
	k, _, err := s.getDKIMKey(domain)
	if err != nil {
		return nil, err
	}
	return k.Public(), nil
}

// getDKIMKey reads domain's DKIM key record. Errors: ENOTFOUND, EINTERNAL.
func (s *Service) getDKIMKey(domain string) (*mailcluster.DKIMKey, mailcluster.KV, error) {
	kv, ok := s.store.Get(schema.DKIMKey(domain))
	if !ok {
		return nil, kv, mailcluster.Errorf(mailcluster.ENOTFOUND, "Domain %s has no DKIM key.", domain)
	}
	k, err := decodeRecord[mailcluster.DKIMKey](kv, "DKIM key")
	return k, kv, err
}

// DeleteDKIMKey removes domain's DKIM key: its mail goes out unsigned.
// Errors: EINVALID, ENOTFOUND (domain, or no key), ECONFLICT, EFORBIDDEN,
// EREADONLY, EUNAVAILABLE.
func (s *Service) DeleteDKIMKey(ctx context.Context, domain string) error {
	domain, _, err := s.dkimWrite(ctx, domain)
	if err != nil {
		return err
	}
	k, kv, err := s.getDKIMKey(domain)
	if err != nil {
		return err
	}
	if err := s.txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpDeleteCAS, Key: kv.Key, Index: kv.ModifyIndex}}); err != nil {
		return conflictAs(err, "The DKIM key of %s was changed concurrently; try again.", domain)
	}
	s.log.Info("dkim key deleted", "domain", domain, "selector", k.Selector)
	return nil
}

// dkimCache holds the unsealed DKIM keys by domain, each valid for the
// modify index of the record it was read from, so that signing does not
// unseal per message and a changed record is read again.
type dkimCache struct {
	mu   sync.Mutex
	keys map[string]dkimEntry
}

// dkimEntry is one domain's unsealed key; signer is nil when the record
// at index cannot be used (logged once per index).
type dkimEntry struct {
	index    uint64
	selector string
	signer   crypto.Signer
}

// DKIMSigner returns the options to sign a message from domain (the
// domain of the sender's address) with its DKIM key (see
// dkimsign.Options: relaxed/relaxed, SHA-256, the usual header fields),
// or false when the domain has no usable key. Each call returns a new
// value. The unsealed key is cached until the record changes.
func (l *Local) DKIMSigner(domain string) (*dkim.SignOptions, bool) {
	return l.s.dkimSigner(mailcluster.NormalizeDomain(domain))
}

func (s *Service) dkimSigner(domain string) (*dkim.SignOptions, bool) {
	kv, ok := s.store.Get(schema.DKIMKey(domain))
	c := &s.dkimKeys
	c.mu.Lock()
	defer c.mu.Unlock()
	if !ok {
		delete(c.keys, domain)
		return nil, false
	}
	e, cached := c.keys[domain]
	if !cached || e.index != kv.ModifyIndex {
		e = dkimEntry{index: kv.ModifyIndex}
		k, err := decodeRecord[mailcluster.DKIMKey](kv, "DKIM key")
		if err == nil && k.Domain != domain {
			err = mailcluster.ErrUnseal
		}
		if err == nil {
			e.selector = k.Selector
			e.signer, err = mailcluster.UnsealDKIMKey(s.opts.SealKey, k)
		}
		if err != nil {
			s.log.Error("dkim key unusable: mail of the domain goes out unsigned", "domain", domain, "err", err)
		}
		if c.keys == nil {
			c.keys = map[string]dkimEntry{}
		}
		c.keys[domain] = e
	}
	if e.signer == nil {
		return nil, false
	}
	return dkimsign.Options(domain, e.selector, e.signer), true
}
