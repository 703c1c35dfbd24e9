package api_test

import (
	"net/http"
	"testing"
)

// TestClusterStandalone covers the cluster routes on a standalone node:
// the status lists the node itself; a switchover has nowhere to go.
func TestClusterStandalone(t *testing.T) {
	env := MustOpenEnv(t)
	var st struct {
		Mode    string
		Primary *struct{ Name string }
		Nodes   []struct {
			Name    string
			Role    string
			Healthy bool
			Self    bool
			Index   uint64
		}
	}
	env.Admin.Get(t, "/api/v1/cluster").Expect(t, http.StatusOK).JSON(t, &st)
	if st.Mode != "standalone" || st.Primary == nil || st.Primary.Name != "node1" || len(st.Nodes) != 1 {
		t.Fatalf("status = %+v", st)
	}
	if n := st.Nodes[0]; n.Name != "node1" || n.Role != "primary" || !n.Healthy || !n.Self || n.Index == 0 {
		t.Fatalf("node = %+v", n)
	}
	env.Admin.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/cluster/switchover", Body: []byte(`{}`)}).
		ExpectProblem(t, http.StatusBadRequest, "invalid")
	env.Admin.Do(t, Request{Method: http.MethodPost, Path: "/api/v1/cluster/switchover", Body: []byte(`{"bogus":1}`), Invalid: true}).
		ExpectProblem(t, http.StatusBadRequest, "invalid")
}

func TestHealthFields(t *testing.T) {
	env := MustOpenEnv(t)
	var h struct {
		Index   uint64
		LagMs   int64
		Primary *struct{ Name string }
	}
	env.Admin.Anonymous().Get(t, "/health").Expect(t, http.StatusOK).JSON(t, &h)
	if h.Index == 0 || h.LagMs != 0 || h.Primary == nil || h.Primary.Name != "node1" {
		t.Fatalf("health = %+v", h)
	}
}
