package service_test

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"mailcluster"
	"mailcluster/service"
)

var ctxType = reflect.TypeFor[context.Context]()

// callEveryMethod calls every exported method of svc that takes a context
// with ctx and zero values for the other arguments, and hands each
// method's error to check. A panic fails the test: the caller must be
// checked before any argument is used.
func callEveryMethod(t *testing.T, svc *service.Service, ctx context.Context, check func(name string, err error)) int {
	t.Helper()
	v := reflect.ValueOf(svc)
	n := 0
	for i := range v.NumMethod() {
		m := v.Type().Method(i)
		ft := m.Type // receiver first
		if ft.NumIn() < 2 || ft.In(1) != ctxType {
			t.Errorf("%s takes no context, so it cannot name its caller", m.Name)
			continue
		}
		n++
		args := []reflect.Value{reflect.ValueOf(ctx)}
		for j := 2; j < ft.NumIn(); j++ {
			args = append(args, reflect.Zero(ft.In(j)))
		}
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s panicked without a caller: %v", m.Name, r)
				}
			}()
			out := v.Method(i).Call(args)
			err, _ := out[len(out)-1].Interface().(error)
			check(m.Name, err)
		}()
	}
	return n
}

// TestNoCallerIsRefused walks every exported Service method that takes a
// context: without a caller each one is refused, and nothing changes.
func TestNoCallerIsRefused(t *testing.T) {
	svc, st := MustOpenService(t, nil)
	before := st.Index()
	n := callEveryMethod(t, svc, context.Background(), func(name string, err error) {
		if mailcluster.ErrorCode(err) != mailcluster.EFORBIDDEN {
			t.Errorf("%s without a caller: %v, want a refusal", name, err)
		}
	})
	if n < 40 {
		t.Fatalf("only %d methods walked: the walk misses methods", n)
	}
	if st.Index() != before {
		t.Error("a call without a caller changed the state")
	}
}

// TestAnonymousMayOnlyLogIn: the anonymous network may authenticate,
// redeem a thaw token and ask what the health endpoints tell anyone, and
// nothing else (not the node's own view, Local).
func TestAnonymousMayOnlyLogIn(t *testing.T) {
	svc, st := MustOpenService(t, nil)
	before := st.Index()
	open := map[string]bool{"Authenticate": true, "AuthenticateUser": true, "AuthenticateMailUser": true, "RedeemThawToken": true}
	public := map[string]bool{"NodeInfo": true} // what the health endpoints tell anyone
	ctx := service.Anonymous(mailcluster.NewContextWithClientIP(context.Background(), "192.0.2.77"))
	callEveryMethod(t, svc, ctx, func(name string, err error) {
		code := mailcluster.ErrorCode(err)
		switch {
		case public[name]:
			if err != nil {
				t.Errorf("%s for the anonymous network: %v", name, err)
			}
		case open[name]:
			// reached the method: a wrong login, not a refusal of the caller
			if err == nil || code == mailcluster.EFORBIDDEN {
				t.Errorf("%s for the anonymous network: %v", name, err)
			}
		case code != mailcluster.EFORBIDDEN && code != mailcluster.EUNAUTHORIZED:
			t.Errorf("%s for the anonymous network: %v, want a refusal", name, err)
		}
	})
	if st.Index() != before {
		t.Error("an anonymous call changed the state")
	}
}

// TestSystemContextOnlyInNodeCode: the system caller may do everything,
// so only node assembly code (package node) creates it; tests may too.
func TestSystemContextOnlyInNodeCode(t *testing.T) {
	root := filepath.Join("..")
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if rel == "tools" || rel == "node" || strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok && sel.Sel.Name == "SystemContext" {
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == "service" {
					t.Errorf("%s creates a system caller: only package node may", fset.Position(sel.Pos()))
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
