// Package bench_test measures mailcluster's performance figures side by
// side with their baselines in one run and writes them to results.json:
// reads on a secondary against a bare Echo handler, the XML-API against
// REST, writes against raw Consul transactions of the same size and
// account creates against a bare bcrypt loop, replication latency,
// failover times, inbound SMTP throughput against a private Postfix
// delivering into Maildirs (smtp-sink as the ceiling) and IMAP APPEND
// against Dovecot, relaying to an smtp-sink against a private Postfix
// relaying the same load, a cluster loaded through the REST API to 100,000 accounts (write and replication
// latency, RSS, catch-up, bytes read from Consul per write), a
// failed-login storm against one of its secondaries, how soon an IMAP
// client idling on one node sees mail delivered through another, and
// IMAP reads of a large INBOX against Dovecot serving the same Maildir.
//
// It runs only with MAILCLUSTER_BENCH=1 (`make bench`); otherwise TestBench
// is skipped at once, so `go test ./...` does not run it. Every load is on
// loopback and bounded in time and count.
//
// Knobs (environment): MAILCLUSTER_BENCH_DURATION (one load run, default
// 5s), MAILCLUSTER_BENCH_TRIALS (failover trials per mode, default 10),
// MAILCLUSTER_BENCH_ACCOUNTS (scale test, default 100000),
// MAILCLUSTER_BENCH_STORM (the failed-login storm, default 30s),
// MAILCLUSTER_BENCH_SMTP_N (messages of one inbound SMTP pass, default
// 4000), MAILCLUSTER_BENCH_APPEND_N (messages of one IMAP APPEND pass,
// default 1000), MAILCLUSTER_BENCH_IMAP_N (messages of the IMAP
// notice figure, default 200), MAILCLUSTER_BENCH_IMAP_MESSAGES (messages
// of the INBOX read against Dovecot, default 12000), MAILCLUSTER_BENCH_RELAY_N (messages
// of one relay pass, default 2000), MAILCLUSTER_BENCH_RELAY_DUMP (a
// directory where the relay figure's sinks keep every message),
// MAILCLUSTER_BENCH_NODE_ENV (KEY=VALUE pairs added to every node's
// environment, e.g. GOMEMLIMIT=150MiB), MAILCLUSTER_BENCH_PROFILE (a
// directory: CPU profiles of the nodes under each load, taken with Linux
// perf), MAILCLUSTER_CONSUL_BIN (the Consul agent).
package bench_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"mailcluster/internal/harness"
)

// roleEnv makes the test binary serve as a baseline instead of testing
// (see bareEcho).
const roleEnv = "MAILCLUSTER_BENCH_ROLE"

func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) == "bare-echo" {
		os.Exit(bareEcho())
	}
	if os.Getenv("MAILCLUSTER_BENCH") == "" {
		os.Exit(m.Run()) // TestBench skips
	}
	if _, err := harness.Build(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	harness.Close()
	os.Exit(code)
}

