package imapsvc

import (
	"context"
	"log/slog"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"mailcluster"
	"mailcluster/mailstore"
	"mailcluster/service"
)

// session is one IMAP connection.
type session struct {
	srv  *Server
	conn *imapserver.Conn
	log  *slog.Logger

	acct    *mailcluster.Account // nil until logged in
	folders *mailstore.Folders
	sel     *selection // nil when no folder is selected
}

var (
	_ imapserver.SessionIMAP4rev2   = (*session)(nil)
	_ imapserver.SessionAppendLimit = (*session)(nil)
	_ imapserver.SessionNamespace   = (*session)(nil)
	_ imapserver.SessionMove        = (*session)(nil)
)

// commandTimeout bounds the storage work of one command (lock waits
// included).
const commandTimeout = time.Minute

func (s *session) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), commandTimeout)
}

func (s *session) fail(err error) error { return imapError(s.log, err) }

// Close ends the session.
func (s *session) Close() error {
	s.unselect()
	s.srv.sessionEnded()
	return nil
}

// Login checks the credentials through the screening of the domain
// service (LOGIN, and AUTHENTICATE PLAIN through imapserver), then makes
// the account's default folders. imapserver refuses it before TLS unless
// the connection came through the plaintext loopback server.
func (s *session) Login(username, password string) error {
	ctx, cancel := s.ctx()
	defer cancel()
	ctx = mailcluster.NewContextWithClientIP(service.Anonymous(ctx), remoteIP(s.conn.NetConn()))
	a, err := s.srv.dir.AuthenticateMailUser(ctx, "imap", username, password)
	if err != nil {
		switch mailcluster.ErrorCode(err) {
		case mailcluster.EUNAUTHORIZED:
			return imapserver.ErrAuthFailed
		case mailcluster.EFORBIDDEN:
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable,
				Text: "Too many failed logins from your address; try again later"}
		}
		return s.fail(err)
	}
	fs, err := s.srv.store.Folders(a)
	if err != nil {
		return s.fail(err)
	}
	if err := fs.EnsureDefaults(ctx); err != nil {
		s.log.Warn("imap: default folders not created", "account", a.Address(), "err", err)
	}
	s.acct, s.folders = a, fs
	return nil
}

// AppendLimit is [SMTP] MaxMessageSize, the limit of every way in.
func (s *session) AppendLimit() uint32 {
	return uint32(min(mailstore.MaxMessageSize(s.srv.dir.Setting), math.MaxUint32))
}

// Namespace: one personal namespace, no prefix.
func (s *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: mailstore.Delimiter}}}, nil
}

// folderName removes a trailing delimiter (RFC 3501 6.3.3).
func folderName(name string) string {
	return strings.TrimSuffix(name, string(mailstore.Delimiter))
}

func (s *session) Create(name string, _ *imap.CreateOptions) error {
	ctx, cancel := s.ctx()
	defer cancel()
	return s.fail(s.folders.Create(ctx, folderName(name)))
}

func (s *session) Delete(name string) error {
	ctx, cancel := s.ctx()
	defer cancel()
	return s.fail(s.folders.Delete(ctx, name))
}

func (s *session) Rename(oldName, newName string, _ *imap.RenameOptions) error {
	ctx, cancel := s.ctx()
	defer cancel()
	return s.fail(s.folders.Rename(ctx, oldName, folderName(newName)))
}

func (s *session) Subscribe(name string) error {
	ctx, cancel := s.ctx()
	defer cancel()
	return s.fail(s.folders.Subscribe(ctx, folderName(name), true))
}

func (s *session) Unsubscribe(name string) error {
	ctx, cancel := s.ctx()
	defer cancel()
	return s.fail(s.folders.Subscribe(ctx, folderName(name), false))
}

// List answers LIST and LSUB (RFC 9051 6.3.9, LIST-EXTENDED RFC 5258,
// SPECIAL-USE RFC 6154, LIST-STATUS RFC 5819). Special-use attributes are
// always shown; a level without a folder of its own is \Noselect.
func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) == 0 || len(patterns) == 1 && patterns[0] == "" {
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: mailstore.Delimiter})
	}
	infos, err := s.folders.List()
	if err != nil {
		return s.fail(err)
	}
	subs, err := s.folders.Subscriptions()
	if err != nil {
		return s.fail(err)
	}
	type entry struct {
		info     mailstore.FolderInfo
		exists   bool
		children bool
	}
	all := map[string]*entry{}
	for _, fi := range infos {
		all[fi.Name] = &entry{info: fi, exists: true}
	}
	for _, fi := range infos {
		// Levels above a folder that have no folder of their own.
		for n := fi.Name; strings.ContainsRune(n, mailstore.Delimiter); {
			n = n[:strings.LastIndexByte(n, mailstore.Delimiter)]
			if e, ok := all[n]; ok {
				e.children = true
			} else {
				all[n] = &entry{info: mailstore.FolderInfo{Name: n}, children: true}
			}
		}
	}
	for _, n := range subs {
		if e, ok := all[n]; ok {
			e.info.Subscribed = true
		} else if options.SelectSubscribed {
			all[n] = &entry{info: mailstore.FolderInfo{Name: n, Subscribed: true}}
		}
	}
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if names[i] == mailstore.Inbox || names[j] == mailstore.Inbox {
			return names[i] == mailstore.Inbox && names[j] != mailstore.Inbox
		}
		return names[i] < names[j]
	})
	for _, n := range names {
		e := all[n]
		if !matchAny(n, ref, patterns) {
			continue
		}
		if options.SelectSubscribed && !e.info.Subscribed || options.SelectSpecialUse && e.info.SpecialUse == "" {
			continue
		}
		data := &imap.ListData{Mailbox: n, Delim: mailstore.Delimiter}
		switch {
		case !e.exists && e.info.Subscribed && !e.children:
			data.Attrs = append(data.Attrs, imap.MailboxAttrNonExistent)
		case !e.exists:
			data.Attrs = append(data.Attrs, imap.MailboxAttrNoSelect)
		}
		if e.children {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasChildren)
		} else {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasNoChildren)
		}
		if e.info.Subscribed && (options.SelectSubscribed || options.ReturnSubscribed) {
			data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
		}
		if e.info.SpecialUse != "" {
			data.Attrs = append(data.Attrs, imap.MailboxAttr(e.info.SpecialUse))
		}
		if options.ReturnStatus != nil && e.exists {
			if st, err := s.Status(n, options.ReturnStatus); err == nil {
				data.Status = st
			}
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}

