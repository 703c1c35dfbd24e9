// Package node assembles a running mailcluster node from its Config: the
// state (the standalone bbolt store or the Consul store with its election
// and registration), the Service over it, the REST API with the XML-API,
// the SMTP, IMAP and POP3 listeners and the background jobs. It holds the node's own
// rules: when an unregistered node may start a new cluster, that a node
// registered with another version never becomes primary, the bootstrap
// of an empty state on becoming primary, forwarding of usage reports and
// login failures to the primary, the auto-admit loop and the join checks
// shown by /health. It also wires the Prometheus metrics (metrics.go).
// cmd/mailcluster only loads the Config and calls New and Run; tests and
// benchmarks start whole nodes in-process the same way.
package node

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
	"github.com/hashicorp/go-cleanhttp"
	bolterrors "go.etcd.io/bbolt/errors"

	"mailcluster"
	"mailcluster/api"
	"mailcluster/certs"
	"mailcluster/cluster"
	"mailcluster/clusterlog"
	"mailcluster/imapsvc"
	"mailcluster/inifiles"
	"mailcluster/internal/gcfloor"
	"mailcluster/internal/nodeauth"
	"mailcluster/kvstore"
	"mailcluster/mailqueue"
	"mailcluster/mailstore"
	"mailcluster/mailsvc"
	"mailcluster/outbound"
	"mailcluster/pop3svc"
	"mailcluster/schema"
	"mailcluster/service"
	"mailcluster/xmlapi"
)

// The outbox takes a delivery's report without a sync of its own where
// the delivery syncs the outbox's file system whole.
var _ mailstore.WrittenReporter = (*cluster.Outbox)(nil)

// Node is one running node. New makes it from its config; Run starts it
// and returns once every listener is up; Close stops it.
type Node struct {
	config *Config
	log    *slog.Logger
	stdout io.Writer // receives the one-time notice of a generated admin password

	Service        *service.Service
	local          *service.Local // the node's own view of Service, for its components
	HTTPAddr       string         // the address the HTTP listener got (useful with port 0)
	SMTPAddr       string         // the inbound SMTP listener's address ("" when off)
	SubmissionAddr string         // the submission listener's address ("" when off)
	IMAPAddr       string         // the IMAP (STARTTLS) listener's address ("" when off)
	IMAPSAddr      string         // the IMAP implicit-TLS listener's address ("" when off)
	POP3Addr       string         // the POP3 (STLS) listener's address ("" when off)
	POP3SAddr      string         // the POP3 implicit-TLS listener's address ("" when off)
	HTTPSAddr      string         // the HTTPS listener's address ("" when off)
	Mail           *mailstore.Store
	// ProbeClock is the clock this node answers the primary's clock
	// probes with (/internal/v1/time); nil means time.Now. Only code sets
	// it (no flag, variable or config file reaches it): a test build
	// fakes a skewed clock with it. Set it before Run.
	ProbeClock func() time.Time

	store        closer
	started      time.Time              // when this node joined its cluster (startCluster)
	events       mailcluster.ClusterLog // the file log, observed by the metrics
	certs        *certs.Manager
	servedCerts  atomic.Pointer[certs.Manager] // n.certs, once made (read by internal calls)
	sealKey      []byte                        // seals certificate keys (from the cluster secret)
	failures     *cluster.FailureReporter
	metrics      *metrics
	https        *http.Server
	tln          net.Listener // the HTTPS listener until n.https serves it
	internalURL  string       // the https URL of the internal API, "" without HTTPS
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
	queue        *mailqueue.Queue  // the outbound queue (every node's, on the shared path)
	queueRunner  *mailqueue.Runner // delivers this node's part of it
	outPool      *outbound.Pool    // sessions and DNS answers shared by its deliveries
	queueLive    func() bool       // false while this node must not deliver (cluster membership lapsed)
	queueMembers func(context.Context) ([]string, error)
	isPrimary    func() bool
	imap         *imapsvc.Server
	pop3         *pop3svc.Server
	hub          *mailstore.LocalHub // folder changes made here, for this node's IMAP sessions
	ln           net.Listener
	http         *http.Server
	cancel       context.CancelFunc
	stopElection context.CancelFunc
	electionDone chan struct{}
	wg           sync.WaitGroup
	closeMu      sync.Once
	heapFloor    func() // releases the heap floor set by Run
}

