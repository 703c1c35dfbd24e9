package mailcluster_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestEventKindsDocumented checks that every EventKind constant is named
// in the README's description of the cluster log.
func TestEventKindsDocumented(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "clusterlog.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			v := spec.(*ast.ValueSpec)
			if id, ok := v.Type.(*ast.Ident); !ok || id.Name != "EventKind" {
				continue
			}
			s, err := strconv.Unquote(v.Values[0].(*ast.BasicLit).Value)
			if err != nil {
				t.Fatal(err)
			}
			kinds = append(kinds, s)
		}
	}
	if len(kinds) < 10 {
		t.Fatalf("found only %d event kinds: %v", len(kinds), kinds)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), "**Cluster log.**")
	if !ok {
		t.Fatal("README has no cluster-log description")
	}
	section, _, _ := strings.Cut(after, "\n\n")
	for _, k := range kinds {
		if !strings.Contains(section, "`"+k+"`") {
			t.Errorf("the README's cluster-log description does not name the event %q", k)
		}
	}
}
