package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	consulapi "github.com/hashicorp/consul/api"
	bolterrors "go.etcd.io/bbolt/errors"

	"mailcluster"
	"mailcluster/api"
	"mailcluster/cluster"
	"mailcluster/internal/nodeauth"
	"mailcluster/kvstore"
	"mailcluster/mailsvc"
	"mailcluster/schema"
	"mailcluster/service"
	"mailcluster/xmlapi"
)

// Main is one running node. Run starts it and returns once every listener
// is up; Close stops it. Tests start whole nodes in-process with it.
type Main struct {
	Config *Config
	Log    *slog.Logger
	// Stdout receives the one-time notice of a generated admin password.
	Stdout io.Writer

	Service        *service.Service
	HTTPAddr       string // the address the HTTP listener got (useful with port 0)
	SMTPAddr       string // the inbound SMTP listener's address ("" when off)
	SubmissionAddr string // the submission listener's address ("" when off)
	Mail           *mailsvc.Store

	store        closer
	events       *cluster.FileClusterLog
	certs        *cluster.CertManager
	servedCerts  atomic.Pointer[cluster.CertManager] // m.certs, once made (read by internal calls)
	metrics      *metrics
	https        *http.Server
	tln          net.Listener // the HTTPS listener until m.https serves it
	HTTPSAddr    string
	internalURL  string // the https URL of the internal API, "" without HTTPS
	lead         mailcluster.Leadership
	keyID        string
	advertise    string
	linkOnce     sync.Once
	versionOnce  sync.Once
	linking      bool
	shared       *cluster.SharedPath
	internal     *cluster.InternalClient
	outbox       *cluster.Outbox
	smtp         *mailsvc.Server
	ln           net.Listener
	http         *http.Server
	cancel       context.CancelFunc
	stopElection context.CancelFunc
	electionDone chan struct{}
	wg           sync.WaitGroup
	closeMu      sync.Once
}

// closer is a Store that must be closed.
type closer interface {
	mailcluster.Store
	Close() error
}

