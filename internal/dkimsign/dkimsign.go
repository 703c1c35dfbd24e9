// Package dkimsign signs outgoing messages with DKIM (RFC 6376; Ed25519
// keys, RFC 8463) through github.com/emersion/go-msgauth: the options the
// cluster signs with and the DKIM-Signature field of one message.
package dkimsign

import (
	"crypto"
	"fmt"
	"io"

	"github.com/emersion/go-msgauth/dkim"
)

// HeaderKeys are the header fields a signature covers (those RFC 6376
// section 5.4.1 recommends that a relay does not usually change).
var HeaderKeys = []string{"From", "To", "Cc", "Subject", "Date", "Message-ID", "Reply-To",
	"MIME-Version", "Content-Type", "List-Id"}

// Options returns the options that sign for domain with selector and key:
// HeaderKeys, relaxed/relaxed canonicalization, SHA-256. Each call
// returns a new value that the caller may change.
func Options(domain, selector string, key crypto.Signer) *dkim.SignOptions {
	return &dkim.SignOptions{
		Domain:                 domain,
		Selector:               selector,
		Signer:                 key,
		Hash:                   crypto.SHA256,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             append([]string(nil), HeaderKeys...),
	}
}

// SignMessage reads a whole message (header and body, CRLF line ends, as
// it will be sent) and returns the "DKIM-Signature: ..." header field,
// folded and CRLF-terminated, to write before the message.
func SignMessage(opts *dkim.SignOptions, msg io.Reader) ([]byte, error) {
	s, err := dkim.NewSigner(opts)
	if err != nil {
		return nil, fmt.Errorf("dkimsign: %w", err)
	}
	if _, err := io.Copy(s, msg); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("dkimsign: read message: %w", err)
	}
	if err := s.Close(); err != nil {
		return nil, fmt.Errorf("dkimsign: sign: %w", err)
	}
	return []byte(s.Signature()), nil
}
