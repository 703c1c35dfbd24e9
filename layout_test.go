package mailcluster_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestLayout checks that dependencies point inward: the root package
// imports nothing of the module, the edges (the two management APIs,
// SMTP, IMAP, POP3, Consul) never import each other, and the mail storage they
// share, the outbound queue and its SMTP client import none of them;
// package node wires them.
func TestLayout(t *testing.T) {
	edges := []string{"api", "xmlapi", "mailsvc", "imapsvc", "pop3svc", "cluster"}
	forbidden := map[string][]string{".": {"mailcluster/"}}
	for _, e := range edges {
		for _, other := range edges {
			if other != e {
				forbidden[e] = append(forbidden[e], "mailcluster/"+other)
			}
		}
		forbidden[e] = append(forbidden[e], "mailcluster/node")
		forbidden["mailstore"] = append(forbidden["mailstore"], "mailcluster/"+e)
	}
	forbidden["mailstore"] = append(forbidden["mailstore"], "mailcluster/node")
	// The outbound queue sits beside the mail storage: no edge, no node;
	// its SMTP client knows only the root package.
	forbidden["mailqueue"] = append(append([]string(nil), forbidden["mailstore"]...), "mailcluster/service")
	forbidden["outbound"] = append(append([]string(nil), forbidden["mailqueue"]...), "mailcluster/mailqueue", "mailcluster/mailstore")
	fset := token.NewFileSet()
	for dir, bad := range forbidden {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, ent := range ents {
			name := ent.Name()
			if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range f.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				for _, b := range bad {
					if path == b || strings.HasSuffix(b, "/") && strings.HasPrefix(path, b) {
						t.Errorf("%s imports %s", filepath.Join(dir, name), path)
					}
				}
			}
		}
	}
}
