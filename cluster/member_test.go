package cluster_test

import (
	"context"
	"testing"

	"mailcluster"
	"mailcluster/cluster"
)

// Member is true for a secondary that holds its election session (it
// delivers its outbound queue), false once it stops, and false for a
// node that never held a session.
func TestElectionMember(t *testing.T) {
	client := MustStartConsul(t)
	start := func(name string, neverPrimary bool) (*cluster.Election, func()) {
		e := cluster.NewElection(cluster.ElectionConfig{Client: client, Cluster: "member",
			Self: mailcluster.PrimaryRef{Name: name, APIURL: "http://127.0.0.1:1"}, Log: discard(), NeverPrimary: neverPrimary})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { e.Run(ctx); close(done) }()
		stopped := false
		return e, func() {
			if !stopped {
				stopped = true
				cancel()
				<-done
			}
		}
	}
	n1, stop1 := start("n1", false)
	defer stop1()
	waitFor(t, func() bool { return n1.Role() == mailcluster.RolePrimary })
	n2, stop2 := start("n2", false)
	defer stop2()
	waitFor(t, func() bool { return n2.Role() == mailcluster.RoleSecondary && n2.Member() })
	if n2.Session() != "" {
		t.Fatalf("a secondary reports the primary's fencing session %q", n2.Session())
	}
	if !n1.Member() {
		t.Fatal("the primary is not a member")
	}
	n3, stop3 := start("n3", true)
	defer stop3()
	waitFor(t, func() bool { return n3.Role() == mailcluster.RoleSecondary })
	if n3.Member() {
		t.Fatal("a node that never holds a session says it is a member")
	}
	stop2()
	if n2.Member() {
		t.Fatal("a stopped election is still a member")
	}
}
