package main

import (
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/spf13/cobra"
)

func newRecountCommand(stdout io.Writer) *cobra.Command {
	var base, user string
	var all bool
	cmd := &cobra.Command{
		Use:   "recount-usage [address...]",
		Short: "Recount mailbox usage from the files on the shared path (on the primary)",
		Long: "recount-usage asks the primary (POST .../usage/recount) to count each account's mail on disk\n" +
			"under the mailbox's lock file and publish the result to every node. Give addresses, or --all.\n" +
			"The password is read from MAILCLUSTER_ADMIN_PASSWORD.",
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) > 0) {
				return usagef("recount-usage: give account addresses or --all (not both)")
			}
			c, err := newAPIClient(base, user)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if all {
				var ds struct{ Domains []struct{ Name string } }
				if err := c.do(ctx, "GET", "/api/v1/domains", nil, &ds); err != nil {
					return err
				}
				for _, d := range ds.Domains {
					cursor := ""
					for {
						var page struct {
							Accounts   []struct{ Mailbox string }
							NextCursor string
						}
						if err := c.do(ctx, "GET", "/api/v1/domains/"+url.PathEscape(d.Name)+"/accounts?limit=1000&cursor="+url.QueryEscape(cursor), nil, &page); err != nil {
							return err
						}
						for _, a := range page.Accounts {
							args = append(args, a.Mailbox+"@"+d.Name)
						}
						if page.NextCursor == "" {
							break
						}
						cursor = page.NextCursor
					}
				}
			}
			for _, addr := range args {
				mb, dom, ok := strings.Cut(addr, "@")
				if !ok {
					return usagef("recount-usage: %q is not an address", addr)
				}
				var u struct{ Bytes, Messages int64 }
				path := "/api/v1/domains/" + url.PathEscape(dom) + "/accounts/" + url.PathEscape(mb) + "/usage/recount"
				if err := c.do(ctx, "POST", path, nil, &u); err != nil {
					return err
				}
				fmt.Fprintf(stdout, "%s\t%d messages\t%d bytes\n", addr, u.Messages, u.Bytes)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&base, "url", "http://127.0.0.1:8080", "base URL of the primary's HTTP API")
	cmd.Flags().StringVar(&user, "user", "admin@localhost", "administrator's full address")
	cmd.Flags().BoolVar(&all, "all", false, "recount every account")
	return cmd
}
