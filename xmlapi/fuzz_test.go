package xmlapi_test

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/beevik/etree"

	"mailcluster"
	"mailcluster/kvstore"
	"mailcluster/service"
	"mailcluster/xmlapi"
)

// fuzzSeeds are request bodies for FuzzRequest besides testdata/fuzz: one
// per operation, and the hostile shapes of TestMalformed. None changes or
// blocks the administrator the fuzzer authenticates as.
var fuzzSeeds = []string{
	Envelope("GetVersionInfo", ""),
	Envelope("GetDomainList", "<Get><Users/></Get>"),
	Envelope("GetDomainInfo", "<Domain>example.com</Domain>"),
	Envelope("CreateDomain", "<Domain>new.example</Domain><Description>New</Description><MaxAccounts>5</MaxAccounts>"),
	Envelope("UpdateDomain", "<Domain>example.com</Domain><MaxAccounts>1000</MaxAccounts>"),
	Envelope("DeleteDomain", "<Domain>gone.example</Domain><Force>Yes</Force>"),
	Envelope("GetUserInfo", "<Domain>example.com</Domain><Mailbox>alice</Mailbox><Get><Details/></Get>"),
	Envelope("CreateUser", "<Domain>example.com</Domain><Mailbox>bob</Mailbox><Details><Password>secret-pass-bob</Password>"+
		"<FullName>Bob</FullName><QuotaBytes>1000</QuotaBytes><AdminRights>none</AdminRights></Details>"),
	Envelope("UpdateUser", "<Domain>example.com</Domain><Mailbox>alice</Mailbox><Details><Frozen>No</Frozen><Disabled>0</Disabled></Details>"),
	Envelope("DeleteUser", "<Domain>example.com</Domain><Mailbox>carol</Mailbox><RemoveMailbox>Yes</RemoveMailbox>"),
	Envelope("GetIniSettings", "<File>mailcluster</File><Section>Passwords</Section>"),
	Envelope("UpdateIniSettings", `<File>custom</File><Section name="S"><Key name="K">v</Key><Key name="D" delete="Yes"/></Section>`),
	Envelope("GetDynamicScreening", "<Get><All/></Get>"),
	Envelope("BlockIP", "<IP>203.0.113.7</IP><Minutes>60</Minutes><Reason>abuse</Reason>"),
	Envelope("UnblockIP", "<IP>203.0.113.7</IP>"),
	Envelope("FreezeAccount", "<Domain>example.com</Domain><Mailbox>alice</Mailbox><Reason>phished</Reason>"),
	Envelope("ThawAccount", "<Domain>example.com</Domain><Mailbox>alice</Mailbox>"),
	Envelope("ImportCertificate", "<Name>mail</Name><Certificate>-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----</Certificate>"+
		"<PrivateKey>-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----</PrivateKey><Default>Yes</Default>"),
	Envelope("GetCertificates", ""),
	Envelope("DeleteCertificate", "<Name>mail</Name>"),
	Envelope("GetClusterInfo", ""),
	Envelope("AddClusterNode", "<Node>node2</Node>"),
	Envelope("RemoveClusterNode", "<Node>node2</Node>"),
	Envelope("GetClusterLog", "<Level>warn</Level><Limit>50</Limit><Since>2025-01-01T00:00:00Z</Since>"),
	Envelope("CreateAlias", "<Domain>example.com</Domain><Alias>sales</Alias><Target>alice@example.com</Target>"),
	Envelope("UpdateAlias", "<Alias>sales@example.com</Alias><Target>alice@example.com</Target>"),
	Envelope("GetAliasList", "<Domain>example.com</Domain>"),
	Envelope("DeleteAlias", "<Domain>example.com</Domain><Alias>gone</Alias>"),
	Envelope("CreateGroup", "<Domain>example.com</Domain><Group>team</Group><QuotaBytes>1000</QuotaBytes><Members><Member>alice</Member></Members>"),
	Envelope("UpdateGroup", `<Domain>example.com</Domain><Group>team</Group><Members><Member action="remove">alice</Member></Members>`),
	Envelope("GetGroupInfo", "<Domain>example.com</Domain><Group>team</Group>"),
	Envelope("GetGroupList", "<Domain>example.com</Domain>"),
	Envelope("DeleteGroup", "<Domain>example.com</Domain><Group>gone</Group>"),
	Envelope("CreateList", `<Domain>example.com</Domain><ListName>staff</ListName><Policy>anyone</Policy><ReplyTo>list</ReplyTo>`+
		`<Members><Member>alice@example.com</Member><Member group="team"/></Members>`),
	Envelope("UpdateList", `<List>staff@example.com</List><Owner>alice@example.com</Owner><Members><Member action="delete">alice@example.com</Member></Members>`),
	Envelope("GetListInfo", "<List>staff@example.com</List>"),
	Envelope("GetListList", "<Domain>example.com</Domain>"),
	Envelope("DeleteList", "<Domain>example.com</Domain><ListName>gone</ListName>"),
	Envelope("UpdateUser", `<Domain>example.com</Domain><Mailbox>alice</Mailbox><Aliases><Alias>al</Alias></Aliases>`+
		`<ListMembership><List>staff</List></ListMembership><GroupMembership><Group action="remove">team</Group></GroupMembership>`),
	EnvelopeAttrs(`version="2" echo="1"`, "GetDomainInfo", "<Domain>example.com</Domain>"),
	`<MDaemon><API><Request><Operation>GetVersionInfo</Operation></Request></API></MDaemon>`,
	``,
	`<MDaemon/>`,
	`<?xml version="1.0" encoding="ISO-8859-1"?><MDaemon/>`,
	`<?xml version="1.0"?><!DOCTYPE MDaemon [<!ENTITY x SYSTEM "file:///etc/passwd">]><MDaemon>&x;</MDaemon>`,
	`<MDaemon><API><Request><Operation>&lt;&amp;&#x41;&#0;</Operation></Request></API></MDaemon>`,
	`<MDaemon><API><Request><Operation><![CDATA[GetVersionInfo]]></Operation><!-- c --><?pi x?></Request></API></MDaemon>`,
	"<MDaemon><API><Request><Operation>GetVersionInfo\xff</Operation></Request></API></MDaemon>",
	`<x:MDaemon xmlns:x="urn:x"><API/></x:MDaemon>`,
	strings.Repeat("<a>", 70) + strings.Repeat("</a>", 70),
}

