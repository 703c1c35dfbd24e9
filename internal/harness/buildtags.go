package harness

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BinaryWithTags builds the mailcluster binary with the build tags tags
// (for example "clockskew", which adds test-only flags) into a temporary
// directory of tb, removed when tb ends, and returns its path; set it as
// ClusterOptions.Bin or Process.Bin. The build is bounded to 5 minutes; a
// build error fails the test.
func BinaryWithTags(tb testing.TB, tags ...string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := filepath.Join(tb.TempDir(), "mailcluster-"+strings.Join(tags, "-"))
	out, err := exec.CommandContext(ctx, "go", "build", "-tags", strings.Join(tags, ","), "-o", bin, binPackage).CombinedOutput()
	if err != nil {
		tb.Fatalf("harness: building mailcluster with tags %v: %v\n%s", tags, err, out)
	}
	return bin
}
