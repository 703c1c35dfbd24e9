package integration_test

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"mailcluster/internal/harness"
)

// metricSample is one series of a /metrics scrape.
type metricSample struct {
	name   string
	labels map[string]string
	value  float64
}

// metricSamples is a parsed /metrics scrape.
type metricSamples []metricSample

// scrapeMetrics reads a node's /metrics without credentials and parses
// the text exposition format (comment lines skipped).
func scrapeMetrics(t testing.TB, n *Node) metricSamples {
	t.Helper()
	code, body := do(t, "GET", n.BaseURL+"/metrics", "", "", "", "")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	var out metricSamples
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s, err := parseMetricLine(line)
		if err != nil {
			t.Fatalf("/metrics: %v", err)
		}
		out = append(out, s)
	}
	return out
}

// parseMetricLine parses `name{k="v",...} value` or `name value`.
func parseMetricLine(line string) (metricSample, error) {
	s := metricSample{labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return s, fmt.Errorf("malformed line %q", line)
	}
	s.name = line[:i]
	rest := line[i:]
	if strings.HasPrefix(rest, "{") {
		rest = rest[1:]
		for !strings.HasPrefix(rest, "}") {
			k, after, ok := strings.Cut(rest, `="`)
			if !ok {
				return s, fmt.Errorf("malformed labels in %q", line)
			}
			var v strings.Builder
			i := 0
			for ; i < len(after) && after[i] != '"'; i++ {
				if after[i] == '\\' && i+1 < len(after) {
					i++
				}
				v.WriteByte(after[i])
			}
			if i == len(after) {
				return s, fmt.Errorf("unterminated label value in %q", line)
			}
			s.labels[strings.TrimPrefix(k, ",")] = v.String()
			rest = after[i+1:]
		}
		rest = rest[1:]
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return s, fmt.Errorf("no value in %q", line)
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return s, fmt.Errorf("value in %q: %w", line, err)
	}
	s.value = v
	return s, nil
}

// find returns the series of name whose labels include the given
// key-value pairs.
func (ms metricSamples) find(name string, kv ...string) []metricSample {
	var out []metricSample
next:
	for _, s := range ms {
		if s.name != name {
			continue
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if s.labels[kv[i]] != kv[i+1] {
				continue next
			}
		}
		out = append(out, s)
	}
	return out
}

// value returns the value of the one series of name with those labels;
// it fails the test when there is none or more than one.
func (ms metricSamples) value(t testing.TB, name string, kv ...string) float64 {
	t.Helper()
	found := ms.find(name, kv...)
	if len(found) != 1 {
		t.Fatalf("%s%v: %d series, want 1", name, kv, len(found))
	}
	return found[0].value
}