// New returns the node for cfg (checked with Config.Validate, or filled in
// by a test), logging to log. The generated admin password of a first
// start is written to stdout (may be nil). Nothing runs before Run.
func New(cfg *Config, log *slog.Logger, stdout io.Writer) *Node {
	return &Node{config: cfg, log: log, stdout: stdout}
}

// closer is a Store that must be closed.
type closer interface {
	mailcluster.Store
	Close() error
}

// Run opens the state, initialises it on the first start (standalone) or
// joins the cluster (with a Consul address), and starts the HTTP listener
// and the background jobs. It returns once the listener is up.
func (n *Node) Run(ctx context.Context) (err error) {
	c := n.config
	defer func() {
		if err != nil {
			n.Close()
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
	n.keyID = keyID
	n.heapFloor = gcfloor.Set(uint64(c.HeapFloorMiB) << 20)
	ln, err := net.Listen("tcp", c.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.HTTPAddr, err)
	}
	n.ln = ln
	n.HTTPAddr = ln.Addr().String()
	advertise := c.AdvertiseAddr
	if advertise == "" {
		if ip := ln.Addr().(*net.TCPAddr).IP; ip.IsUnspecified() && c.Clustered() {
			return configf("advertise-addr: required when http-addr listens on all interfaces (%s)", c.HTTPAddr)
		}
		advertise = n.HTTPAddr
	}
	self := mailcluster.PrimaryRef{Name: c.NodeName, APIURL: "http://" + advertise}
	n.advertise = advertise
	if c.HTTPSAddr != "" {
		tln, err := net.Listen("tcp", c.HTTPSAddr)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", c.HTTPSAddr, err)
		}
		n.tln = tln
		n.HTTPSAddr = tln.Addr().String()
		n.internalURL = internalURL(advertise, tln.Addr().(*net.TCPAddr))
	}
	n.metrics = newMetrics()
	n.events = newEventLog(clusterlog.NewFile(filepath.Join(c.DataDir, "logs", "cluster.log"), c.NodeName, n.log), n.metrics)
	bg, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	boot := mailcluster.BootstrapConfig{AdminAddress: c.AdminAddress, AdminPassword: c.AdminPassword, DataDir: c.DataDir, SharedPath: c.SharedPath}
	n.internal = &cluster.InternalClient{Signer: &nodeauth.Signer{Key: nodeauth.Key(c.ClusterSecret), Node: c.NodeName}}
	secret, err := sealSecret(c)
	if err != nil {
		return err
	}
	n.sealKey = mailcluster.SealKey(secret)
	n.failures = n.newFailureReporter()
	n.queue = n.newQueue()

	if c.Clustered() {
		err = n.startCluster(bg, self, advertise, keyID, boot)
	} else {
		err = n.startStandalone(ctx, self, boot)
	}
	if err != nil {
		return err
	}
	if !c.Clustered() {
		n.goBackground(func() { n.resumeDomainDeletions(bg) })
	}

	if err := n.startMail(bg); err != nil {
		return err
	}
	xmlHandler := xmlapi.NewHandler(n.Service, n.log)
	xmlHandler.OnOperation = n.metrics.xmlapiOperation
	handler := api.NewServer(n.Service, api.Config{Log: n.log, XMLAPI: xmlHandler,
		Mail: n.Mail, InternalKey: nodeauth.Key(c.ClusterSecret), TrustedProxies: c.Proxies(),
		Metrics: n.metrics.handler(), Registerer: n.metrics.reg, InternalInfo: n.nodeInfo, InternalTime: n.timeProbe,
		NodeContext: func(ctx context.Context, node string) context.Context {
			return service.SystemContext(ctx, "node "+node)
		}})
	n.http = newHTTPServer(handler, n.log)
	mat := inifiles.NewMaterializer(n.store, filepath.Join(c.DataDir, "app"), n.log)
	mat.OnOverwrite = func(file string) {
		n.events.Record(mailcluster.ClusterEvent{Level: "warn", Event: mailcluster.EventSettingsOverwritten,
			Message: "a settings file edited on this node's disk was overwritten from the replicated state",
			Fields:  map[string]string{"file": file + ".ini"}})
	}
	if err := mat.Sync(nil); err != nil {
		return err
	}
	n.goBackground(func() { mat.Run(bg) })
	n.goBackground(func() {
		if err := n.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http server stopped", "err", err)
		}
	})
	if n.tln != nil {
		tln := n.tln
		n.https = &http.Server{Handler: handler, TLSConfig: n.certs.TLSConfig(), ReadHeaderTimeout: n.http.ReadHeaderTimeout,
			ReadTimeout: n.http.ReadTimeout, WriteTimeout: n.http.WriteTimeout, IdleTimeout: n.http.IdleTimeout,
			MaxHeaderBytes: n.http.MaxHeaderBytes, ErrorLog: n.http.ErrorLog}
		n.goBackground(func() {
			if err := n.https.Serve(tls.NewListener(tln, n.https.TLSConfig)); err != nil && !errors.Is(err, http.ErrServerClosed) {
				n.log.Error("https server stopped", "err", err)
			}
		})
	}
	base := "http://" + n.HTTPAddr
	mode := mailcluster.ModeStandalone
	if c.Clustered() {
		mode = mailcluster.ModeCluster
	}
	n.log.Info("listening", "node", c.NodeName, "mode", mode,
		"rest", base+"/api/v1/", "xmlapi", base+"/MdMgmtWS", "openapi", base+"/openapi.yaml", "health", base+"/health",
		"https", n.HTTPSAddr, "smtp", n.SMTPAddr, "submission", n.SubmissionAddr, "imap", n.IMAPAddr, "imaps", n.IMAPSAddr,
		"pop3", n.POP3Addr, "pop3s", n.POP3SAddr,
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

func (n *Node) goBackground(f func()) {
	n.wg.Add(1)
	go func() { defer n.wg.Done(); f() }()
}

// startStandalone opens the embedded store; the node is always primary.
func (n *Node) startStandalone(ctx context.Context, self mailcluster.PrimaryRef, boot mailcluster.BootstrapConfig) error {
	st, err := kvstore.OpenBoltStore(filepath.Join(n.config.DataDir, "state.db"), n.log)
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return fmt.Errorf("data dir %s is in use by another mailcluster process", n.config.DataDir)
		}
		return err
	}
	n.store = st
	n.lead = mailcluster.StaticLeadership{Self: self}
	n.metrics.registerNode(standaloneState(n.lead, st, time.Now()))
	n.Service = n.newService(st, n.lead, mailcluster.ModeStandalone, service.Options{})
	generated, err := n.Service.Bootstrap(service.SystemContext(ctx, "bootstrap"), boot)
	if err != nil {
		return fmt.Errorf("initialise state: %w", err)
	}
	n.announcePassword(generated)
	return nil
}

