package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"mailcluster"
	"mailcluster/schema"
)

// consulLimits is a store that refuses transactions of more than 128
// operations as Consul does, and fails every transaction while down.
type consulLimits struct {
	mailcluster.Store
	mu   sync.Mutex
	down bool
}

func (c *consulLimits) Txn(ctx context.Context, ops []mailcluster.Op) (uint64, error) {
	c.mu.Lock()
	down := c.down
	c.mu.Unlock()
	if down {
		return 0, mailcluster.Errorf(mailcluster.EUNAVAILABLE, "The store cannot be reached.")
	}
	if len(ops) > 128 {
		return 0, mailcluster.Errorf(mailcluster.ETOOLARGE, "A change of %d records is more than one transaction may hold.", len(ops))
	}
	return c.Store.Txn(ctx, ops)
}

func (c *consulLimits) setDown(down bool) {
	c.mu.Lock()
	c.down = down
	c.mu.Unlock()
}

// mustFillDomain creates domain with n accounts (each with a usage
// record) written straight into the store.
func mustFillDomain(t *testing.T, env *Env, domain string, n int) {
	t.Helper()
	env.Admin.MustCreateDomain(t, domain)
	var ops []mailcluster.Op
	for i := range n {
		a := mailcluster.Account{Domain: domain, Mailbox: fmt.Sprintf("user%04d", i), PasswordHash: "$2a$04$notarealhash",
			MailboxPath: "/srv/mc/" + domain + "/" + fmt.Sprint(i)}
		b, _ := json.Marshal(a)
		ops = append(ops, mailcluster.Op{Verb: mailcluster.OpSet, Key: schema.Account(domain, a.Mailbox), Value: b},
			mailcluster.Op{Verb: mailcluster.OpSet, Key: schema.Usage(domain, a.Mailbox), Value: []byte(`{"bytes":1,"messages":1}`)})
	}
	if _, err := env.Store.Txn(context.Background(), ops); err != nil {
		t.Fatal(err)
	}
}

// TestDomainDeleteLarge deletes domains far above the 128 operations of
// one Consul transaction through a store that enforces that limit.
func TestDomainDeleteLarge(t *testing.T) {
	var limits *consulLimits
	env := MustOpenEnv(t, WithFaultyStore(func(st mailcluster.Store) mailcluster.Store {
		limits = &consulLimits{Store: st}
		return limits
	}))
	c := env.Admin

	t.Run("OK", func(t *testing.T) {
		mustFillDomain(t, env, "big.example", 300)
		c.Delete(t, "/api/v1/domains/big.example?force=true").Expect(t, http.StatusNoContent)
		c.Get(t, "/api/v1/domains/big.example").ExpectProblem(t, http.StatusNotFound, "not-found")
		if n := env.Store.Count(schema.AccountPrefix("big.example")) + env.Store.Count(schema.UsagePrefix("big.example")); n != 0 {
			t.Fatalf("%d records of the domain are left", n)
		}
	})
	t.Run("InProgress", func(t *testing.T) {
		mustFillDomain(t, env, "half.example", 300)
		limits.setDown(true)
		// The mark is refused too: nothing changes, the domain stays in service.
		c.Delete(t, "/api/v1/domains/half.example?force=true").ExpectProblem(t, http.StatusServiceUnavailable, "unavailable")
		var d struct {
			Domain
			Deleting *struct {
				Since    time.Time `json:"since"`
				By       string    `json:"by"`
				Accounts int       `json:"accounts"`
			} `json:"deleting"`
		}
		c.Get(t, "/api/v1/domains/half.example").Expect(t, http.StatusOK).JSON(t, &d)
		if d.Deleting != nil {
			t.Fatalf("a refused deletion marked the domain: %+v", d.Deleting)
		}
		// Marked by hand as a stopped deletion leaves it.
		kv, _ := env.Store.Get(schema.Domain("half.example"))
		var rec mailcluster.Domain
		_ = json.Unmarshal(kv.Value, &rec)
		rec.Deleting = &mailcluster.DomainDeletion{Since: time.Now().UTC(), By: adminAddress, Accounts: 300}
		b, _ := json.Marshal(rec)
		if _, err := env.Store.Txn(context.Background(), []mailcluster.Op{{Verb: mailcluster.OpSet, Key: kv.Key, Value: b}}); err != nil {
			t.Fatal(err)
		}
		c.Get(t, "/api/v1/domains/half.example").Expect(t, http.StatusOK).JSON(t, &d)
		if d.Deleting == nil || d.Deleting.By != adminAddress || d.Deleting.Accounts != 300 || d.AccountCount != 300 {
			t.Fatalf("domain being deleted: %+v %+v", d.Domain, d.Deleting)
		}
		var l struct {
			Domains []struct {
				Name     string    `json:"name"`
				Deleting *struct{} `json:"deleting"`
			} `json:"domains"`
		}
		c.Get(t, "/api/v1/domains").Expect(t, http.StatusOK).JSON(t, &l)
		for _, d := range l.Domains {
			if (d.Name == "half.example") != (d.Deleting != nil) {
				t.Errorf("listed %s with deleting %v", d.Name, d.Deleting)
			}
		}
		limits.setDown(false)
		c.Secret("new-pass-123")
		c.Send(t, http.MethodPost, "/api/v1/domains/half.example/accounts", map[string]any{"mailbox": "new", "password": "new-pass-123"}).
			ExpectProblem(t, http.StatusConflict, "conflict")
		c.Send(t, http.MethodPatch, "/api/v1/domains/half.example", map[string]any{"description": "x"}).
			ExpectProblem(t, http.StatusConflict, "conflict")
		// Asking again resumes it and answers once it is done.
		c.Delete(t, "/api/v1/domains/half.example?force=true").Expect(t, http.StatusNoContent)
		c.Get(t, "/api/v1/domains/half.example").ExpectProblem(t, http.StatusNotFound, "not-found")
		if n := env.Store.Count(schema.AccountPrefix("half.example")); n != 0 {
			t.Fatalf("%d accounts are left", n)
		}
	})
}
