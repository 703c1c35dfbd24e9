package xmlapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"mailcluster"
	"mailcluster/schema"
	"mailcluster/service"
	"mailcluster/xmlapi"
)

// consulSized refuses transactions of more than 128 operations, as
// Consul does.
type consulSized struct{ mailcluster.Store }

func (c consulSized) Txn(ctx context.Context, ops []mailcluster.Op) (uint64, error) {
	if len(ops) > 128 {
		return 0, mailcluster.Errorf(mailcluster.ETOOLARGE, "A change of %d records is more than one transaction may hold.", len(ops))
	}
	return c.Store.Txn(ctx, ops)
}

// fillDomain creates domain with n accounts written straight into the
// store, each with a usage record.
func fillDomain(t *testing.T, e *Env, domain string, n int) {
	t.Helper()
	e.MustCreateDomain(t, domain)
	var ops []mailcluster.Op
	for i := range n {
		a := mailcluster.Account{Domain: domain, Mailbox: fmt.Sprintf("user%04d", i), PasswordHash: "$2a$04$notarealhash"}
		b, _ := json.Marshal(a)
		ops = append(ops, mailcluster.Op{Verb: mailcluster.OpSet, Key: schema.Account(domain, a.Mailbox), Value: b},
			mailcluster.Op{Verb: mailcluster.OpSet, Key: schema.Usage(domain, a.Mailbox), Value: []byte(`{}`)})
	}
	if _, err := e.Store.Txn(context.Background(), ops); err != nil {
		t.Fatal(err)
	}
}

// TestDeleteDomainLarge deletes a domain of 300 accounts in one call
// through a store with Consul's transaction limit, and shows a domain
// being deleted.
func TestDeleteDomainLarge(t *testing.T) {
	e := MustOpenEnv(t)
	svc := service.New(consulSized{e.Store}, mailcluster.StaticLeadership{Self: mailcluster.PrimaryRef{Name: primaryName, APIURL: primaryURL}},
		e.Log, service.Options{})
	_, url := e.Serve(t, svc)

	t.Run("OK", func(t *testing.T) {
		fillDomain(t, e, "big.example", 300)
		CallAt(t, url, "DeleteDomain", "<Domain>big.example</Domain><Force>Yes</Force>").MustOK(t)
		CallAt(t, url, "GetDomainInfo", "<Domain>big.example</Domain>").MustStatus(t, xmlapi.StatusNotFound)
		if n := e.Store.Count(schema.AccountPrefix("big.example")) + e.Store.Count(schema.UsagePrefix("big.example")); n != 0 {
			t.Fatalf("%d records of the domain are left", n)
		}
	})
	t.Run("InProgress", func(t *testing.T) {
		fillDomain(t, e, "half.example", 300)
		// The state a deletion that stopped on the way leaves.
		kv, _ := e.Store.Get(schema.Domain("half.example"))
		var rec mailcluster.Domain
		_ = json.Unmarshal(kv.Value, &rec)
		since := time.Date(2026, 12, 2, 5, 30, 0, 0, time.UTC)
		rec.Deleting = &mailcluster.DomainDeletion{Since: since, By: adminAddr, Accounts: 300}
		b, _ := json.Marshal(rec)
		if _, err := e.Store.Txn(context.Background(), []mailcluster.Op{{Verb: mailcluster.OpSet, Key: kv.Key, Value: b}}); err != nil {
			t.Fatal(err)
		}
		r := CallAt(t, url, "GetDomainInfo", "<Domain>half.example</Domain>").MustOK(t)
		del := r.Result().FindElement("Domain/Deleting")
		if del == nil || del.SelectAttrValue("since", "") != "2026-12-02T05:30:00Z" || del.SelectAttrValue("by", "") != adminAddr ||
			del.SelectAttrValue("accounts", "") != "300" {
			t.Fatalf("no deletion shown:\n%s", r.Body)
		}
		r = CallAt(t, url, "GetDomainList", "<Get><Users/></Get>").MustOK(t)
		for _, d := range r.Result().FindElements("Domains/Domain") {
			deleting := d.SelectElement("Deleting") != nil
			if (d.SelectAttrValue("id", "") == "half.example") != deleting {
				t.Errorf("domain %s listed with deleting %v:\n%s", d.SelectAttrValue("id", ""), deleting, r.Body)
			}
			if deleting && len(d.FindElements("Users/User")) != 0 {
				t.Errorf("users of a domain being deleted listed")
			}
		}
		CallAt(t, url, "CreateUser", "<Domain>half.example</Domain><Mailbox>new</Mailbox><Details><Password>new-pass-123</Password></Details>").
			MustStatus(t, xmlapi.StatusConflict)
		CallAt(t, url, "DeleteDomain", "<Domain>half.example</Domain><Force>Yes</Force>").MustOK(t)
		CallAt(t, url, "GetDomainInfo", "<Domain>half.example</Domain>").MustStatus(t, xmlapi.StatusNotFound)
		if n := e.Store.Count(schema.AccountPrefix("half.example")); n != 0 {
			t.Fatalf("%d accounts are left", n)
		}
	})
}
