package service_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"mailcluster"
	"mailcluster/service"
)

// TestLimitsAtTheirEdges: each documented limit admits its largest (or
// smallest) value and refuses the next one.
func TestLimitsAtTheirEdges(t *testing.T) {
	ctx := service.SystemContext(context.Background(), "test")
	svc, _ := MustOpenService(t, nil)
	if _, err := svc.CreateDomain(ctx, &mailcluster.Domain{Name: "example.com"}); err != nil {
		t.Fatal(err)
	}
	root := mustLocal(svc).Setting(mailcluster.SectionDirectories, mailcluster.KeyMailboxRoot, "")
	min := mailcluster.DefaultMinPasswordLength
	sendAs := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("s%d@example.com", i))
		}
		return out
	}
	n := 0
	create := func(in mailcluster.AccountCreate) error {
		n++
		in.Domain, in.Mailbox = "example.com", fmt.Sprintf("u%d", n)
		if in.Password == "" {
			in.Password = "long-enough-1"
		}
		_, err := svc.CreateAccount(ctx, in)
		return err
	}
	for _, tc := range []struct {
		name     string
		ok, over mailcluster.AccountCreate
	}{
		{"PasswordMinLength", mailcluster.AccountCreate{Password: strings.Repeat("p", min)}, mailcluster.AccountCreate{Password: strings.Repeat("p", min-1)}},
		{"PasswordMaxLength", mailcluster.AccountCreate{Password: strings.Repeat("p", 72)}, mailcluster.AccountCreate{Password: strings.Repeat("p", 73)}},
		{"FullName", mailcluster.AccountCreate{FullName: strings.Repeat("n", 256)}, mailcluster.AccountCreate{FullName: strings.Repeat("n", 257)}},
		{"SendAs", mailcluster.AccountCreate{SendAs: sendAs(service.MaxSendAs)}, mailcluster.AccountCreate{SendAs: sendAs(service.MaxSendAs + 1)}},
		{"MailboxPath", mailcluster.AccountCreate{MailboxPath: root + "/" + strings.Repeat("d", 1024-len(root)-1)},
			mailcluster.AccountCreate{MailboxPath: root + "/" + strings.Repeat("d", 1024-len(root))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := create(tc.ok); err != nil {
				t.Fatalf("at the limit: %v", err)
			}
			wantCode(t, create(tc.over), mailcluster.EINVALID)
		})
	}
	t.Run("PageLimit", func(t *testing.T) {
		for _, limit := range []int{1, 1000} {
			if _, _, err := svc.FindAccounts(ctx, mailcluster.AccountFilter{Domain: "example.com", Limit: limit}); err != nil {
				t.Fatalf("limit %d: %v", limit, err)
			}
		}
		for _, limit := range []int{-1, 1001} {
			_, _, err := svc.FindAccounts(ctx, mailcluster.AccountFilter{Domain: "example.com", Limit: limit})
			wantCode(t, err, mailcluster.EINVALID)
		}
	})
}
