package xmlapi_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"mailcluster/xmlapi"
)

// operationRecorder records what Handler.OnOperation was given.
type operationRecorder struct {
	mu  sync.Mutex
	got []string
}

func (r *operationRecorder) record(op string, status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, op+" "+strconv.Itoa(status))
}

func (r *operationRecorder) Get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func TestOnOperation(t *testing.T) {
	e := MustOpenEnv(t)
	rec := &operationRecorder{}
	h := xmlapi.NewHandler(e.Svc, e.Log)
	h.OnOperation = rec.record
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	post := func(user, pass, body string) {
		t.Helper()
		Post(t, srv.URL, user, pass, strings.NewReader(body))
	}
	post(adminAddr, adminPass, Envelope("GetDomainList", ""))
	post(adminAddr, adminPass, Envelope("GetDomainInfo", "<Domain>nope.example</Domain>"))
	post(adminAddr, adminPass, Envelope("NoSuchOperation-"+strings.Repeat("x", 40), ""))
	post(adminAddr, "wrong-password", Envelope("GetDomainList", ""))
	post(adminAddr, adminPass, "<MDaemon><API>")
	req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	do(t, req)

	want := []string{
		"GetDomainList 0",
		"GetDomainInfo 4",
		xmlapi.OperationUnknown + " 1", // never the client's operation name
		xmlapi.OperationNone + " 8",
		xmlapi.OperationNone + " 10",
		xmlapi.OperationNone + " 13",
	}
	if got := rec.Get(); !slices.Equal(got, want) {
		t.Errorf("OnOperation calls:\n got %q\nwant %q", got, want)
	}
}