// Run opens the state, initialises it on the first start (standalone) or
// joins the cluster (with a Consul address), and starts the HTTP listener
// and the background jobs. It returns once the listener is up.
func (m *Main) Run(ctx context.Context) (err error) {
	c := m.Config
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	for _, dir := range []string{c.DataDir, filepath.Join(c.DataDir, "app"), filepath.Join(c.DataDir, "logs")} {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("data dir %s: %w", c.DataDir, err)
		}
	}
	keyID, err := loadNodeKey(c)
	if err != nil {
		return err
	}
	m.keyID = keyID
	ln, err := net.Listen("tcp", c.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.HTTPAddr, err)
	}
	m.ln = ln
	m.HTTPAddr = ln.Addr().String()
	advertise := c.AdvertiseAddr
	if advertise == "" {
		if ip := ln.Addr().(*net.TCPAddr).IP; ip.IsUnspecified() && c.Clustered() {
			return usagef("advertise-addr: required when http-addr listens on all interfaces (%s)", c.HTTPAddr)
		}
		advertise = m.HTTPAddr
	}
	self := mailcluster.PrimaryRef{Name: c.NodeName, APIURL: "http://" + advertise}
	m.advertise = advertise
	if c.HTTPSAddr != "" {
		tln, err := net.Listen("tcp", c.HTTPSAddr)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", c.HTTPSAddr, err)
		}
		m.tln = tln
		m.HTTPSAddr = tln.Addr().String()
		m.internalURL = internalURL(advertise, tln.Addr().(*net.TCPAddr))
	}
	m.events = cluster.NewFileClusterLog(filepath.Join(c.DataDir, "logs", "cluster.log"), c.NodeName, m.Log)
	m.metrics = newMetrics()
	bg, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	boot := mailcluster.BootstrapConfig{AdminAddress: c.AdminAddress, AdminPassword: c.AdminPassword, DataDir: c.DataDir, SharedPath: c.SharedPath}
	m.internal = &cluster.InternalClient{Signer: &nodeauth.Signer{Key: nodeauth.Key(c.ClusterSecret), Node: c.NodeName}}

	if c.Clustered() {
		err = m.startCluster(bg, self, advertise, keyID, boot)
	} else {
		err = m.startStandalone(ctx, self, boot)
	}
	if err != nil {
		return err
	}

	if err := m.startMail(bg); err != nil {
		return err
	}
	xmlHandler := xmlapi.NewHandler(m.Service, m.Log)
	xmlHandler.OnOperation = m.metrics.xmlapiOperation
	handler := api.NewServer(m.Service, api.Config{Log: m.Log, XMLAPI: xmlHandler,
		Mail: m.Mail, InternalKey: nodeauth.Key(c.ClusterSecret), TrustedProxies: c.proxies(),
		Metrics: m.metrics.handler(), Registerer: m.metrics.reg, InternalInfo: m.nodeInfo, InternalTime: m.timeProbe})
	m.http = newHTTPServer(handler, m.Log)
	mat := cluster.NewMaterializer(m.store, filepath.Join(c.DataDir, "app"), m.Log)
	mat.OnOverwrite = func(file string) {
		m.events.Record(mailcluster.ClusterEvent{Level: "warn", Event: "settings-overwritten",
			Message: "a settings file edited on this node's disk was overwritten from the replicated state",
			Fields:  map[string]string{"file": file + ".ini"}})
	}
	if err := mat.Sync(nil); err != nil {
		return err
	}
	m.goBackground(func() { mat.Run(bg) })
	m.goBackground(func() {
		if err := m.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.Log.Error("http server stopped", "err", err)
		}
	})
	if m.tln != nil {
		tln := m.tln
		m.https = &http.Server{Handler: handler, TLSConfig: m.certs.TLSConfig(), ReadHeaderTimeout: m.http.ReadHeaderTimeout,
			ReadTimeout: m.http.ReadTimeout, WriteTimeout: m.http.WriteTimeout, IdleTimeout: m.http.IdleTimeout,
			MaxHeaderBytes: m.http.MaxHeaderBytes, ErrorLog: m.http.ErrorLog}
		m.goBackground(func() {
			if err := m.https.Serve(tls.NewListener(tln, m.https.TLSConfig)); err != nil && !errors.Is(err, http.ErrServerClosed) {
				m.Log.Error("https server stopped", "err", err)
			}
		})
	}
	base := "http://" + m.HTTPAddr
	mode := mailcluster.ModeStandalone
	if c.Clustered() {
		mode = mailcluster.ModeCluster
	}
	m.Log.Info("listening", "node", c.NodeName, "mode", mode,
		"rest", base+"/api/v1/", "xmlapi", base+"/MdMgmtWS", "openapi", base+"/openapi.yaml", "health", base+"/health",
		"https", m.HTTPSAddr, "smtp", m.SMTPAddr, "submission", m.SubmissionAddr,
		"advertise", "http://"+advertise, "data_dir", c.DataDir, "node_key_id", keyID, "version", mailcluster.Version)
	return nil
}

// newHTTPServer returns the http.Server of the APIs with the timeouts that
// cut off slow clients: the request header within 10 s, the whole request
// within 30 s (a body limit of 1 MiB needs no more), headers of at most
// 64 KiB.
func newHTTPServer(handler http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

func (m *Main) goBackground(f func()) {
	m.wg.Add(1)
	go func() { defer m.wg.Done(); f() }()
}

// startStandalone opens the embedded store; the node is always primary.
func (m *Main) startStandalone(ctx context.Context, self mailcluster.PrimaryRef, boot mailcluster.BootstrapConfig) error {
	st, err := kvstore.OpenBoltStore(filepath.Join(m.Config.DataDir, "state.db"), m.Log)
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return fmt.Errorf("data dir %s is in use by another mailcluster process", m.Config.DataDir)
		}
		return err
	}
	m.store = st
	m.lead = mailcluster.StaticLeadership{Self: self}
	m.metrics.registerNode(standaloneState(m.lead, st, time.Now()))
	m.Service = m.newService(st, m.lead, mailcluster.ModeStandalone)
	generated, err := m.Service.Bootstrap(ctx, boot)
	if err != nil {
		return fmt.Errorf("initialise state: %w", err)
	}
	m.announcePassword(generated)
	return nil
}

