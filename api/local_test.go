package api_test

import (
	"context"

	"mailcluster/service"
)

// mustLocal returns the node's own view of svc, as node code gets it.
func mustLocal(svc *service.Service) *service.Local {
	l, err := svc.Local(service.SystemContext(context.Background(), "test"))
	if err != nil {
		panic(err)
	}
	return l
}
