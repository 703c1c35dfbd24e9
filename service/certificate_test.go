package service_test

import (
	"context"
	"strings"
	"testing"

	"mailcluster"
	"mailcluster/internal/testcert"
	"mailcluster/service"
)

func TestImportCertificate(t *testing.T) {
	ctx := service.SystemContext(context.Background(), "test")
	svc, st := MustOpenService(t, nil, func(o *service.Options) { o.SealKey = mailcluster.SealKey("test-secret-0123456789") })
	a := testcert.New(testcert.Options{Names: []string{"a.example.test"}})
	b := testcert.New(testcert.Options{Names: []string{"b.example.test"}})
	ca, err := svc.ImportCertificate(ctx, "a", a.Chain, a.Key, false)
	if err != nil || !ca.Default || ca.SealedKey != "" {
		t.Fatalf("first import = %+v, %v", ca, err)
	}
	kv, _ := st.Get("certs/a")
	if strings.Contains(string(kv.Value), "PRIVATE KEY") || !strings.Contains(string(kv.Value), `"sealedKey"`) {
		t.Fatal("the stored record holds the key in the clear, or no sealed key")
	}
	stored := mustLocal(svc).StoredCertificates(true)
	key, err := mailcluster.UnsealCertificateKey(mailcluster.SealKey("test-secret-0123456789"), stored[0])
	if err != nil || string(key) != a.Key {
		t.Fatalf("unseal stored key: %v", err)
	}
	if _, err := svc.ImportCertificate(ctx, "b", b.Chain, b.Key, true); err != nil {
		t.Fatal(err)
	}
	list, _ := svc.Certificates(ctx)
	if len(list) != 2 || list[0].Default || !list[1].Default {
		t.Fatalf("default did not move to b: %+v", list)
	}
	_, err = svc.ImportCertificate(ctx, "Bad Name", a.Chain, a.Key, false)
	wantCode(t, err, mailcluster.EINVALID)
	wantCode(t, svc.DeleteCertificate(ctx, "zzz"), mailcluster.ENOTFOUND)
	if err := svc.DeleteCertificate(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	_, err = svc.Certificate(ctx, "a")
	wantCode(t, err, mailcluster.ENOTFOUND)
}
