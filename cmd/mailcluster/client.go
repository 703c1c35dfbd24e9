package main

import (
	"os"

	"mailcluster/client"
)

// newAdminClient returns a client of a node's REST API as the
// administrator user, whose password comes from MAILCLUSTER_ADMIN_PASSWORD.
func newAdminClient(url, user string) (*client.Client, error) {
	pw := os.Getenv("MAILCLUSTER_ADMIN_PASSWORD")
	if pw == "" {
		return nil, usagef("set MAILCLUSTER_ADMIN_PASSWORD to the password of %s", user)
	}
	c, err := client.New(url, user, pw, client.Options{})
	if err != nil {
		return nil, usagef("--url %q must start with http:// or https://", url)
	}
	return c, nil
}