// openFuzzEnv returns an XML-API handler over a bootstrapped standalone
// primary that logs nowhere (a fuzzer makes millions of requests).
func openFuzzEnv(tb testing.TB) *xmlapi.Handler {
	tb.Helper()
	log := slog.New(slog.DiscardHandler)
	store, err := kvstore.OpenBoltStore(filepath.Join(tb.TempDir(), "state.db"), log)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	svc := service.New(store, mailcluster.StaticLeadership{Self: mailcluster.PrimaryRef{Name: primaryName, APIURL: primaryURL}}, log, primaryOptions())
	ctx := service.SystemContext(context.Background(), "test")
	if _, err := svc.Bootstrap(ctx, mailcluster.BootstrapConfig{AdminAddress: adminAddr, AdminPassword: adminPass, DataDir: tb.TempDir()}); err != nil {
		tb.Fatal(err)
	}
	if _, err := svc.CreateDomain(ctx, &mailcluster.Domain{Name: "example.com"}); err != nil {
		tb.Fatal(err)
	}
	if _, err := svc.CreateAccount(ctx, mailcluster.AccountCreate{Domain: "example.com", Mailbox: "alice", Password: "secret-pass-alice"}); err != nil {
		tb.Fatal(err)
	}
	h := xmlapi.NewHandler(svc, log)
	h.MaxBodyBytes = 64 << 10
	return h
}

// FuzzRequest posts arbitrary bodies, as the administrator, through the
// XML-API handler. Whatever the body, the handler must not panic and must
// answer a well-formed XML document with exactly one documented <Status>,
// the HTTP status of the status table (or 200 once the operation ran), a
// <Result> only on success, never an internal error, and never a
// password hash (unless the body itself carried the marker).
func FuzzRequest(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	h := openFuzzEnv(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/MdMgmtWS", bytes.NewReader(body))
		req.Header.Set("Content-Type", "text/xml")
		req.SetBasicAuth(adminAddr, adminPass)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkAnswer(t, body, rec)
	})
}

// checkAnswer checks what every XML-API answer must satisfy.
func checkAnswer(t *testing.T, body []byte, rec *httptest.ResponseRecorder) {
	t.Helper()
	out := rec.Body.Bytes()
	if ct := rec.Header().Get("Content-Type"); ct != xmlapi.ContentType {
		t.Fatalf("body %q: Content-Type %q\n%s", body, ct, out)
	}
	// encoding/xml's strict decoder: the whole answer is well-formed.
	dec := xml.NewDecoder(bytes.NewReader(out))
	for {
		_, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("body %q: the answer is not well-formed XML: %v\n%s", body, err, out)
		}
	}
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(out); err != nil {
		t.Fatalf("body %q: answer does not parse: %v\n%s", body, err, out)
	}
	sts := doc.FindElements("/MDaemon/API/Response/Status")
	if len(sts) != 1 {
		t.Fatalf("body %q: %d Status elements\n%s", body, len(sts), out)
	}
	id, err := strconv.Atoi(sts[0].SelectAttrValue("id", ""))
	want, known := wantStatus[id]
	if err != nil || !known {
		t.Fatalf("body %q: Status id %q is not documented\n%s", body, sts[0].SelectAttrValue("id", ""), out)
	}
	if v := sts[0].SelectAttrValue("value", ""); v != want.value {
		t.Fatalf("body %q: Status id %d value %q, want %q", body, id, v, want.value)
	}
	if rec.Code != want.http && rec.Code != http.StatusOK {
		t.Fatalf("body %q: status id %d with HTTP %d", body, id, rec.Code)
	}
	if id == xmlapi.StatusInternal {
		t.Fatalf("body %q: internal error (an input error the service did not classify)\n%s", body, out)
	}
	if res := doc.FindElement("/MDaemon/API/Response/Result"); (res != nil) != (id == xmlapi.StatusOK) {
		t.Fatalf("body %q: status id %d with Result %v\n%s", body, id, res != nil, out)
	}
	for _, marker := range []string{"$2a$", "$2b$", "$2y$"} {
		if bytes.Contains(out, []byte(marker)) && !bytes.Contains(body, []byte(marker)) {
			t.Fatalf("body %q: the answer contains %q\n%s", body, marker, out)
		}
	}
}