// TestBench runs every figure. Sections are subtests, so one that fails
// does not stop the others; the table shows what was measured.
func TestBench(t *testing.T) {
	if os.Getenv("MAILCLUSTER_BENCH") == "" {
		t.Skip("set MAILCLUSTER_BENCH=1 (make bench) to run the benchmarks")
	}
	rec := &recorder{Started: time.Now(), Machine: machineInfo(), Env: envOverrides()}
	defer func() {
		rec.Seconds = math.Round(time.Since(rec.Started).Seconds())
		rec.Machine["loadavg_end"] = loadavg()
		rec.print(os.Stdout)
		// A run of some sections (-run) is recorded too, but beside the
		// full record rather than over it.
		path := "results.json"
		if rec.Partial = len(rec.Sections) < 4; rec.Partial {
			path = "results-partial.json"
		}
		if err := rec.write(path); err != nil {
			t.Error(err)
		}
		t.Logf("results written to bench/%s", path)
	}()
	// Each section starts with no dirty data of the one before (the
	// mail the SMTP section wrote and removed, written back during the
	// next section, shows up in its latencies).
	ran := func(section string) {
		syscall.Sync()
		rec.mu.Lock()
		rec.Sections = append(rec.Sections, section)
		rec.mu.Unlock()
	}
	t.Run("cluster", func(t *testing.T) {
		ran("cluster")
		consul := harness.OwnConsul(t)
		rec.mu.Lock()
		rec.Machine["consul"] = "Consul " + consul.Version() + " (dev agent, state in memory)"
		rec.mu.Unlock()
		c := StartCluster(t, consul, "bench", 3)
		// Writes last: they add thousands of keys.
		t.Run("reads", func(t *testing.T) { benchReads(t, c, rec) })
		t.Run("replication", func(t *testing.T) { benchReplication(t, c, rec) })
		t.Run("failover", func(t *testing.T) { benchFailover(t, c, rec) })
		t.Run("writes", func(t *testing.T) { benchWrites(t, c, rec) })
	})
	t.Run("smtp", func(t *testing.T) {
		ran("smtp")
		t.Run("inbound", func(t *testing.T) { benchSMTP(t, rec) })
		t.Run("append", func(t *testing.T) { benchAppend(t, rec) })
	})
	t.Run("relay", func(t *testing.T) { ran("relay"); benchRelay(t, rec) })
	t.Run("scale", func(t *testing.T) { ran("scale"); benchScale(t, rec) })
	t.Run("imap", func(t *testing.T) {
		ran("imap")
		t.Run("notify", func(t *testing.T) { benchIMAPNotify(t, rec) })
		t.Run("dovecot", func(t *testing.T) { benchIMAPDovecot(t, rec) })
	})
}

// ---- knobs ----

func loadDuration() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("MAILCLUSTER_BENCH_DURATION")); err == nil && d > 0 {
		return min(d, time.Minute)
	}
	return 5 * time.Second
}

func envInt(name string, def, lo, hi int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return max(lo, min(hi, n))
	}
	return def
}

// ---- results ----

// Row is one figure of the table and of results.json.
type Row struct {
	Section  string   `json:"section"`
	Figure   string   `json:"figure"`
	Value    float64  `json:"value"`
	Unit     string   `json:"unit"`
	Baseline *float64 `json:"baseline,omitempty"`
	// BaselineName says what the baseline is.
	BaselineName string   `json:"baselineName,omitempty"`
	Ratio        *float64 `json:"ratio,omitempty"` // value / baseline
	Target       string   `json:"target,omitempty"`
	Met          *bool    `json:"met,omitempty"`
	Samples      int      `json:"samples,omitempty"`
	Note         string   `json:"note,omitempty"`
}

// target is a goal a Row is checked against.
type target struct {
	text string
	met  func(value, ratio float64) bool
}

func ratioAtLeast(x float64) target {
	return target{fmt.Sprintf("ratio >= %g", x), func(_, r float64) bool { return r >= x }}
}

func atMost(x float64, unit string) target {
	return target{fmt.Sprintf("<= %g %s", x, unit), func(v, _ float64) bool { return v <= x }}
}

// recorder collects the rows of a run.
type recorder struct {
	mu      sync.Mutex
	Started time.Time         `json:"started"`
	Seconds float64           `json:"durationSeconds"`
	Machine map[string]string `json:"machine"`
	// Env holds every environment setting of the run that changes what is
	// measured (the bench knobs, and Go runtime settings of the runner and
	// of the nodes), so that a figure is never read without them.
	Env map[string]string `json:"env"`
	// Sections lists the sections that ran; Partial is set when some did
	// not (such a run is written to results-partial.json).
	Sections []string `json:"sections"`
	Partial  bool     `json:"partial"`
	Rows     []Row    `json:"rows"`
	Errors   []string `json:"errors,omitempty"`
}

// add records a figure; baseline < 0 means none; tg may be nil.
func (r *recorder) add(section, figure string, value float64, unit string, baseline float64, baselineName string, tg *target, samples int, note string) {
	row := Row{Section: section, Figure: figure, Value: round(value), Unit: unit, BaselineName: baselineName, Samples: samples, Note: note}
	ratio := math.NaN()
	if baseline >= 0 {
		b := round(baseline)
		row.Baseline = &b
		if baseline > 0 {
			ratio = value / baseline
			rr := math.Round(ratio*1000) / 1000
			row.Ratio = &rr
		}
	}
	if tg != nil {
		row.Target = tg.text
		met := tg.met(value, ratio)
		row.Met = &met
	}
	r.mu.Lock()
	r.Rows = append(r.Rows, row)
	r.mu.Unlock()
}

