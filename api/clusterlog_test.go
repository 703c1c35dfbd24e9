package api_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"mailcluster/clusterlog"

	"mailcluster"
)

// clusterLog is the JSON form of GET /api/v1/cluster/log.
type clusterLog struct {
	Entries []struct {
		Time    time.Time         `json:"time"`
		Level   string            `json:"level"`
		Event   string            `json:"event"`
		Node    string            `json:"node"`
		Message string            `json:"message"`
		Fields  map[string]string `json:"fields"`
	} `json:"entries"`
}

// events returns the event names of the log at path.
func events(t *testing.T, c *Client, path string) []string {
	t.Helper()
	var l clusterLog
	c.Get(t, path).Expect(t, http.StatusOK).JSON(t, &l)
	out := []string{}
	for _, e := range l.Entries {
		out = append(out, e.Event)
	}
	return out
}

func TestClusterLog(t *testing.T) {
	t.Run("NoLog", func(t *testing.T) {
		res := MustOpenEnv(t).Admin.Get(t, "/api/v1/cluster/log").Expect(t, http.StatusOK)
		if string(res.Body) != `{"entries":[]}`+"\n" {
			t.Errorf("body %q", res.Body)
		}
	})

	var l *clusterlog.File
	c := MustOpenEnv(t, WithClusterLog(&l)).Admin
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	l.Record(mailcluster.ClusterEvent{Time: t0, Event: "join", Message: "node2 joined", Fields: map[string]string{"node": "node2"}})
	l.Record(mailcluster.ClusterEvent{Time: t0.Add(time.Minute), Level: "warn", Event: "clock-warning",
		Message: "clock differs from the primary's by 1500 ms (more than 1 s)",
		Fields:  map[string]string{"node": "node2", "offset_ms": "1500", "zone": "UTC"}})
	l.Record(mailcluster.ClusterEvent{Time: t0.Add(2 * time.Minute), Level: "error", Event: "registration-refused",
		Message: "Node node4 runs version 9.9.9.", Fields: map[string]string{"node": "node4"}})
	l.Record(mailcluster.ClusterEvent{Time: t0.Add(3 * time.Minute), Event: "election", Message: "node1 is primary"})

	t.Run("All", func(t *testing.T) {
		res := c.Get(t, "/api/v1/cluster/log").Expect(t, http.StatusOK)
		var got clusterLog
		res.JSON(t, &got)
		if len(got.Entries) != 4 {
			t.Fatalf("entries %+v", got.Entries)
		}
		e := got.Entries[1]
		if !e.Time.Equal(t0.Add(time.Minute)) || e.Level != "warn" || e.Event != "clock-warning" || e.Node != "node1" ||
			!strings.Contains(e.Message, "1500 ms") || e.Fields["offset_ms"] != "1500" || len(e.Fields) != 3 {
			t.Errorf("entry = %+v", e)
		}
		if e := got.Entries[0]; e.Level != "info" || e.Node != "node1" {
			t.Errorf("defaults not filled in: %+v", e)
		}
		if e := got.Entries[3]; e.Fields == nil || len(e.Fields) != 0 {
			t.Errorf("fields of an event without any: %+v", e)
		}
		if !strings.Contains(string(res.Body), `"fields":{}`) {
			t.Errorf("fields is not an empty object: %s", res.Body)
		}
		if !strings.Contains(string(res.Body), `"time":"2030-01-02T03:04:05Z"`) {
			t.Errorf("time is not RFC 3339 UTC: %s", res.Body)
		}
	})
	for _, tc := range []struct {
		name, query string
		want        []string
	}{
		{"Since", "since=2030-01-02T03:05:05Z", []string{"clock-warning", "registration-refused", "election"}},
		{"SinceOffset", "since=" + url.QueryEscape("2030-01-02T05:06:05+02:00"), []string{"registration-refused", "election"}},
		{"SinceFuture", "since=2031-01-01T00:00:00Z", []string{}},
		{"LevelInfo", "level=info", []string{"join", "clock-warning", "registration-refused", "election"}},
		{"LevelWarn", "level=warn", []string{"clock-warning", "registration-refused"}},
		{"LevelError", "level=error", []string{"registration-refused"}},
		{"Limit", "limit=2", []string{"registration-refused", "election"}},
		{"LimitMax", "limit=1000", []string{"join", "clock-warning", "registration-refused", "election"}},
		{"Combined", "level=warn&limit=1&since=2030-01-02T03:04:05Z", []string{"registration-refused"}},
		{"OwnNode", "node=node1&limit=1", []string{"election"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := events(t, c, "/api/v1/cluster/log?"+tc.query); !slices.Equal(got, tc.want) {
				t.Errorf("events %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("ErrUnknownNode", func(t *testing.T) {
		p := c.Get(t, "/api/v1/cluster/log?node=node9").ExpectProblem(t, http.StatusNotFound, "not-found")
		if !strings.Contains(p.Detail, "node9") {
			t.Errorf("detail %q", p.Detail)
		}
	})
	for _, tc := range []struct {
		name, query, detail string
		invalid             bool
	}{
		{"ErrSince", "since=yesterday", "since", false},
		{"ErrSinceDate", "since=2030-01-02", "since", false},
		{"ErrLevel", "level=debug", "Level", true},
		{"ErrLevelCase", "level=WARN", "Level", true},
		{"ErrLimitZero", "limit=0", "limit", true},
		{"ErrLimitNegative", "limit=-1", "limit", true},
		{"ErrLimitLarge", "limit=1001", "limit", true},
		{"ErrLimitWord", "limit=ten", "limit", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := c.Do(t, Request{Method: http.MethodGet, Path: "/api/v1/cluster/log?" + tc.query, Invalid: tc.invalid}).
				ExpectProblem(t, http.StatusBadRequest, "invalid")
			if !strings.Contains(p.Detail, tc.detail) {
				t.Errorf("detail %q does not name %s", p.Detail, tc.detail)
			}
		})
	}
}
