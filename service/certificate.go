package service

import (
	"context"
	"encoding/json"

	"mailcluster/schema"

	"mailcluster"
)

// ImportCertificate validates and stores a certificate under name (a new
// one or a replacement); with makeDefault it becomes the default for
// clients that send no matching server name. Errors: EINVALID,
// EFORBIDDEN, EREADONLY, EUNAVAILABLE.
func (s *Service) ImportCertificate(ctx context.Context, name, chainPEM, keyPEM string, makeDefault bool) (*mailcluster.Certificate, error) {
	if err := requireGlobalAdmin(ctx); err != nil {
		return nil, err
	}
	if !mailcluster.ValidCertificateName(name) {
		return nil, mailcluster.Errorf(mailcluster.EINVALID, "Certificate name %q must be 1-64 lower-case letters, digits, '.', '_' or '-'.", name)
	}
	if len(chainPEM) > 64<<10 || len(keyPEM) > 16<<10 {
		return nil, mailcluster.Errorf(mailcluster.ETOOLARGE, "The chain or key is too large.")
	}
	c, err := mailcluster.ParseCertificate(chainPEM, keyPEM, s.now())
	if err != nil {
		return nil, err
	}
	if err := s.checkWritable(); err != nil {
		return nil, err
	}
	if len(s.opts.SealKey) != 32 {
		return nil, mailcluster.Errorf(mailcluster.EUNAVAILABLE, "This node has no key to seal private keys with.")
	}
	c.Name, c.CreatedAt = name, s.now()
	if c.SealedKey, err = mailcluster.SealCertificateKey(s.opts.SealKey, []byte(keyPEM), name, c.Fingerprint); err != nil {
		return nil, &mailcluster.Error{Code: mailcluster.EINTERNAL, Message: "The key could not be sealed.", Err: err}
	}
	existing := s.store.List(schema.PrefixCertificates, "", 0)
	c.Default = makeDefault || len(existing) == 0 || (len(existing) == 1 && existing[0].Key == schema.Certificate(name))
	var ops []mailcluster.Op
	for _, kv := range existing {
		if kv.Key == schema.Certificate(name) {
			var old mailcluster.Certificate
			if json.Unmarshal(kv.Value, &old) == nil && old.Default {
				c.Default = true // a replacement keeps the default role
			}
			continue
		}
		if !makeDefault {
			continue
		}
		var other mailcluster.Certificate
		if json.Unmarshal(kv.Value, &other) == nil && other.Default {
			other.Default = false
			b, _ := json.Marshal(other)
			ops = append(ops, mailcluster.Op{Verb: mailcluster.OpCAS, Key: kv.Key, Value: b, Index: kv.ModifyIndex})
		}
	}
	b, _ := json.Marshal(c)
	ops = append(ops, mailcluster.Op{Verb: mailcluster.OpSet, Key: schema.Certificate(name), Value: b})
	if err := s.txn(ctx, ops); err != nil {
		return nil, conflictAs(err, "The certificates changed concurrently; try again.")
	}
	s.log.Info("certificate imported", "name", name, "fingerprint", c.Fingerprint, "not_after", c.NotAfter)
	return c.Public(), nil
}

// Certificates lists the stored certificates without keys. Errors: EFORBIDDEN.
func (s *Service) Certificates(ctx context.Context) ([]*mailcluster.Certificate, error) {
	if err := requireGlobalAdmin(ctx); err != nil {
		return nil, err
	}
	return s.storedCertificates(false), nil
}

// storedCertificates returns the certificates of the replicated state,
// with their sealed keys when withKeys (for the node's TLS machinery).
func (s *Service) storedCertificates(withKeys bool) []*mailcluster.Certificate {
	var out []*mailcluster.Certificate
	for _, kv := range s.store.List(schema.PrefixCertificates, "", 0) {
		var c mailcluster.Certificate
		if json.Unmarshal(kv.Value, &c) != nil {
			continue
		}
		if !withKeys {
			c.SealedKey = ""
		}
		out = append(out, &c)
	}
	return out
}

// Certificate returns one certificate without its key.
// Errors: EINVALID, ENOTFOUND, EFORBIDDEN.
func (s *Service) Certificate(ctx context.Context, name string) (*mailcluster.Certificate, error) {
	if err := requireGlobalAdmin(ctx); err != nil {
		return nil, err
	}
	if !mailcluster.ValidCertificateName(name) {
		return nil, mailcluster.Errorf(mailcluster.EINVALID, "Certificate name %q is not valid.", name)
	}
	kv, ok := s.store.Get(schema.Certificate(name))
	if !ok {
		return nil, mailcluster.Errorf(mailcluster.ENOTFOUND, "Certificate %s does not exist.", name)
	}
	var c mailcluster.Certificate
	if err := json.Unmarshal(kv.Value, &c); err != nil {
		return nil, &mailcluster.Error{Code: mailcluster.EINTERNAL, Message: "A stored certificate is damaged.", Err: err}
	}
	return c.Public(), nil
}

// DeleteCertificate removes a certificate. Errors: EINVALID, ENOTFOUND,
// EFORBIDDEN, EREADONLY.
func (s *Service) DeleteCertificate(ctx context.Context, name string) error {
	if err := requireGlobalAdmin(ctx); err != nil {
		return err
	}
	if !mailcluster.ValidCertificateName(name) {
		return mailcluster.Errorf(mailcluster.EINVALID, "Certificate name %q is not valid.", name)
	}
	if err := s.checkWritable(); err != nil {
		return err
	}
	kv, ok := s.store.Get(schema.Certificate(name))
	if !ok {
		return mailcluster.Errorf(mailcluster.ENOTFOUND, "Certificate %s does not exist.", name)
	}
	if err := s.txn(ctx, []mailcluster.Op{{Verb: mailcluster.OpDeleteCAS, Key: kv.Key, Index: kv.ModifyIndex}}); err != nil {
		return conflictAs(err, "Certificate %s was changed concurrently; try again.", name)
	}
	return nil
}
