package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	consulapi "github.com/hashicorp/consul/api"

	"mailcluster/cluster"
	"mailcluster/mailqueue"
	"mailcluster/mailstore"
	"mailcluster/outbound"

	"mailcluster"
)

// queueDir is the outbound queue's directory: on the shared path in a
// cluster (so that any node can take over another's queue), else in the
// data directory.
func (n *Node) queueDir() string {
	if n.config.SharedPath != "" {
		return filepath.Join(n.config.SharedPath, "queue")
	}
	return filepath.Join(n.config.DataDir, "queue")
}

// newQueue returns the node's outbound queue, without its runner yet
// (startQueue adds it once the mail store exists).
func (n *Node) newQueue() *mailqueue.Queue {
	return &mailqueue.Queue{Spool: mailqueue.Spool{Dir: n.queueDir(), Syncs: &mailstore.DirSyncs{}}, Node: n.config.NodeName,
		Signer: func(domain string) (*dkim.SignOptions, bool) {
			if n.local == nil {
				return nil, false
			}
			return n.local.DKIMSigner(domain)
		}}
}

// deliverer is an outbound client made from the current [Outbound]
// settings.
type deliverer struct {
	*outbound.Client
	smarthost bool
}

func (d deliverer) ViaSmarthost() bool { return d.smarthost }

// newDeliverer reads [Outbound] and returns the client of one attempt.
func (n *Node) newDeliverer() mailqueue.Deliverer {
	set := n.local.Setting
	cfg := outbound.Config{HeloName: n.config.SMTPHostname, Log: n.log,
		DNSServer: set(mailcluster.SectionOutbound, mailcluster.KeyDNSServer, ""),
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12}, Pool: n.outPool}
	if p, err := strconv.Atoi(set(mailcluster.SectionOutbound, mailcluster.KeyMXPort, "")); err == nil {
		cfg.Port = p
	}
	required := map[string]bool{}
	for _, d := range strings.FieldsFunc(set(mailcluster.SectionOutbound, mailcluster.KeyTLSRequiredDomains, ""), func(r rune) bool { return r == ',' || r == ' ' }) {
		required[strings.ToLower(d)] = true
	}
	cfg.RequireTLS = func(domain string) bool { return required[strings.ToLower(domain)] }
	sh := set(mailcluster.SectionOutbound, mailcluster.KeySmarthost, "")
	if sh != "" {
		host, port, _ := strings.Cut(sh, ":")
		if i := strings.LastIndexByte(sh, ':'); i > 0 {
			host, port = sh[:i], sh[i+1:]
		}
		p, _ := strconv.Atoi(port)
		mode := outbound.TLSMode(strings.ToLower(set(mailcluster.SectionOutbound, mailcluster.KeySmarthostTLS, "starttls")))
		cfg.Smarthost = &outbound.Smarthost{Host: strings.Trim(host, "[]"), Port: p, TLS: mode,
			Username: set(mailcluster.SectionOutbound, mailcluster.KeySmarthostUser, ""), Password: n.config.SmarthostPassword}
	}
	return deliverer{Client: outbound.New(cfg), smarthost: sh != ""}
}

// deliverNotice puts a delivery status notification into the mailbox of
// a local sender; a sender that no longer exists, or whose mailbox is
// full, gets none (logged).
func (n *Node) deliverNotice(ctx context.Context, to string, msg []byte) (bool, error) {
	i := strings.LastIndexByte(to, '@')
	if i < 0 || !n.local.IsLocalDomain(to[i+1:]) {
		return false, nil
	}
	r, err := n.local.ResolveRecipient(to, "")
	if err != nil || len(r.Accounts) == 0 {
		n.log.Info("queue: the sender of a bounced message is not a mailbox here; no notice", "to", to)
		return true, nil
	}
	err = n.Mail.Deliver(ctx, r.Accounts, []byte("Return-Path: <>\r\n"), bytes.NewReader(msg), mailstore.MaxMessageSize(n.local.Setting)+1<<20)
	if _, full := err.(*mailstore.QuotaError); full {
		n.log.Info("queue: the sender's mailbox is full; the notice is dropped", "to", to)
		return true, nil
	}
	return true, err
}

// startQueue starts delivering this node's queue and, in a cluster, the
// takeover of gone nodes' queues while this node is the primary.
func (n *Node) startQueue(bg context.Context, live func() bool, members func(context.Context) ([]string, error), primary func() bool) error {
	n.outPool = outbound.NewPool()
	r := mailqueue.NewRunner(mailqueue.Config{Spool: n.queue.Spool, Node: n.config.NodeName, Hostname: n.config.SMTPHostname,
		Deliver: n.newDeliverer, Setting: n.local.Setting, Live: live, Local: n.deliverNotice, Log: n.log,
		Metrics: mailqueue.NewMetrics(n.metrics.reg)})
	if err := r.Start(); err != nil {
		return err
	}
	n.queue.Runner = r
	n.queueRunner = r
	if members == nil {
		return nil
	}
	t := &mailqueue.Takeover{Spool: n.queue.Spool, Self: n.config.NodeName, Setting: n.local.Setting, Log: n.log, Live: members,
		Moved: func(from string, moved int, to []string) {
			n.events.Record(mailcluster.ClusterEvent{Level: "warn", Event: mailcluster.EventQueueTakeover,
				Message: "the outbound queue of a gone node was handed to the live nodes",
				Fields:  map[string]string{"node": from, "messages": strconv.Itoa(moved), "to": strings.Join(to, ",")}})
		}}
	n.goBackground(func() { t.Run(bg, 2*time.Second, primary) })
	return nil
}

// consulMembers returns the nodes of the cluster that are alive now: those
// holding an election session, and those whose service instance passes
// its health check (a node that never becomes primary holds no session).
func consulMembers(client *consulapi.Client, clusterName string) func(context.Context) ([]string, error) {
	return func(ctx context.Context) ([]string, error) {
		var out []string
		sessions, _, err := client.Session().List((&consulapi.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return nil, err
		}
		prefix := "mailcluster-" + clusterName + "-"
		for _, s := range sessions {
			if name, ok := strings.CutPrefix(s.Name, prefix); ok {
				out = append(out, name)
			}
		}
		entries, _, err := client.Health().Service(cluster.ServiceName, "cluster-"+clusterName, true, (&consulapi.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if name := e.Service.Meta["node_name"]; name != "" {
				out = append(out, name)
			}
		}
		return out, nil
	}
}
