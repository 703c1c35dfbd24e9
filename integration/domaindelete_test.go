package integration_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"mailcluster"
	"mailcluster/internal/harness"
)

// TestDeleteLargeDomain deletes a domain of 300 accounts (one Consul
// transaction holds 128 operations: the old single-transaction deletion
// was refused above about 60 accounts) in one REST call on a one-node
// cluster, and finds it gone on the node and in the cluster log.
func TestDeleteLargeDomain(t *testing.T) {
	const accounts = 300
	c := StartCluster(t, harness.SharedConsul(t), 1, nil)
	p := c.WaitPrimary(30 * time.Second)
	n, name := c.Nodes[p], fmt.Sprintf("n%d", p)
	api := n.BaseURL + "/api/v1/domains"
	if code, body := do(t, "POST", api, harness.AdminUser, adminPW, "application/json", `{"name":"big.example"}`); code != 201 {
		t.Fatalf("create domain: %d %s", code, body)
	}
	// Accounts through the API, 8 at a time, imported with a bcrypt hash
	// so that the server runs no bcrypt.
	hash, err := bcrypt.GenerateFromPassword([]byte("user-pass-1"), 10)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				// A create that meets a re-election (503, 403) is sent
				// again; one that had committed then answers 409.
				var code int
				var body string
				var err error
				for try := 0; try < 20; try++ {
					code, body, err = tryDo("POST", api+"/big.example/accounts", harness.AdminUser, adminPW, "application/json",
						fmt.Sprintf(`{"mailbox":"user%03d","passwordHash":%q}`, i, hash))
					if err == nil && code != 503 && code != 403 {
						break
					}
					time.Sleep(250 * time.Millisecond)
				}
				if err != nil || (code != 201 && (code != 409 || i == 0)) {
					if failed.Add(1) == 1 {
						t.Errorf("create account %d: %d %s %v", i, code, body, err)
					}
				}
			}
		}()
	}
	for i := range accounts {
		next <- i
	}
	close(next)
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d account creates failed", failed.Load())
	}
	var d struct {
		AccountCount int `json:"accountCount"`
	}
	code, body := do(t, "GET", api+"/big.example", harness.AdminUser, adminPW, "", "")
	if err := json.Unmarshal([]byte(body), &d); code != 200 || err != nil || d.AccountCount != accounts {
		t.Fatalf("domain before the deletion: %d %s", code, body)
	}

	if code, body := do(t, "DELETE", api+"/big.example?force=true", harness.AdminUser, adminPW, "", ""); code != 204 {
		t.Fatalf("delete domain: %d %s", code, body)
	}
	if code, body := do(t, "GET", api+"/big.example", harness.AdminUser, adminPW, "", ""); code != 404 {
		t.Fatalf("domain after the deletion: %d %s", code, body)
	}
	if code, body := do(t, "GET", api+"/big.example/accounts", harness.AdminUser, adminPW, "", ""); code != 404 {
		t.Fatalf("accounts after the deletion: %d %s", code, body)
	}
	started := awaitEvent(t, n, name, mailcluster.EventDomainDeleteStarted, fieldIs("domain", "big.example"))
	if started.Fields["accounts"] != fmt.Sprint(accounts) || started.Fields["by"] != harness.AdminUser {
		t.Errorf("started: %+v", started)
	}
	finished := awaitEvent(t, n, name, mailcluster.EventDomainDeleteFinished, fieldIs("domain", "big.example"))
	if finished.Fields["accounts"] != fmt.Sprint(accounts) {
		t.Errorf("finished: %+v", finished)
	}
	if _, ok := findEvent(t, n, name, mailcluster.EventDomainDeleteFailed, nil); ok {
		t.Errorf("a failure was recorded:\n%s", n.Events(30))
	}
}
