package xmlapi_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailcluster"
	"mailcluster/xmlapi"
)

// getUserInfoBody is the request of the reads section of the bench
// (bench/reads_test.go): GetUserInfo of one account, every section.
const getUserInfoBody = `<?xml version="1.0" encoding="utf-8"?><MDaemon><API><Request><Operation>GetUserInfo</Operation>` +
	`<Parameters><Domain>read.example</Domain><Mailbox>alice</Mailbox></Parameters></Request></API></MDaemon>`

// BenchmarkGetUserInfo measures the handler's cost per GetUserInfo over
// real HTTP on loopback with keep-alive connections, authentication
// included (after the first login, the service's recent-success check),
// with a node's default log level (Info: reads are not logged).
func BenchmarkGetUserInfo(b *testing.B) {
	e := MustOpenEnv(b)
	e.MustCreateDomain(b, "read.example")
	e.MustCreateAccount(b, mailcluster.AccountCreate{Domain: "read.example", Mailbox: "alice",
		FullName: "Alice Example", FirstName: "Alice", LastName: "Example"})
	e.Log = slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	_, url := e.Serve(b, e.Svc)
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	b.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	post := func() ([]byte, error) {
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(getUserInfoBody))
		if err != nil {
			return nil, err
		}
		req.SetBasicAuth(adminAddr, adminPass)
		req.Header.Set("Content-Type", "text/xml")
		res, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer res.Body.Close()
		out, err := io.ReadAll(res.Body)
		if err == nil && (res.StatusCode != http.StatusOK || !bytes.Contains(out, []byte(`<Status id="0"`))) {
			b.Errorf("GetUserInfo: HTTP %d\n%s", res.StatusCode, out)
		}
		return out, err
	}
	if out, err := post(); err != nil {
		b.Fatal(err)
	} else if !bytes.Contains(out, []byte("<Email>alice@read.example</Email>")) {
		b.Fatalf("GetUserInfo answered without the account:\n%s", out)
	}
	b.ReportAllocs()
	cpu0 := processCPU(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := post(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	// CPU time per request of the whole process (server and client),
	// steadier than ns/op on a shared machine.
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// processCPU returns the user and system CPU time of this process.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkGetUserInfoHandler is BenchmarkGetUserInfo without the
// network: the handler's own cost (authentication, decoding, the service's
// reads, the answer), serially, into a recorder.
func BenchmarkGetUserInfoHandler(b *testing.B) {
	e := MustOpenEnv(b)
	e.MustCreateDomain(b, "read.example")
	e.MustCreateAccount(b, mailcluster.AccountCreate{Domain: "read.example", Mailbox: "alice",
		FullName: "Alice Example", FirstName: "Alice", LastName: "Example"})
	h := xmlapi.NewHandler(e.Svc, slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})))
	serve := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/MdMgmtWS", strings.NewReader(getUserInfoBody))
		req.SetBasicAuth(adminAddr, adminPass)
		req.Header.Set("Content-Type", "text/xml")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	if rec := serve(); rec.Code != http.StatusOK || !bytes.Contains(rec.Body.Bytes(), []byte("<Email>alice@read.example</Email>")) {
		b.Fatalf("GetUserInfo: HTTP %d\n%s", rec.Code, rec.Body)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if rec := serve(); rec.Code != http.StatusOK {
			b.Fatalf("GetUserInfo: HTTP %d\n%s", rec.Code, rec.Body)
		}
	}
}
