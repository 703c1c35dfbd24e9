package xmlapi_test

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"mailcluster"
	"mailcluster/xmlapi"
)

// elapsed is the et attribute, the one part of an answer that changes
// from one call to the next.
var elapsed = regexp.MustCompile(` et="[0-9.]+"`)

// TestRequestCache sends every seed request twice: a read (without a
// secret) is kept after the first, the second answer is the first, and
// the kept tree is still what decoding the body gives after both calls
// (no handler changed it); writes and malformed requests are not kept.
func TestRequestCache(t *testing.T) {
	e := MustOpenEnv(t)
	e.MustCreateDomain(t, "example.com")
	e.MustCreateAccount(t, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "alice", FullName: "Alice"})
	kept := 0
	for _, body := range fuzzSeeds {
		first := Post(t, e.URL, adminAddr, adminPass, strings.NewReader(body))
		second := Post(t, e.URL, adminAddr, adminPass, strings.NewReader(body))
		cached, fresh, op, ok := e.Handler.CachedRequest(body)
		write, known := xmlapi.WriteOperations[op]
		wantKept := fresh != "" && known && !write
		if ok != wantKept {
			t.Errorf("kept=%v, want %v for %s", ok, wantKept, body)
			continue
		}
		if !ok {
			continue
		}
		kept++
		if cached != fresh {
			t.Errorf("the kept request changed:\n%s\nwant\n%s", cached, fresh)
		}
		if a, b := elapsed.ReplaceAllString(first.Body, ""), elapsed.ReplaceAllString(second.Body, ""); a != b {
			t.Errorf("second answer differs for %s:\n%s\nfirst\n%s", body, b, a)
		}
	}
	if kept < 10 {
		t.Fatalf("only %d requests kept", kept)
	}
}

// TestRequestCacheKeepsNoSecret: a read that carries a password (a
// client's mistake) is answered but not kept.
func TestRequestCacheKeepsNoSecret(t *testing.T) {
	e := MustOpenEnv(t)
	for _, params := range []string{"<Password>secret-pass-x</Password>", "<Details><passwordhash>h</passwordhash></Details>",
		"<X><PrivateKey>k</PrivateKey></X>"} {
		body := Envelope("GetVersionInfo", params)
		e.Call(t, "GetVersionInfo", params).MustOK(t)
		if _, _, _, ok := e.Handler.CachedRequest(body); ok {
			t.Errorf("kept a request with a secret: %s", params)
		}
	}
	body := Envelope("GetVersionInfo", "<Other>x</Other>")
	e.Call(t, "GetVersionInfo", "<Other>x</Other>").MustOK(t)
	if _, _, _, ok := e.Handler.CachedRequest(body); !ok {
		t.Error("a read without a secret was not kept")
	}
}

// TestRequestCacheBounded: ever new bodies never keep more than the bound.
func TestRequestCacheBounded(t *testing.T) {
	e := MustOpenEnv(t)
	for i := range 300 {
		e.Call(t, "GetVersionInfo", "<N>"+strconv.Itoa(i)+"</N>").MustOK(t)
		if n := e.Handler.CachedRequests(); n > 256 || n < 1 {
			t.Fatalf("%d requests kept after %d", n, i+1)
		}
	}
}