// newService builds the node's Service with everything it is given at
// once; parts made later (the mail store, the certificate manager) are
// reached through the node, never assigned into the Service.
func (n *Node) newService(st mailcluster.Store, lead mailcluster.Leadership, mode mailcluster.Mode, opts service.Options) *service.Service {
	opts.NodeName = n.config.NodeName
	opts.NodeKeyID = n.keyID
	opts.Mode = mode
	opts.Events = n.events
	opts.Failures = n.failures
	opts.Notify = mailcluster.NotifierFunc(n.notifyFrozen)
	opts.Checks = append(opts.Checks, healthFunc(n.certProblems))
	opts.SealKey = n.sealKey
	opts.Queue = n.queue
	opts.ScreeningKey = cluster.ScreeningKey(n.config.ClusterSecret)
	svc := service.New(st, lead, n.log, opts)
	local, err := svc.Local(service.SystemContext(context.Background(), "node"))
	if err != nil {
		panic(err) // a system caller always gets the local view
	}
	n.local = local
	return svc
}

// notifyFrozen mails a thaw token through the mail store.
func (n *Node) notifyFrozen(ctx context.Context, a *mailcluster.Account, token string, expires time.Time) error {
	if n.Mail == nil {
		return errors.New("the mail service is not running")
	}
	return n.Mail.NotifyFrozen(ctx, a, token, expires)
}

