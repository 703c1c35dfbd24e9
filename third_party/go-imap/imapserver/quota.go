package imapserver

import (
	"sort"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal/imapwire"
)

// QuotaResourceData contains the usage and limit of a quota resource.
type QuotaResourceData struct {
	Usage int64
	Limit int64
}

// QuotaData is the data of a QUOTA response.
type QuotaData struct {
	Root      string
	Resources map[imap.QuotaResourceType]QuotaResourceData
}

// SessionQuota is an IMAP session which supports QUOTA (RFC 9208).
//
// The server advertises QUOTA when its capabilities contain imap.CapQuota,
// and each resource type it supports as a "QUOTA=RES-<type>" capability.
// SETQUOTA is refused: quota limits cannot be set through this interface.
type SessionQuota interface {
	Session

	// Authenticated state
	GetQuota(root string) (*QuotaData, error)
	// GetQuotaRoot returns the quota roots of a mailbox and the quota data
	// of each.
	GetQuotaRoot(mailbox string) ([]string, []*QuotaData, error)
}

func (c *Conn) handleGetQuota(dec *imapwire.Decoder) error {
	var root string
	if !dec.ExpectSP() || !dec.ExpectAString(&root) || !dec.ExpectCRLF() {
		return dec.Err()
	}
	session, err := c.quotaSession()
	if err != nil {
		return err
	}
	data, err := session.GetQuota(root)
	if err != nil {
		return err
	}
	return c.writeQuota(data)
}

func (c *Conn) handleGetQuotaRoot(dec *imapwire.Decoder) error {
	var mailbox string
	if !dec.ExpectSP() || !dec.ExpectMailbox(&mailbox) || !dec.ExpectCRLF() {
		return dec.Err()
	}
	session, err := c.quotaSession()
	if err != nil {
		return err
	}
	roots, quotas, err := session.GetQuotaRoot(mailbox)
	if err != nil {
		return err
	}

	enc := newResponseEncoder(c)
	enc.Atom("*").SP().Atom("QUOTAROOT").SP().Mailbox(mailbox)
	for _, root := range roots {
		enc.SP().String(root)
	}
	err = enc.CRLF()
	enc.end()
	if err != nil {
		return err
	}
	for _, data := range quotas {
		if err := c.writeQuota(data); err != nil {
			return err
		}
	}
	return nil
}

func (c *Conn) handleSetQuota(dec *imapwire.Decoder) error {
	var root string
	if !dec.ExpectSP() || !dec.ExpectAString(&root) || !dec.ExpectSP() {
		return dec.Err()
	}
	err := dec.ExpectList(func() error {
		var (
			name  string
			limit int64
		)
		if !dec.ExpectAtom(&name) || !dec.ExpectSP() || !dec.ExpectNumber64(&limit) {
			return dec.Err()
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !dec.ExpectCRLF() {
		return dec.Err()
	}
	if _, err := c.quotaSession(); err != nil {
		return err
	}
	return &imap.Error{
		Type: imap.StatusResponseTypeNo,
		Code: imap.ResponseCodeNoPerm,
		Text: "Quota limits cannot be set through IMAP",
	}
}

func (c *Conn) quotaSession() (SessionQuota, error) {
	if err := c.checkState(imap.ConnStateAuthenticated); err != nil {
		return nil, err
	}
	session, ok := c.session.(SessionQuota)
	if !ok || !c.server.options.caps().Has(imap.CapQuota) {
		return nil, newClientBugError("QUOTA is not supported")
	}
	return session, nil
}

func (c *Conn) writeQuota(data *QuotaData) error {
	types := make([]string, 0, len(data.Resources))
	for typ := range data.Resources {
		types = append(types, string(typ))
	}
	sort.Strings(types)

	enc := newResponseEncoder(c)
	defer enc.end()
	enc.Atom("*").SP().Atom("QUOTA").SP().String(data.Root).SP()
	enc.List(len(types), func(i int) {
		res := data.Resources[imap.QuotaResourceType(types[i])]
		enc.Atom(types[i]).SP().Number64(res.Usage).SP().Number64(res.Limit)
	})
	return enc.CRLF()
}

// quotaCaps returns the QUOTA capabilities of a server: QUOTA and the
// "QUOTA=RES-<type>" capabilities of its resource types.
func quotaCaps(available imap.CapSet) []imap.Cap {
	if !available.Has(imap.CapQuota) {
		return nil
	}
	caps := []imap.Cap{imap.CapQuota}
	var types []string
	for _, typ := range available.QuotaResourceTypes() {
		types = append(types, string(typ))
	}
	sort.Strings(types)
	for _, typ := range types {
		caps = append(caps, imap.Cap("QUOTA=RES-"+typ))
	}
	return caps
}