// matchAny matches a folder name against LIST patterns; INBOX matches in
// any case.
func matchAny(name, ref string, patterns []string) bool {
	for _, p := range patterns {
		if imapserver.MatchList(name, mailstore.Delimiter, ref, p) {
			return true
		}
		if name == mailstore.Inbox && imapserver.MatchList(name, mailstore.Delimiter, strings.ToUpper(ref), strings.ToUpper(p)) {
			return true
		}
	}
	return false
}

// Status answers STATUS (and LIST RETURN STATUS) from a fresh read.
func (s *session) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	f, err := s.folders.Folder(name)
	if err != nil {
		return nil, s.fail(err)
	}
	snap, err := f.Sync(ctx)
	if err != nil {
		return nil, s.fail(err)
	}
	data := &imap.StatusData{Mailbox: f.Name(), UIDNext: imapUID(snap.UIDNext), UIDValidity: snap.UIDValidity}
	var unseen, deleted uint32
	var size int64
	for _, m := range snap.Messages {
		if !strings.Contains(m.Flags, "S") {
			unseen++
		}
		if strings.Contains(m.Flags, "T") {
			deleted++
		}
		size += m.Size
	}
	n, zero := uint32(len(snap.Messages)), uint32(0)
	if options.NumMessages {
		data.NumMessages = &n
	}
	if options.NumUnseen {
		data.NumUnseen = &unseen
	}
	if options.NumDeleted {
		data.NumDeleted = &deleted
	}
	if options.Size {
		data.Size = &size
	}
	if options.NumRecent {
		data.NumRecent = &zero
	}
	if options.AppendLimit {
		l := s.AppendLimit()
		data.AppendLimit = &l
	}
	if options.DeletedStorage {
		var d int64
		data.DeletedStorage = &d
	}
	return data, nil
}

// Append stores a message (RFC 9051 6.3.12, APPENDUID RFC 4315) through
// the store: the size limit, the quota and the usage are those of a
// delivery, and the message is on disk (synced) before the OK.
func (s *session) Append(name string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	f, err := s.folders.Folder(name)
	if err != nil {
		if mailcluster.ErrorCode(err) == mailcluster.ENOTFOUND {
			return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such folder"}
		}
		return nil, s.fail(err)
	}
	if a, err := s.srv.dir.LookupAccount(s.acct.Address()); err == nil && s.srv.store.OverQuota(a, r.Size(), 1) {
		return nil, s.fail(&mailstore.QuotaError{Address: a.Address()})
	}
	validity, uid, err := f.Append(ctx, r, maildirLetters(options.Flags), options.Time, mailstore.MaxMessageSize(s.srv.dir.Setting))
	if err != nil {
		return nil, s.fail(err)
	}
	s.syncSelected(ctx, f)
	return &imap.AppendData{UIDValidity: validity, UID: imapUID(uid)}, nil
}

// syncSelected brings the selected folder's view up to date at once when
// f is that folder, so that the answer to the command shows the change.
func (s *session) syncSelected(ctx context.Context, f *mailstore.Folder) {
	if s.sel != nil && s.sel.box.folder.Dir() == f.Dir() {
		if err := s.sel.box.sync(ctx); err != nil {
			s.log.Debug("imap: sync after a change", "folder", f.Dir(), "err", err)
		}
	}
}

// Poll writes the selected folder's pending changes, reading the folder
// again first when the view is older than the rescan interval.
func (s *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if s.sel == nil {
		return nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.sel.box.syncIfOld(ctx); err != nil {
		s.log.Debug("imap: folder sync", "folder", s.sel.box.folder.Dir(), "err", err)
	}
	return s.sel.tracker.Poll(w, allowExpunge)
}

// Idle writes changes as they come (RFC 2177): on Hub notices, and from
// a read of the folder every rescan interval.
func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	if s.sel == nil {
		<-stop
		return nil
	}
	box := s.sel.box
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(s.srv.cfg.Rescan / 2)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				ctx, cancel := s.ctx()
				if err := box.syncIfOld(ctx); err != nil {
					s.log.Debug("imap: folder sync while idle", "folder", box.folder.Dir(), "err", err)
				}
				cancel()
			}
		}
	}()
	if err := s.sel.tracker.Poll(w, true); err != nil {
		return err
	}
	return s.sel.tracker.Idle(w, stop)
}

func imapUID(u uint32) imap.UID { return imap.UID(u) }