func (m *Main) newService(st mailcluster.Store, lead mailcluster.Leadership, mode mailcluster.Mode) *service.Service {
	svc := service.NewService(st, lead, m.Log)
	svc.NodeName = m.Config.NodeName
	svc.NodeKeyID = m.keyID
	svc.Mode = mode
	svc.Events = screeningLog{ClusterLog: m.events, m: m.metrics}
	return svc
}

func (m *Main) announcePassword(generated string) {
	if generated != "" && m.Stdout != nil {
		fmt.Fprintf(m.Stdout, "\nGenerated password for %s: %s\n(shown only this once; only its hash is stored. Set MAILCLUSTER_ADMIN_PASSWORD before the first start to choose it.)\n\n",
			m.Config.AdminAddress, generated)
	}
}

// startCluster joins the Consul cluster: the snapshot store, the election
// and the service registration run in the background; the node serves its
// persisted snapshot read-only until it hears from Consul.
func (m *Main) startCluster(bg context.Context, self mailcluster.PrimaryRef, advertise, keyID string, boot mailcluster.BootstrapConfig) error {
	c := m.Config
	client, err := consulapi.NewClient(&consulapi.Config{Address: c.ConsulAddr, Token: c.ConsulToken})
	if err != nil {
		return fmt.Errorf("consul client: %w", err)
	}
	m.internal.TLS = &cluster.InternalTLS{Peers: cluster.ConsulInternalURLs(client, c.ClusterName), Pins: m.pinnedCerts}
	st, err := cluster.OpenConsulStore(client, c.ClusterName, filepath.Join(c.DataDir, "snapshot.db"), m.Log)
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return fmt.Errorf("data dir %s is in use by another mailcluster process", c.DataDir)
		}
		return err
	}
	m.store = st
	st.Events = m.events
	m.shared = &cluster.SharedPath{Dir: c.SharedPath, Node: c.NodeName, Store: st}
	roles := make(chan mailcluster.Role, 1)
	var election *cluster.Election
	prevRole := mailcluster.RoleUnknown
	election = cluster.NewElection(cluster.ElectionConfig{
		Client: client, Cluster: c.ClusterName, Self: self, Log: m.Log,
		NeverPrimary: c.NeverPrimary, TTL: c.SessionTTL,
		Pending: func() bool {
			if m.Service.IsRegistered(c.NodeName) {
				return false
			}
			// Unregistered: pending, unless the cluster is new (no server
			// registered and no primary yet), when any node may start it.
			p, ok := election.Primary()
			return st.Count(schema.PrefixServers) > 0 || ok && p.Name != c.NodeName
		},
		MayLead: func() bool {
			sv, ok := m.Service.RegisteredMember(c.NodeName)
			if ok && sv.Version != mailcluster.Version {
				m.versionOnce.Do(func() {
					m.events.Record(mailcluster.ClusterEvent{Level: "error", Event: "version-mismatch",
						Message: "this node runs another version than it was registered with; it will not become primary until versions match again",
						Fields:  map[string]string{"running": mailcluster.Version, "registered": sv.Version}})
				})
				return false
			}
			return true
		},
		OnChange: func(r mailcluster.Role) {
			select {
			case roles <- r:
			default:
			}
			if m.outbox != nil {
				m.outbox.Kick()
			}
			if prevRole == mailcluster.RolePrimary && r != mailcluster.RolePrimary {
				m.events.Record(mailcluster.ClusterEvent{Level: "warn", Event: "step-down", Message: "this node stopped being the primary",
					Fields: map[string]string{"role": string(r)}})
			}
			if prevRole == mailcluster.RolePending && r == mailcluster.RoleSecondary {
				m.events.Record(mailcluster.ClusterEvent{Event: "registered", Message: "this node is registered and serves as a secondary"})
			}
			prevRole = r
			if r == mailcluster.RolePrimary {
				m.events.Record(mailcluster.ClusterEvent{Event: "election", Message: "this node became the primary",
					Fields: map[string]string{"elections": fmt.Sprint(election.Elections())}})
				m.goBackground(func() { m.bootstrapAsPrimary(bg, boot) })
			}
		},
	})
	st.Session = election.Session
	m.lead = election
	m.metrics.registerNode(clusterState(election, st))
	m.Service = m.newService(st, election, mailcluster.ModeCluster)
	m.Service.Lag = st
	m.Service.Cluster = &cluster.Control{Client: client, Cluster: c.ClusterName, Self: c.NodeName, Election: election,
		Store: st, Internal: m.internal}
	admitter := &cluster.Admitter{Client: client, Cluster: c.ClusterName, Internal: m.internal}
	m.Service.Admit = admitter
	m.Service.Checks = append(m.Service.Checks, healthFunc(m.joinProblems))
	isPrimary := func() bool { return election.Role() == mailcluster.RolePrimary }
	if c.AutoAdmit {
		m.goBackground(func() { m.autoAdmit(bg, admitter, isPrimary) })
	}
	probe := &cluster.ClockProbe{Store: st, Internal: m.internal, Self: c.NodeName, Servers: m.Service.RegisteredMembers,
		Primary: isPrimary, Events: m.events, Interval: c.ProbeInterval}
	m.goBackground(func() { probe.Run(bg) })
	reg := &cluster.Registration{Client: client, NodeName: c.NodeName, Cluster: c.ClusterName, APIAddr: advertise,
		InternalURL: m.internalURL, NodeKeyID: keyID, NeverPrimary: c.NeverPrimary, Log: m.Log}
	electCtx, stopElection := context.WithCancel(bg)
	m.stopElection = stopElection
	m.goBackground(func() { st.Run(bg) })
	m.electionDone = make(chan struct{})
	go func() { defer close(m.electionDone); election.Run(electCtx) }()
	m.goBackground(func() { reg.Run(bg, roles, election.Role) })
	m.events.Record(mailcluster.ClusterEvent{Event: "join", Message: "node started and is joining the cluster",
		Fields: map[string]string{"cluster": c.ClusterName, "consul": c.ConsulAddr, "version": mailcluster.Version, "never_primary": fmt.Sprint(c.NeverPrimary)}})
	return nil
}

