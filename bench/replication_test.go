package bench_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
)

// benchReplication measures, as integration/bench_test.go does, the time
// from a write acknowledged by the primary (a domain create) until it is
// readable over HTTP on each secondary (each polled by its own goroutine,
// with a 100 µs pause between polls so that the pollers do not take the
// CPUs the nodes need). The baseline is Consul itself: the time from a raw KV
// transaction sent until two blocking queries on the prefix (one per
// "secondary", each with its own client) have seen it.
func benchReplication(t *testing.T, c *Cluster, rec *recorder) {
	const iterations = 300
	p := waitPrimary(t, c, 10*time.Second)
	primary := c.Nodes[p]
	secs := c.Secondaries(p)
	pclient := newLoadClient(1)
	sclients := make([]*http.Client, len(secs))
	for i := range secs {
		sclients[i] = newLoadClient(1)
	}
	fromAck := make([][]time.Duration, len(secs))
	var fromSend []time.Duration // until visible on every secondary
	stop := profile(t, c.Nodes[secs[0]].Pid(), "replication-secondary")
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; i < iterations && time.Now().Before(deadline); i++ {
		name := fmt.Sprintf("r%d.example", i)
		t0 := time.Now()
		code, out, err := tryDo(pclient, "POST", primary.BaseURL+"/api/v1/domains", "application/json", `{"name":"`+name+`"}`)
		if err != nil || code != 201 {
			rec.fail(t, "create %s: %d %s %v", name, code, out, err)
			return
		}
		ack := time.Now()
		var wg sync.WaitGroup
		seen := make([]time.Time, len(secs))
		for j, s := range secs {
			wg.Go(func() {
				url := c.Nodes[s].BaseURL + "/api/v1/domains/" + name
				for time.Since(ack) < 5*time.Second {
					if code, _, _ := tryDo(sclients[j], "GET", url, "", ""); code == 200 {
						seen[j] = time.Now()
						return
					}
					time.Sleep(100 * time.Microsecond) // leave the 2 CPUs of a small box to the nodes
				}
			})
		}
		wg.Wait()
		var last time.Time
		for j := range secs {
			if seen[j].IsZero() {
				rec.fail(t, "%s not on n%d within 5s", name, secs[j])
				return
			}
			fromAck[j] = append(fromAck[j], seen[j].Sub(ack))
			if seen[j].After(last) {
				last = seen[j]
			}
		}
		fromSend = append(fromSend, last.Sub(t0))
	}
	stop()
	raw, err := rawReplication(c.Consul.Addr, "bench-rawrepl-"+c.Name, len(secs), len(fromSend), false)
	if err != nil {
		rec.fail(t, "raw consul watch: %v", err)
		return
	}
	tg := atMost(20, "ms")
	for j, s := range secs {
		lat := fromAck[j]
		name := fmt.Sprintf("replication ack -> visible on secondary n%d", s)
		rec.add("replication", name+", p50", pct(lat, 0.5), "ms", -1, "", nil, len(lat), "")
		rec.add("replication", name+", p99", pct(lat, 0.99), "ms", -1, "", nil, len(lat), "")
		rec.add("replication", name+", max", maxMS(lat), "ms", -1, "", nil, len(lat), "")
	}
	note := "baseline: raw Consul txn sent until blocking queries of 2 clients saw it"
	rec.add("replication", "write sent -> visible on every secondary, p50", pct(fromSend, 0.5), "ms", pct(raw, 0.5), "raw Consul watch", nil, len(fromSend), note)
	// The goal is on what a client sees: from its send, not from the
	// primary's acknowledgement (which already includes the primary's own
	// apply), next to what a raw Consul watch achieves.
	rec.add("replication", "write sent -> visible on every secondary, p99", pct(fromSend, 0.99), "ms", pct(raw, 0.99), "raw Consul watch", &tg, len(fromSend), note)
}

// rawReplication returns, for n writes, the time from a Consul txn sent
// until `watchers` blocking queries have all seen it: queries of the
// prefix (a List), or with oneKey of the one key every write sets (a Get).
func rawReplication(addr, prefix string, watchers, n int, oneKey bool) ([]time.Duration, error) {
	prefix += "/"
	writer, err := consulapi.NewClient(&consulapi.Config{Address: addr})
	if err != nil {
		return nil, err
	}
	initKey := prefix + "init"
	if oneKey {
		initKey = prefix + "k"
	}
	if _, err := writer.KV().Put(&consulapi.KVPair{Key: initKey, Value: []byte("x")}, nil); err != nil {
		return nil, err
	}
	stop := make(chan struct{})
	defer close(stop)
	seen := make([]chan uint64, watchers)
	for w := range watchers {
		seen[w] = make(chan uint64, 1024)
		client, err := consulapi.NewClient(&consulapi.Config{Address: addr})
		if err != nil {
			return nil, err
		}
		go func() {
			var idx uint64
			for {
				select {
				case <-stop:
					return
				default:
				}
				q := &consulapi.QueryOptions{WaitIndex: idx, WaitTime: 2 * time.Second}
				var meta *consulapi.QueryMeta
				var err error
				if oneKey {
					_, meta, err = client.KV().Get(prefix+"k", q)
				} else {
					_, meta, err = client.KV().List(prefix, q)
				}
				if err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				if meta.LastIndex != idx {
					idx = meta.LastIndex
					select {
					case seen[w] <- idx:
					default:
					}
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond) // let the watchers block
	var lat []time.Duration
	last := make([]uint64, watchers) // the last index each watcher reported
	for i := range n {
		t0 := time.Now()
		key := fmt.Sprintf("%sk%d", prefix, i)
		if oneKey {
			key = prefix + "k"
		}
		// A value of its own: Consul keeps the index of a set that changes nothing.
		ok, resp, _, err := writer.Txn().Txn(consulapi.TxnOps{{KV: &consulapi.KVTxnOp{Verb: consulapi.KVSet,
			Key: key, Value: fmt.Appendf(nil, `{"name":"x%06d.example"}`, i)}}}, nil)
		if err != nil || !ok {
			return nil, fmt.Errorf("txn: %v %v", ok, err)
		}
		idx := resp.Results[0].KV.ModifyIndex
		for w := range watchers {
			timeout := time.After(5 * time.Second)
			for last[w] < idx {
				select {
				case last[w] = <-seen[w]:
				case <-timeout:
					return nil, fmt.Errorf("watcher %d did not see index %d within 5s", w, idx)
				}
			}
		}
		lat = append(lat, time.Since(t0))
	}
	return lat, nil
}