// TestMetricsStandalone drives every kind of traffic through a standalone
// node and checks what /metrics (served without credentials) reports.
func TestMetricsStandalone(t *testing.T) {
	n := StartNode(t, t.TempDir(), adminEnv)

	// REST: two creations, a list, a 404 on a pattern route, an unknown URL.
	if code, body := admin(t, n, "POST", "/api/v1/domains", `{"name":"example.com"}`); code != 201 {
		t.Fatalf("create domain: %d %s", code, body)
	}
	for _, mb := range []string{"alice", "bob"} {
		if code, body := admin(t, n, "POST", "/api/v1/domains/example.com/accounts", `{"mailbox":"`+mb+`","password":"`+mb+`-pass-123"}`); code != 201 {
			t.Fatalf("create account %s: %d %s", mb, code, body)
		}
	}
	if code, body := admin(t, n, "GET", "/api/v1/domains", ""); code != 200 {
		t.Fatalf("list domains: %d %s", code, body)
	}
	if code, _ := admin(t, n, "GET", "/api/v1/domains/nope.example", ""); code != 404 {
		t.Fatalf("missing domain: %d", code)
	}
	if code, _ := admin(t, n, "GET", "/no/such/secret-path", ""); code != 404 {
		t.Fatalf("unknown URL: %d", code)
	}

	// XML-API: one operation that succeeds, one that is not supported.
	envelope := func(op string) string {
		return `<?xml version="1.0" encoding="utf-8"?><MDaemon><API><Request version="20.0" echo="0" verbose="0"><Operation>` + op +
			`</Operation><Parameters/></Request></API></MDaemon>`
	}
	if code, body := admin(t, n, "POST", "/MdMgmtWS", envelope("GetDomainList")); code != 200 || !strings.Contains(body, `id="0"`) {
		t.Fatalf("XML GetDomainList: %d %s", code, body)
	}
	if code, body := admin(t, n, "POST", "/MdMgmtWS", envelope("NoSuchOperation")); code != 200 || !strings.Contains(body, `id="1"`) {
		t.Fatalf("XML unknown operation: %d %s", code, body)
	}

	// SMTP: one delivery, one 550 (no such user).
	if err := sendGo(n.SMTP, "alice@example.com", "metrics", "count me"); err != nil {
		t.Fatal(err)
	}
	err := sendGo(n.SMTP, "nobody@example.com", "metrics", "refuse me")
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 {
		t.Fatalf("mail to an unknown user: %v, want 550", err)
	}

	// Screening: an administrator freezes bob; five wrong passwords from
	// one address get it blocked (IPFailures is 5 by default).
	if code, body := admin(t, n, "POST", "/api/v1/screening/accounts", `{"address":"bob@example.com","reason":"metrics test"}`); code != 201 {
		t.Fatalf("freeze bob: %d %s", code, body)
	}
	const attacker = "127.0.0.9"
	for i := range 5 {
		code, _, err := fromIP(attacker, "GET", n.BaseURL+"/api/v1/domains", "admin@localhost", fmt.Sprintf("guess-%d-xyz", i))
		if err != nil || code != 401 {
			t.Fatalf("failed login %d: %d %v", i, code, err)
		}
	}
	eventually(t, waitTimeout, "the attacker blocked", func() bool {
		code, _, _ := fromIP(attacker, "GET", n.BaseURL+"/api/v1/domains", "admin@localhost", adminPW)
		return code == 403
	})

	ms := scrapeMetrics(t, n)
	for _, c := range []struct {
		name string
		kv   []string
		want float64
	}{
		{"mailcluster_role", []string{"role", "primary"}, 1},
		{"mailcluster_role", []string{"role", "secondary"}, 0},
		{"mailcluster_elections_total", nil, 0},
		{"mailcluster_replication_lag_seconds", nil, 0},
		{"mailcluster_watch_errors_total", []string{"watch", "state"}, 0},
		{"mailcluster_http_requests_total", []string{"route", "/api/v1/domains", "method", "POST", "status", "201"}, 1},
		{"mailcluster_http_requests_total", []string{"route", "/api/v1/domains/:domain/accounts", "method", "POST", "status", "201"}, 2},
		{"mailcluster_http_requests_total", []string{"route", "/api/v1/domains/:domain", "method", "GET", "status", "404"}, 1},
		{"mailcluster_http_requests_total", []string{"route", "unmatched", "method", "GET", "status", "404"}, 1},
		{"mailcluster_http_requests_total", []string{"route", "/api/v1/domains", "method", "GET", "status", "401"}, 5},
		{"mailcluster_http_requests_total", []string{"route", "/MdMgmtWS", "method", "POST", "status", "200"}, 2},
		{"mailcluster_xmlapi_operations_total", []string{"operation", "GetDomainList", "status", "0"}, 1},
		{"mailcluster_xmlapi_operations_total", []string{"operation", "unknown", "status", "1"}, 1},
		{"mailcluster_smtp_sessions_total", []string{"listener", "inbound"}, 2},
		{"mailcluster_smtp_sessions_total", []string{"listener", "submission"}, 0},
		{"mailcluster_smtp_deliveries_total", nil, 1},
		{"mailcluster_smtp_rejections_total", []string{"code", "550"}, 1},
		{"mailcluster_screening_blocks_total", nil, 1},
		{"mailcluster_screening_freezes_total", []string{"source", "admin"}, 1},
		{"mailcluster_screening_freezes_total", []string{"source", "auto"}, 0},
	} {
		if got := ms.value(t, c.name, c.kv...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.kv, got, c.want)
		}
	}
	// At least one successful list (more while waiting for the block).
	if got := ms.value(t, "mailcluster_http_requests_total", "route", "/api/v1/domains", "method", "GET", "status", "200"); got < 1 {
		t.Errorf("GET /api/v1/domains 200 = %v, want >= 1", got)
	}
	if got := ms.value(t, "mailcluster_http_request_duration_seconds_count", "route", "/api/v1/domains", "method", "POST"); got != 1 {
		t.Errorf("duration observations of POST /api/v1/domains = %v, want 1", got)
	}
	if got := ms.value(t, "mailcluster_replication_index"); got <= 0 {
		t.Errorf("replication index = %v, want > 0", got)
	}
	if got := ms.value(t, "mailcluster_primary_seconds_total"); got <= 0 {
		t.Errorf("primary seconds = %v, want > 0", got)
	}
	// Labels are bounded: no requested URL, address or operation text.
	for _, s := range ms {
		for k, v := range s.labels {
			if strings.Contains(v, "example") || strings.Contains(v, "secret-path") || strings.Contains(v, "NoSuch") || strings.Contains(v, attacker) {
				t.Errorf("%s has the label %s=%q", s.name, k, v)
			}
		}
	}
}