// startMail opens the outbox of changes to mail, the mailbox store and the
// SMTP listeners.
func (m *Main) startMail(bg context.Context) error {
	c := m.Config
	ic := m.internal
	send := func(ctx context.Context, r mailcluster.UsageReport) (uint64, error) {
		if m.lead.Role() == mailcluster.RolePrimary {
			return m.Service.ApplyUsageReport(ctx, r)
		}
		p, ok := m.lead.Primary()
		if !ok {
			return 0, errors.New("no primary is elected")
		}
		return ic.SendUsage(ctx, p.APIURL, r)
	}
	ob, err := cluster.OpenOutbox(filepath.Join(c.DataDir, "outbox.db"), c.NodeName, send, m.Log)
	if err != nil {
		return err
	}
	ob.Store = m.store
	m.outbox = ob
	m.goBackground(func() { ob.Run(bg) })
	m.Mail = mailsvc.NewStore(m.Service, ob, m.Log)
	m.Service.Notify = m.Mail

	fr := &cluster.FailureReporter{
		Send: func(ctx context.Context, fs []mailcluster.LoginFailure) error {
			if m.lead.Role() == mailcluster.RolePrimary {
				return m.Service.ReportFailures(ctx, fs)
			}
			p, ok := m.lead.Primary()
			if !ok {
				return errors.New("no primary is elected")
			}
			return ic.SendFailures(ctx, p.APIURL, fs)
		},
		DecideLocally: m.Service.DecideLocally,
		ClearLocal:    m.Service.ClearLocalDecisions,
		Events:        m.events,
		Log:           m.Log,
	}
	m.Service.Failures = fr
	m.Service.ScreeningKey = cluster.ScreeningKey(c.ClusterSecret)
	m.goBackground(func() { fr.Run(bg) })

	cert, err := mailsvc.LoadOrCreateSelfSigned(filepath.Join(c.DataDir, "tls"), c.SMTPHostname)
	if err != nil {
		return err
	}
	secret, err := sealSecret(c)
	if err != nil {
		return err
	}
	m.Service.SealKey = mailcluster.SealKey(secret)
	m.certs = cluster.NewCertManager(m.Service, m.Service.SealKey, &cert, m.events, m.Log)
	m.certs.OnExpiry = func(name string, left time.Duration) {
		m.metrics.certExpiry.WithLabelValues(name).Set(left.Seconds())
	}
	m.certs.Sync()
	m.servedCerts.Store(m.certs)
	m.Service.Checks = append(m.Service.Checks, m.certs)
	m.goBackground(func() { m.certs.Run(bg, m.store) })
	m.smtp = mailsvc.NewServer(m.Mail, m.Service, mailsvc.ServerConfig{Hostname: c.SMTPHostname, TLS: m.certs.TLSConfig(), Log: m.Log,
		Registerer: m.metrics.reg})
	for _, l := range []struct {
		addr  string
		out   *string
		serve func(net.Listener) error
	}{{c.SMTPAddr, &m.SMTPAddr, m.smtp.ServeInbound}, {c.SubmissionAddr, &m.SubmissionAddr, m.smtp.ServeSubmission}} {
		if l.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", l.addr, err)
		}
		*l.out = ln.Addr().String()
		serve := l.serve
		m.goBackground(func() {
			if err := serve(ln); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
				m.Log.Error("smtp listener stopped", "err", err)
			}
		})
	}
	return nil
}

