package service_test

import (
	"context"
	"testing"

	"mailcluster/schema"
	"mailcluster/service"
)

// TestDecodedCacheBounded: the cache of decoded records stays at its bound
// and, when full, drops the least recently used records, never all at
// once: a record read just before an overflow is still cached after it.
func TestDecodedCacheBounded(t *testing.T) {
	svc, st := MustOpenService(t, nil)
	ctx := service.SystemContext(context.Background(), "test")
	if _, err := svc.FindAccount(ctx, "localhost", "admin"); err != nil {
		t.Fatal(err)
	}
	kv, ok := st.Get(schema.Account("localhost", "admin"))
	if !ok {
		t.Fatal("no admin account")
	}
	if cached, _, _ := service.DecodedCached(svc, kv.Key, kv.ModifyIndex); !cached {
		t.Fatal("a read account is not cached")
	}
	_, n, bound := service.DecodedCached(svc, kv.Key, kv.ModifyIndex)
	service.FillDecodedCache(svc, bound-n) // full now
	if _, err := svc.FindAccount(ctx, "localhost", "admin"); err != nil {
		t.Fatal(err)
	}
	service.FillDecodedCache(svc, bound/2) // overflow
	cached, n, _ := service.DecodedCached(svc, kv.Key, kv.ModifyIndex)
	if n != bound {
		t.Errorf("the cache holds %d records after the overflow, want its bound %d", n, bound)
	}
	if !cached {
		t.Error("the record read just before the overflow left the cache: it was cleared, not trimmed")
	}
}