// fail records that a section could not measure something.
func (r *recorder) fail(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.Errors = append(r.Errors, t.Name()+": "+msg)
	r.mu.Unlock()
	t.Error(msg)
}

func round(v float64) float64 {
	switch a := math.Abs(v); {
	case a >= 100:
		return math.Round(v)
	case a >= 1:
		return math.Round(v*100) / 100
	default:
		return math.Round(v*10000) / 10000
	}
}

func fmtNum(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}

// print writes the table (Markdown, so that it can go into the README).
func (r *recorder) print(w *os.File) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(w, "\nmailcluster benchmarks, %s; %s CPUs (%s), %s, %s, %s; took %.0f s; load average %s at the start, %s at the end\n\n",
		r.Started.Format("2006-01-02 15:04 MST"), r.Machine["nproc"], r.Machine["cpu"], r.Machine["memory"], r.Machine["go"], r.Machine["consul"],
		r.Seconds, r.Machine["loadavg_start"], r.Machine["loadavg_end"])
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "| figure\t| value\t| baseline\t| ratio\t| target\t| met?\t|")
	fmt.Fprintln(tw, "| ---\t| ---\t| ---\t| ---\t| ---\t| ---\t|")
	for _, row := range r.Rows {
		base, ratio, met := "-", "-", "-"
		if row.Baseline != nil {
			base = fmtNum(*row.Baseline) + " " + row.Unit + " (" + row.BaselineName + ")"
		}
		if row.Ratio != nil {
			ratio = fmtNum(*row.Ratio)
		}
		if row.Met != nil {
			met = map[bool]string{true: "yes", false: "**no**"}[*row.Met]
		}
		tg := row.Target
		if tg == "" {
			tg = "-"
		}
		fmt.Fprintf(tw, "| %s\t| %s %s\t| %s\t| %s\t| %s\t| %s\t|\n", row.Figure, fmtNum(row.Value), row.Unit, base, ratio, tg, met)
	}
	tw.Flush()
	for _, e := range r.Errors {
		fmt.Fprintln(w, "NOT MEASURED:", e)
	}
	if len(r.Env) > 0 {
		fmt.Fprintln(w, "environment:", r.Env)
	}
	goals, met := 0, 0
	for _, row := range r.Rows {
		if row.Met != nil {
			goals++
			if *row.Met {
				met++
			}
		}
	}
	fmt.Fprintf(w, "%d of %d goals met\n\n", met, goals)
}

// envOverrides returns the environment settings that change a run: every
// MAILCLUSTER_BENCH_* knob (MAILCLUSTER_BENCH_NODE_ENV holds what the
// nodes get, e.g. GOMEMLIMIT) and the Go runtime settings of this process.
func envOverrides() map[string]string {
	out := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case k == "MAILCLUSTER_BENCH":
		case strings.HasPrefix(k, "MAILCLUSTER_BENCH_"), k == "GOGC", k == "GOMEMLIMIT", k == "GOMAXPROCS", k == "GODEBUG":
			out[k] = v
		}
	}
	return out
}

func (r *recorder) write(path string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// machineInfo describes where the figures were measured.
func machineInfo() map[string]string {
	m := map[string]string{
		"nproc":      strconv.Itoa(runtime.NumCPU()),
		"gomaxprocs": strconv.Itoa(runtime.GOMAXPROCS(0)),
		"go":         runtime.Version(),
		"os":         runtime.GOOS + "/" + runtime.GOARCH,
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m["cpu"] = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	m["loadavg_start"] = loadavg()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m["kernel"] = strings.TrimSpace(string(b))
	}
	if mb, err := procMeminfo("MemTotal"); err == nil {
		m["memory"] = fmt.Sprintf("%.0f GiB RAM", mb/1024)
	}
	return m
}

func procMeminfo(key string) (float64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, key+":"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				kb, err := strconv.ParseFloat(f[0], 64)
				return kb / 1024, err
			}
		}
	}
	return 0, fmt.Errorf("no %s in /proc/meminfo", key)
}

// loadavg returns the 1, 5 and 15 minute load averages: other work on the
// machine during a run shows there.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