// bootstrapAsPrimary initialises an empty cluster state once this node is
// primary (a no-op when it is initialised already).
func (m *Main) bootstrapAsPrimary(ctx context.Context, boot mailcluster.BootstrapConfig) {
	if st, ok := m.store.(*cluster.ConsulStore); ok {
		// Make sure the snapshot is current before deciding that the state is empty.
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		for {
			if last, failing := st.Sync(); !last.IsZero() && !failing {
				break
			}
			if wctx.Err() != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	generated, err := m.Service.Bootstrap(ctx, boot)
	if err != nil {
		m.Log.Error("initialising the cluster state", "err", err)
		return
	}
	m.announcePassword(generated)
	if len(m.Service.RegisteredMembers()) == 0 {
		// The first node of a new cluster: nobody else could admit it.
		zone, _ := time.Now().Zone()
		if err := m.Service.RegisterSelf(ctx, mailcluster.Member{Name: m.Config.NodeName, APIURL: m.selfURL(),
			NodeKeyID: m.keyID, Version: mailcluster.Version, TimeZone: zone}); err != nil {
			m.Log.Error("registering the first node", "err", err)
		}
	}
	if err := m.shared.EnsureProbe(ctx); err != nil {
		m.Log.Error("writing the shared-path probe", "err", err)
	}
}

// internalURL is the URL other nodes call this node's internal API at
// over HTTPS: the listener's own address, or with a listener on all
// interfaces the advertised host with the listener's port.
func internalURL(advertise string, ln *net.TCPAddr) string {
	if !ln.IP.IsUnspecified() {
		return "https://" + ln.String()
	}
	host, _, err := net.SplitHostPort(advertise)
	if err != nil {
		return ""
	}
	return "https://" + net.JoinHostPort(host, strconv.Itoa(ln.Port))
}

// pinnedCerts returns the fingerprints of the certificates this node
// serves: the only ones another node may present to its internal calls.
func (m *Main) pinnedCerts() map[string]string {
	if cm := m.servedCerts.Load(); cm != nil {
		return cm.Served()
	}
	return nil
}

// selfURL is this node's advertised API URL.
func (m *Main) selfURL() string {
	if p, ok := m.lead.Primary(); ok && p.Name == m.Config.NodeName {
		return p.APIURL
	}
	return "http://" + m.advertise
}

// healthFunc adapts a function to mailcluster.HealthCheck.
type healthFunc func() []string

func (f healthFunc) Problems() []string { return f() }

// joinProblems says why this node cannot join (shown by /health).
func (m *Main) joinProblems() []string {
	var out []string
	if ok, detail := m.shared.Verify(); !ok {
		out = append(out, "shared path: "+detail)
	}
	if m.standaloneAttachmentLinking() {
		out = append(out, "attachment linking is enabled in this node's standalone state; it cannot be used in a cluster")
	}
	return out
}

// standaloneAttachmentLinking reports attachment linking switched on in
// the state this node kept while it ran standalone (read once).
func (m *Main) standaloneAttachmentLinking() bool {
	m.linkOnce.Do(func() { m.linking = m.readStandaloneAttachmentLinking() })
	return m.linking
}

func (m *Main) readStandaloneAttachmentLinking() bool {
	v, ok, err := kvstore.ReadStateValue(filepath.Join(m.Config.DataDir, "state.db"),
		schema.PrefixSettings+mailcluster.MainSettingsFile+"/"+mailcluster.SectionAttachmentLinking+"/"+mailcluster.KeyEnabled)
	if err != nil || !ok {
		return false
	}
	on, _ := mailcluster.ParseFlag(string(v))
	return on
}

// NodeInfo answers the internal API's /internal/v1/info for admission.
func (m *Main) nodeInfo() any {
	ok, detail := m.shared.Verify()
	zone, _ := time.Now().Zone()
	return cluster.NodeInfo{Name: m.Config.NodeName, APIURL: "http://" + m.advertise, KeyID: m.keyID, Version: mailcluster.Version,
		TimeZone: zone, SharedPathOK: ok, SharedPathDetail: detail, AttachmentLinking: m.standaloneAttachmentLinking()}
}

// timeProbe answers /internal/v1/time (shifted by --test-clock-offset).
func (m *Main) timeProbe() any {
	now := time.Now().Add(m.Config.TestClockSkew)
	zone, _ := now.Zone()
	return cluster.TimeProbe{UnixNano: now.UnixNano(), Zone: zone}
}

// autoAdmit registers, while this node is primary, every node of the
// cluster that Consul lists and that passes the admission checks; a
// refused node is tried again once a minute (each refusal is logged).
func (m *Main) autoAdmit(ctx context.Context, a *cluster.Admitter, isPrimary func() bool) {
	refused := map[string]time.Time{}
	t := time.NewTicker(300 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !isPrimary() {
			continue
		}
		cands, err := a.Candidates(ctx)
		if err != nil {
			continue
		}
		for name := range cands {
			if m.Service.IsRegistered(name) || time.Since(refused[name]) < time.Minute {
				continue
			}
			if _, err := m.Service.AddMember(ctx, name); err != nil {
				refused[name] = time.Now()
				m.Log.Warn("auto-admit refused a node", "node", name, "reason", mailcluster.ErrorMessage(err))
			}
		}
	}
}

// Close stops the node: in a cluster it first hands the primary role
// over (releasing the lock), then stops the listener and background jobs,
// and closes the state.
func (m *Main) Close() error {
	var err error
	m.closeMu.Do(func() {
		if m.stopElection != nil {
			m.stopElection()
			<-m.electionDone
		}
		if m.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err = m.http.Shutdown(ctx)
			cancel()
		} else if m.ln != nil {
			m.ln.Close()
		}
		if m.https != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = m.https.Shutdown(ctx)
			cancel()
		} else if m.tln != nil {
			m.tln.Close()
		}
		if m.smtp != nil {
			if serr := m.smtp.Close(); err == nil {
				err = serr
			}
		}
		if m.cancel != nil {
			m.cancel()
		}
		m.wg.Wait()
		if m.outbox != nil {
			if oerr := m.outbox.Close(); err == nil {
				err = oerr
			}
		}
		if m.store != nil {
			if cerr := m.store.Close(); err == nil {
				err = cerr
			}
		}
		if m.events != nil && m.Config.Clustered() {
			m.events.Record(mailcluster.ClusterEvent{Event: "leave", Message: "node stopped"})
		}
	})
	return err
}

// sealSecret returns the secret that seals certificate keys: the cluster
// secret, or on a standalone node a random one kept in <data>/seal.secret.
func sealSecret(c *Config) (string, error) {
	if c.ClusterSecret != "" {
		return c.ClusterSecret, nil
	}
	path := filepath.Join(c.DataDir, "seal.secret")
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !os.IsNotExist(err) {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	secret := rand.Text() + rand.Text()
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return secret, nil
}

// loadNodeKey returns the id (a hash, never the key) of the node key from
// the config, or from <data>/node.key, generating that file on first use.
func loadNodeKey(c *Config) (string, error) {
	key := c.NodeKey
	if key == "" {
		path := filepath.Join(c.DataDir, "node.key")
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			key = strings.TrimSpace(string(b))
		case os.IsNotExist(err):
			key = rand.Text() + rand.Text()
			if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
				return "", fmt.Errorf("write node key: %w", err)
			}
		default:
			return "", fmt.Errorf("read node key: %w", err)
		}
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:8]), nil
}