// certProblems reports what the certificate manager cannot serve.
func (n *Node) certProblems() []string {
	if cm := n.servedCerts.Load(); cm != nil {
		return cm.Problems()
	}
	return nil
}

// newFailureReporter carries failed logins to the primary, deciding on
// the node's own copy while none is reachable.
func (n *Node) newFailureReporter() *cluster.FailureReporter {
	ic := n.internal
	return &cluster.FailureReporter{
		Send: func(ctx context.Context, fs []mailcluster.LoginFailure) error {
			_, err := toPrimary(n.lead, func() (struct{}, error) {
				return struct{}{}, n.Service.ReportFailures(service.SystemContext(ctx, "screening"), fs)
			},
				func(url string) (struct{}, error) { return struct{}{}, ic.SendFailures(ctx, url, fs) })
			return err
		},
		DecideLocally: func(fs []mailcluster.LoginFailure) { n.local.DecideLocally(fs) },
		ClearLocal:    func() int { return n.local.ClearLocalDecisions() },
		Events:        n.events,
		Log:           n.log,
	}
}

func (n *Node) announcePassword(generated string) {
	if generated != "" && n.stdout != nil {
		fmt.Fprintf(n.stdout, "\nGenerated password for %s: %s\n(shown only this once; only its hash is stored. Set MAILCLUSTER_ADMIN_PASSWORD before the first start to choose it.)\n\n",
			n.config.AdminAddress, generated)
	}
}

// admittedSinceStart reports whether this node was registered after this
// process started (an admission while its state was still catching up,
// before it could show as pending).
func (n *Node) admittedSinceStart() bool {
	sv, ok := n.local.RegisteredMember(n.config.NodeName)
	// The primary stamps the registration: allow for a small clock offset.
	return ok && sv.RegisteredAt.After(n.started.Add(-2*time.Second))
}

