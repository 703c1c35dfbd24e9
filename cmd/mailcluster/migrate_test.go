package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestMigrateUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		password string
		args     []string
		want     string
	}{
		{"NoTo", "secret-pass", nil, "--to NEWROOT is required"},
		{"RelativeTo", "secret-pass", []string{"--to", "rel/dir"}, "absolute path"},
		{"DotDot", "secret-pass", []string{"--to", "/a/..b"}, "without '..'"},
		{"Root", "secret-pass", []string{"--to", "/"}, "file system root"},
		{"NoPassword", "", []string{"--to", "/srv/new"}, "MAILCLUSTER_ADMIN_PASSWORD"},
		{"BadURL", "secret-pass", []string{"--to", "/srv/new", "--url", "127.0.0.1:8080"}, "--url"},
		{"ExtraArgs", "secret-pass", []string{"--to", "/srv/new", "extra"}, "no arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("MAILCLUSTER_ADMIN_PASSWORD", tc.password)
			var out, errOut bytes.Buffer
			code := run(context.Background(), append([]string{"migrate-mailboxes"}, tc.args...), &out, &errOut)
			if code != 2 || !strings.Contains(errOut.String(), tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, errOut.String(), tc.want)
			}
		})
	}
}
