package bench_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"mailcluster/internal/harness"
)

// readWorkers is the number of concurrent keep-alive connections of the
// read load.
const readWorkers = 16

// readRounds is the number of passes of each server in the reads
// section (see benchReads).
const readRounds = 2

// benchReads measures GET of one account on a secondary (REST and
// XML-API GetUserInfo) against a bare Echo handler, in its own process,
// that answers the same JSON from memory, all with the same client.
func benchReads(t *testing.T, c *Cluster, rec *recorder) {
	p := waitPrimary(t, c, 10*time.Second)
	primary, sec := c.Nodes[p], c.Nodes[c.Secondaries(p)[0]]
	mustDo(t, "POST", primary.BaseURL+"/api/v1/domains", `{"name":"read.example"}`, 201)
	mustDo(t, "POST", primary.BaseURL+"/api/v1/domains/read.example/accounts",
		`{"mailbox":"alice","password":"alice-pass-123","fullName":"Alice Example","firstName":"Alice","lastName":"Example"}`, 201)
	path := "/api/v1/domains/read.example/accounts/alice"
	var body string
	harness.Eventually(t, 5*time.Second, "account visible on the secondary", func() bool {
		code, b, _ := tryDo(pollClient, "GET", sec.BaseURL+path, "", "")
		body = b
		return code == 200
	})
	dur := loadDuration()

	get := func(url string) func(int64) (*http.Request, error) {
		return func(int64) (*http.Request, error) {
			req, err := http.NewRequest("GET", url, nil)
			if err == nil {
				req.SetBasicAuth(adminUser, adminPW)
			}
			return req, err
		}
	}
	xmlBody := `<?xml version="1.0" encoding="utf-8"?><MDaemon><API><Request><Operation>GetUserInfo</Operation>` +
		`<Parameters><Domain>read.example</Domain><Mailbox>alice</Mailbox></Parameters></Request></API></MDaemon>`
	postXML := func(url string) func(int64) (*http.Request, error) {
		return func(int64) (*http.Request, error) {
			req, err := http.NewRequest("POST", url, strings.NewReader(xmlBody))
			if err == nil {
				req.SetBasicAuth(adminUser, adminPW)
				req.Header.Set("Content-Type", "text/xml")
			}
			return req, err
		}
	}
	if code, out, err := tryDo(pollClient, "POST", sec.BaseURL+"/MdMgmtWS", "text/xml", xmlBody); err != nil || code != 200 ||
		!strings.Contains(out, `<Status id="0"`) || !strings.Contains(out, "alice") {
		t.Fatalf("GetUserInfo: %d %s %v", code, out, err)
	}

	// measure runs a warm-up second, then the timed load, each with a
	// fresh client of readWorkers connections, and keeps the best pass of
	// each server in best (with its CPU times per request, µs, of the
	// server and the load generator, in cpu).
	cpu := map[string][2]float64{}
	best := map[string]loadResult{}
	measure := func(what string, pid int, mk func(int64) (*http.Request, error)) {
		client := newLoadClient(readWorkers)
		defer client.CloseIdleConnections()
		op := httpOp(client, 200, mk)
		runLoad(readWorkers, time.Second, 0, op)
		stop := profile(t, pid, "reads-"+what)
		srv0, cli0 := cpuSeconds(pid), cpuSeconds(os.Getpid())
		r := runLoad(readWorkers, dur, 0, op)
		srv, cli := cpuSeconds(pid)-srv0, cpuSeconds(os.Getpid())-cli0
		stop()
		if err := errOK(r); err != nil {
			rec.fail(t, "%s: %v", what, err)
			return
		}
		c := [2]float64{srv / float64(r.N) * 1e6, cli / float64(r.N) * 1e6}
		t.Logf("%s: %d requests in %s, %.0f/s, p50 %.2f ms, p99 %.2f ms; CPU per request: server %.0f µs, load generator %.0f µs",
			what, r.N, r.Elapsed.Round(time.Millisecond), r.PerSec(), r.Pct(0.5), r.Pct(0.99), c[0], c[1])
		if b, ok := best[what]; !ok || r.PerSec() > b.PerSec() {
			best[what], cpu[what] = r, c
		}
	}

	// The servers take turns, readRounds passes each, the order reversed
	// every other round, so that a load on the machine that comes or goes
	// during the section does not fall on one of them only; the best
	// pass of each counts, as in the mail sections.
	bareURL, barePid := startBareEcho(t, body)
	passes := []func(){
		func() { measure("bare-echo", barePid, get(bareURL+path)) },
		func() { measure("REST", sec.Pid(), get(sec.BaseURL+path)) },
		func() { measure("XML-API", sec.Pid(), postXML(sec.BaseURL+"/MdMgmtWS")) },
	}
	for r := range readRounds {
		for i := range passes {
			if r%2 == 1 {
				i = len(passes) - 1 - i
			}
			passes[i]()
		}
	}
	bare, okBare := best["bare-echo"]
	rest, okREST := best["REST"]
	xml, okXML := best["XML-API"]

	conns := fmt.Sprintf(", %d conns", readWorkers)
	if okREST && okBare {
		tg := ratioAtLeast(0.7)
		rec.add("reads", "REST GET account on a secondary"+conns, rest.PerSec(), "req/s", bare.PerSec(), "bare Echo", &tg, rest.N,
			fmt.Sprintf("best of %d passes each, taking turns; CPU per request: node %.0f µs, bare Echo %.0f µs; load generator %.0f / %.0f µs (same 2 CPUs)",
				readRounds, cpu["REST"][0], cpu["bare-echo"][0], cpu["REST"][1], cpu["bare-echo"][1]))
		rec.add("reads", "REST GET account on a secondary, p99", rest.Pct(0.99), "ms", bare.Pct(0.99), "bare Echo", nil, rest.N, "")
	}
	if okXML && okREST {
		tg := ratioAtLeast(0.7)
		rec.add("reads", "XML-API GetUserInfo on a secondary"+conns, xml.PerSec(), "req/s", rest.PerSec(), "REST", &tg, xml.N,
			fmt.Sprintf("best of %d passes each, taking turns; CPU per request: node %.0f µs (REST %.0f µs)", readRounds, cpu["XML-API"][0], cpu["REST"][0]))
		rec.add("reads", "XML-API GetUserInfo on a secondary, p99", xml.Pct(0.99), "ms", rest.Pct(0.99), "REST", nil, xml.N, "")
	}
}

// startBareEcho starts the test binary as a bare Echo server (no
// middleware, no auth) that answers body on the account route, and
// returns its base URL and process id. It is stopped on cleanup.
func startBareEcho(t *testing.T, body string) (string, int) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	jsonPath := filepath.Join(t.TempDir(), "account.json")
	if err := os.WriteFile(jsonPath, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), roleEnv+"=bare-echo", "MAILCLUSTER_BENCH_JSON="+jsonPath)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
	}()
	select {
	case l := <-line:
		if u, ok := strings.CutPrefix(l, "listening "); ok {
			return u, cmd.Process.Pid
		}
		t.Fatalf("bare echo: %q", l)
	case <-time.After(10 * time.Second):
		t.Fatal("bare echo did not start")
	}
	return "", 0
}

// bareEcho is the baseline server process: the account route answering
// the JSON read from $MAILCLUSTER_BENCH_JSON from memory.
func bareEcho() int {
	body, err := os.ReadFile(os.Getenv("MAILCLUSTER_BENCH_JSON"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.GET("/api/v1/domains/:domain/accounts/:mailbox", func(c echo.Context) error {
		return c.JSONBlob(http.StatusOK, body)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("listening http://%s\n", ln.Addr())
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
