package service_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestSecretComparisons checks, on the source, how the Service compares
// secrets: passwords only with bcrypt (the unknown-account path spends a
// dummy bcrypt check), thaw tokens by their hashes with hmac.Equal, and
// nowhere a password, token, their hashes or a secret with == or != (other than a
// test for emptiness). No timing is measured: the helpers are constant
// time by construction.
func TestSecretComparisons(t *testing.T) {
	ents, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	funcs := map[string]*ast.FuncDecl{}
	reSecret := regexp.MustCompile(`(?i)(token|password|secret|tokenhash|passwordhash)$`)
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, e.Name(), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok {
				funcs[fd.Name.Name] = fd
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			be, ok := n.(*ast.BinaryExpr)
			if !ok || (be.Op != token.EQL && be.Op != token.NEQ) || isEmptyExpr(be.X) || isEmptyExpr(be.Y) {
				return true
			}
			for _, side := range []ast.Expr{be.X, be.Y} {
				if name := selectorName(side); reSecret.MatchString(name) {
					t.Errorf("%s: %s compared with %s", fset.Position(be.Pos()), name, be.Op)
				}
			}
			return true
		})
	}
	for _, c := range []struct{ fn, callee string }{
		{"authenticate", "s.checkPassword"},
		{"authenticate", "s.checkDummy"},
		{"checkPassword", "bcrypt.CompareHashAndPassword"},
		{"checkDummy", "bcrypt.CompareHashAndPassword"},
		{"RedeemThawToken", "hmac.Equal"},
	} {
		fd := funcs[c.fn]
		if fd == nil {
			t.Errorf("no function %s", c.fn)
			continue
		}
		found := false
		ast.Inspect(fd, func(n ast.Node) bool {
			if ce, ok := n.(*ast.CallExpr); ok && selectorName(ce.Fun) == c.callee {
				found = true
			}
			return true
		})
		if !found {
			t.Errorf("%s does not call %s", c.fn, c.callee)
		}
	}
}

func isEmptyExpr(e ast.Expr) bool {
	if bl, ok := e.(*ast.BasicLit); ok {
		return bl.Value == `""`
	}
	if ce, ok := e.(*ast.CallExpr); ok && selectorName(ce.Fun) == "len" {
		return true
	}
	id, ok := e.(*ast.Ident)
	return ok && id.Name == "nil"
}

// selectorName renders an identifier or selector ("fa.TokenHash").
func selectorName(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.Ident:
		return x.Name
	case *ast.SelectorExpr:
		return selectorName(x.X) + "." + x.Sel.Name
	}
	return ""
}