// startCluster joins the Consul cluster: the snapshot store, the election
// and the service registration run in the background; the node serves its
// persisted snapshot read-only until it hears from Consul.
func (n *Node) startCluster(bg context.Context, self mailcluster.PrimaryRef, advertise, keyID string, boot mailcluster.BootstrapConfig) error {
	c := n.config
	n.started = time.Now()
	// The node keeps several blocking queries open at once (the feed's
	// head, the election, the watch for outside changes) besides its
	// writes: keep enough idle connections that each request does not
	// dial Consul anew.
	transport := cleanhttp.DefaultPooledTransport()
	transport.MaxIdleConnsPerHost = 64
	client, err := consulapi.NewClient(&consulapi.Config{Address: c.ConsulAddr, Token: c.ConsulToken, Transport: transport})
	if err != nil {
		return fmt.Errorf("consul client: %w", err)
	}
	n.internal.TLS = &cluster.InternalTLS{Peers: cluster.ConsulInternalURLs(client, c.ClusterName), Pins: n.pinnedCerts}
	st, err := cluster.OpenConsulStore(client, c.ClusterName, filepath.Join(c.DataDir, "snapshot.db"), n.log)
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return fmt.Errorf("data dir %s is in use by another mailcluster process", c.DataDir)
		}
		return err
	}
	n.store = st
	st.Events = n.events
	n.shared = &cluster.SharedPath{Dir: c.SharedPath, Node: c.NodeName, Store: st}
	roles := make(chan mailcluster.Role, 1)
	var election *cluster.Election
	prevRole := mailcluster.RoleUnknown
	election = cluster.NewElection(cluster.ElectionConfig{
		Client: client, Cluster: c.ClusterName, Self: self, Log: n.log,
		NeverPrimary: c.NeverPrimary, TTL: c.SessionTTL,
		Pending: func() bool {
			if n.local.IsRegistered(c.NodeName) {
				return false
			}
			// Unregistered: pending, unless the cluster is new (no server
			// registered and no primary yet), when any node may start it.
			p, ok := election.Primary()
			return st.Count(schema.PrefixServers) > 0 || ok && p.Name != c.NodeName
		},
		MayLead: func() bool {
			sv, ok := n.local.RegisteredMember(c.NodeName)
			if ok && sv.Version != mailcluster.Version {
				n.versionOnce.Do(func() {
					n.events.Record(mailcluster.ClusterEvent{Level: "error", Event: mailcluster.EventVersionMismatch,
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
			if n.outbox != nil {
				n.outbox.Kick()
			}
			if prevRole == mailcluster.RolePrimary && r != mailcluster.RolePrimary {
				n.events.Record(mailcluster.ClusterEvent{Level: "warn", Event: mailcluster.EventStepDown, Message: "this node stopped being the primary",
					Fields: map[string]string{"role": string(r)}})
			}
			if r == mailcluster.RoleSecondary && (prevRole == mailcluster.RolePending || prevRole == mailcluster.RoleUnknown && n.admittedSinceStart()) {
				n.events.Record(mailcluster.ClusterEvent{Event: mailcluster.EventRegistered, Message: "this node is registered and serves as a secondary"})
			}
			prevRole = r
			if r == mailcluster.RolePrimary {
				n.events.Record(mailcluster.ClusterEvent{Event: mailcluster.EventElection, Message: "this node became the primary",
					Fields: map[string]string{"elections": fmt.Sprint(election.Elections())}})
				n.goBackground(func() { n.bootstrapAsPrimary(bg, boot); n.resumeDomainDeletions(bg) })
			}
		},
	})
	st.Session = election.Session
	n.lead = election
	n.metrics.registerNode(clusterState(election, st))
	admitter := &cluster.Admitter{Client: client, Cluster: c.ClusterName, Internal: n.internal}
	n.Service = n.newService(st, election, mailcluster.ModeCluster, service.Options{
		Lag: st,
		Cluster: &cluster.Control{Client: client, Cluster: c.ClusterName, Self: c.NodeName, Election: election,
			Store: st, Internal: n.internal},
		Admit:  admitter,
		Checks: []mailcluster.HealthCheck{healthFunc(n.joinProblems)},
	})
	isPrimary := func() bool { return election.Role() == mailcluster.RolePrimary }
	n.isPrimary = isPrimary
	n.queueLive = func() bool { return n.local.Serving() && (c.NeverPrimary || election.Member()) }
	n.queueMembers = consulMembers(client, c.ClusterName)
	if c.AutoAdmit {
		n.goBackground(func() {
			admitter.AutoAdmit(bg, isPrimary, n.local.IsRegistered, func(ctx context.Context, name string) error {
				_, err := n.Service.AddMember(service.SystemContext(ctx, "auto-admit"), name)
				return err
			}, n.log)
		})
	}
	probe := &cluster.ClockProbe{Store: st, Internal: n.internal, Self: c.NodeName, Servers: n.local.RegisteredMembers,
		Primary: isPrimary, Events: n.events, Interval: c.ProbeInterval}
	n.goBackground(func() { probe.Run(bg) })
	reg := &cluster.Registration{Client: client, NodeName: c.NodeName, Cluster: c.ClusterName, APIAddr: advertise,
		InternalURL: n.internalURL, NodeKeyID: keyID, NeverPrimary: c.NeverPrimary, Log: n.log}
	electCtx, stopElection := context.WithCancel(bg)
	n.stopElection = stopElection
	n.goBackground(func() { st.Run(bg) })
	n.electionDone = make(chan struct{})
	go func() {
		defer close(n.electionDone)
		// A node takes part in the election (and tells pending from
		// registered) only once its state has caught up with Consul.
		if st.WaitSynced(electCtx) == nil {
			election.Run(electCtx)
		}
	}()
	n.goBackground(func() { reg.Run(bg, roles, election.Role) })
	n.events.Record(mailcluster.ClusterEvent{Event: mailcluster.EventJoin, Message: "node started and is joining the cluster",
		Fields: map[string]string{"cluster": c.ClusterName, "consul": c.ConsulAddr, "version": mailcluster.Version, "never_primary": fmt.Sprint(c.NeverPrimary)}})
	return nil
}

// startMail opens the outbox of changes to mail, the mailbox store with
// the node's Hub, and the SMTP, IMAP and POP3 listeners (with the
// certificate manager's TLS).
func (n *Node) startMail(bg context.Context) error {
	c := n.config
	ic := n.internal
	send := func(ctx context.Context, r mailcluster.UsageReport) (uint64, error) {
		return toPrimary(n.lead, func() (uint64, error) { return n.Service.ApplyUsageReport(service.SystemContext(ctx, "outbox"), r) },
			func(url string) (uint64, error) { return ic.SendUsage(ctx, url, r) })
	}
	ob, err := cluster.OpenOutbox(filepath.Join(c.DataDir, "outbox.db"), c.NodeName, send, n.log)
	if err != nil {
		return err
	}
	ob.Store = n.store
	n.outbox = ob
	n.goBackground(func() { ob.Run(bg) })
	n.hub = mailstore.NewHub()
	syncMethod, _ := mailstore.ParseSyncMethod(c.MailSync) // checked by Validate
	n.Mail = mailstore.NewStore(n.local, ob, n.log, mailstore.Options{Hub: n.hub, Sync: syncMethod})
	// Folder changes of the other nodes, published by the primary, reach
	// this node's IMAP sessions through the hub.
	mail := n.Mail
	n.goBackground(func() { n.local.FollowMailChanges(bg, c.NodeName, mail.PublishChange, mail.PublishAll) })

	fr := n.failures
	n.goBackground(func() { fr.Run(bg) })

	cert, err := mailsvc.LoadOrCreateSelfSigned(filepath.Join(c.DataDir, "tls"), c.SMTPHostname)
	if err != nil {
		return err
	}
	n.certs = certs.NewManager(n.local, n.sealKey, &cert, n.events, n.log)
	n.certs.OnExpiry = func(name string, left time.Duration) {
		n.metrics.certExpiry.WithLabelValues(name).Set(left.Seconds())
	}
	n.certs.Sync()
	n.servedCerts.Store(n.certs)
	n.goBackground(func() { n.certs.Run(bg, n.store) })
	n.smtp = mailsvc.NewServer(n.Mail, n.local, mailsvc.ServerConfig{Hostname: c.SMTPHostname, TLS: n.certs.TLSConfig(), Log: n.log,
		Registerer: n.metrics.reg, Queue: n.queue})
	live, primary := n.queueLive, n.isPrimary
	if live == nil {
		live, primary = func() bool { return true }, func() bool { return true }
	}
	if err := n.startQueue(bg, live, n.queueMembers, primary); err != nil {
		return err
	}
	if err := n.listenMail("smtp", mailListener{c.SMTPAddr, &n.SMTPAddr, n.smtp.ServeInbound},
		mailListener{c.SubmissionAddr, &n.SubmissionAddr, n.smtp.ServeSubmission}); err != nil {
		return err
	}
	n.imap = imapsvc.NewServer(n.Mail, n.local, imapsvc.Config{TLS: n.certs.TLSConfig(), Log: n.log, Hub: n.hub, Rescan: c.IMAPRescan})
	if err := n.listenMail("imap", mailListener{c.IMAPAddr, &n.IMAPAddr, n.imap.ServeIMAP},
		mailListener{c.IMAPSAddr, &n.IMAPSAddr, n.imap.ServeIMAPS}); err != nil {
		return err
	}
	n.pop3 = pop3svc.NewServer(n.Mail, n.local, pop3svc.Config{TLS: n.certs.TLSConfig(), Log: n.log})
	return n.listenMail("pop3", mailListener{c.POP3Addr, &n.POP3Addr, n.pop3.ServePOP3},
		mailListener{c.POP3SAddr, &n.POP3SAddr, n.pop3.ServePOP3S})
}

// mailListener is a mail listener of the node: an address from the
// configuration ("" for none), where to write the bound address, and the
// edge's serve loop.
type mailListener struct {
	addr  string
	out   *string
	serve func(net.Listener) error
}

// listenMail binds each configured listener and serves it in the
// background until the node closes; a serve loop that stops with an
// error (other than SMTP's normal end, smtp.ErrServerClosed) is logged
// under protocol.
func (n *Node) listenMail(protocol string, ls ...mailListener) error {
	for _, l := range ls {
		if l.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", l.addr, err)
		}
		*l.out = ln.Addr().String()
		serve := l.serve
		n.goBackground(func() {
			if err := serve(ln); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
				n.log.Error(protocol+" listener stopped", "err", err)
			}
		})
	}
	return nil
}

// toPrimary hands a report to the primary: on the primary itself to local,
// on any other node to remote with the primary's API URL. It fails while
// no primary is elected (the caller keeps the report and tries again).
func toPrimary[T any](lead mailcluster.Leadership, local func() (T, error), remote func(apiURL string) (T, error)) (T, error) {
	if lead.Role() == mailcluster.RolePrimary {
		return local()
	}
	p, ok := lead.Primary()
	if !ok {
		var zero T
		return zero, errors.New("no primary is elected")
	}
	return remote(p.APIURL)
}

// bootstrapAsPrimary initialises an empty cluster state once this node is
// primary (a no-op when it is initialised already).
func (n *Node) bootstrapAsPrimary(ctx context.Context, boot mailcluster.BootstrapConfig) {
	if st, ok := n.store.(*cluster.ConsulStore); ok {
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
	generated, err := n.Service.Bootstrap(service.SystemContext(ctx, "bootstrap"), boot)
	if err != nil {
		n.log.Error("initialising the cluster state", "err", err)
		return
	}
	n.announcePassword(generated)
	if len(n.local.RegisteredMembers()) == 0 {
		// The first node of a new cluster: nobody else could admit it.
		zone, _ := time.Now().Zone()
		if err := n.Service.RegisterSelf(service.SystemContext(ctx, "bootstrap"), mailcluster.Member{Name: n.config.NodeName, APIURL: n.selfURL(),
			NodeKeyID: n.keyID, Version: mailcluster.Version, TimeZone: zone}); err != nil {
			n.log.Error("registering the first node", "err", err)
		}
	}
	if err := n.shared.EnsureProbe(ctx); err != nil {
		n.log.Error("writing the shared-path probe", "err", err)
	}
}

// resumeDomainDeletions finishes the domain deletions a former primary
// (or this node before a restart) left unfinished; it runs while this
// node is the primary and ends with ctx.
func (n *Node) resumeDomainDeletions(ctx context.Context) {
	if err := n.Service.ResumeDomainDeletions(service.SystemContext(ctx, "resume-deletions")); err != nil && ctx.Err() == nil {
		n.log.Warn("resuming domain deletions", "err", err)
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
func (n *Node) pinnedCerts() map[string]string {
	if cm := n.servedCerts.Load(); cm != nil {
		return cm.Served()
	}
	return nil
}

// selfURL is this node's advertised API URL.
func (n *Node) selfURL() string {
	if p, ok := n.lead.Primary(); ok && p.Name == n.config.NodeName {
		return p.APIURL
	}
	return "http://" + n.advertise
}

// healthFunc adapts a function to mailcluster.HealthCheck.
type healthFunc func() []string

func (f healthFunc) Problems() []string { return f() }

// joinProblems says why this node cannot join (shown by /health).
func (n *Node) joinProblems() []string {
	var out []string
	if ok, detail := n.shared.Verify(); !ok {
		out = append(out, "shared path: "+detail)
	}
	if n.standaloneAttachmentLinking() {
		out = append(out, "attachment linking is enabled in this node's standalone state; it cannot be used in a cluster")
	}
	return out
}

// standaloneAttachmentLinking reports attachment linking switched on in
// the state this node kept while it ran standalone (read once).
func (n *Node) standaloneAttachmentLinking() bool {
	n.linkOnce.Do(func() { n.linking = n.readStandaloneAttachmentLinking() })
	return n.linking
}

func (n *Node) readStandaloneAttachmentLinking() bool {
	v, ok, err := kvstore.ReadStateValue(filepath.Join(n.config.DataDir, "state.db"),
		schema.Setting(mailcluster.MainSettingsFile, mailcluster.SectionAttachmentLinking, mailcluster.KeyEnabled))
	if err != nil || !ok {
		return false
	}
	on, _ := mailcluster.ParseFlag(string(v))
	return on
}

// NodeInfo answers the internal API's /internal/v1/info for admission.
func (n *Node) nodeInfo() any {
	if st, isCluster := n.store.(*cluster.ConsulStore); isCluster {
		// The shared-path answer needs the cluster's probe token: a node
		// that just started answers once its state has caught up.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = st.WaitSynced(ctx)
		cancel()
	}
	ok, detail := n.shared.Verify()
	zone, _ := time.Now().Zone()
	return cluster.NodeInfo{Name: n.config.NodeName, APIURL: "http://" + n.advertise, KeyID: n.keyID, Version: mailcluster.Version,
		TimeZone: zone, SharedPathOK: ok, SharedPathDetail: detail, AttachmentLinking: n.standaloneAttachmentLinking()}
}

// timeProbe answers /internal/v1/time with ProbeClock.
func (n *Node) timeProbe() any {
	now := time.Now()
	if n.ProbeClock != nil {
		now = n.ProbeClock()
	}
	zone, _ := now.Zone()
	return cluster.TimeProbe{UnixNano: now.UnixNano(), Zone: zone}
}

// Close stops the node: in a cluster it first hands the primary role
// over (releasing the lock), then stops the listener and background jobs,
// and closes the state.
func (n *Node) Close() error {
	var err error
	n.closeMu.Do(func() {
		if n.stopElection != nil {
			n.stopElection()
			<-n.electionDone
		}
		if n.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err = n.http.Shutdown(ctx)
			cancel()
		} else if n.ln != nil {
			n.ln.Close()
		}
		if n.https != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = n.https.Shutdown(ctx)
			cancel()
		} else if n.tln != nil {
			n.tln.Close()
		}
		if n.smtp != nil {
			if serr := n.smtp.Close(); err == nil {
				err = serr
			}
		}
		if n.imap != nil {
			if ierr := n.imap.Close(); err == nil {
				err = ierr
			}
		}
		if n.pop3 != nil {
			if perr := n.pop3.Close(); err == nil {
				err = perr
			}
		}
		if n.queueRunner != nil {
			// Deliveries in progress may finish (so that none is sent
			// twice), well within [Queue] TakeoverAfter.
			n.queueRunner.Close(15 * time.Second)
		}
		if n.outPool != nil {
			n.outPool.Close()
		}
		if n.cancel != nil {
			n.cancel()
		}
		n.wg.Wait()
		// Lock files kept for this node's next delivery go now, so that
		// other nodes need not wait for them to turn stale.
		mailstore.ReleaseLingering()
		if n.outbox != nil {
			if oerr := n.outbox.Close(); err == nil {
				err = oerr
			}
		}
		if n.store != nil {
			if cerr := n.store.Close(); err == nil {
				err = cerr
			}
		}
		if n.events != nil && n.config.Clustered() {
			n.events.Record(mailcluster.ClusterEvent{Event: mailcluster.EventLeave, Message: "node stopped"})
		}
		if n.heapFloor != nil {
			n.heapFloor()
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