// TestMetricsCluster checks the role and replication metrics of a
// two-node cluster.
func TestMetricsCluster(t *testing.T) {
	c := StartCluster(t, harness.SharedConsul(t), 2, nil)
	p := c.WaitPrimary(10 * time.Second)
	s := c.Secondaries(p)[0]
	if code, body := admin(t, c.Nodes[p], "POST", "/api/v1/domains", `{"name":"metrics.example"}`); code != 201 {
		t.Fatalf("create domain: %d %s", code, body)
	}
	pm := scrapeMetrics(t, c.Nodes[p])
	if got := pm.value(t, "mailcluster_role", "role", "primary"); got != 1 {
		t.Errorf("primary: role primary = %v", got)
	}
	if got := pm.value(t, "mailcluster_elections_total"); got < 1 {
		t.Errorf("primary: elections = %v, want >= 1", got)
	}
	if got := pm.value(t, "mailcluster_primary_seconds_total"); got <= 0 {
		t.Errorf("primary: primary seconds = %v, want > 0", got)
	}
	if got := pm.value(t, "mailcluster_replication_lag_seconds"); got != 0 {
		t.Errorf("primary: lag = %v, want 0", got)
	}
	pm.value(t, "mailcluster_watch_errors_total", "watch", "state")
	pm.value(t, "mailcluster_watch_errors_total", "watch", "election")
	index := pm.value(t, "mailcluster_replication_index")
	if index <= 0 {
		t.Fatalf("primary: replication index = %v", index)
	}

	// The secondary applies the write: its index reaches the primary's.
	eventually(t, waitTimeout, "secondary's index", func() bool {
		return scrapeMetrics(t, c.Nodes[s]).value(t, "mailcluster_replication_index") >= index
	})
	sm := scrapeMetrics(t, c.Nodes[s])
	if got := sm.value(t, "mailcluster_role", "role", "secondary"); got != 1 {
		t.Errorf("secondary: role secondary = %v", got)
	}
	if got := sm.value(t, "mailcluster_role", "role", "primary"); got != 0 {
		t.Errorf("secondary: role primary = %v", got)
	}
	if got := sm.value(t, "mailcluster_replication_lag_seconds"); got != 0 {
		t.Errorf("secondary: lag = %v, want 0", got)
	}
}
