package main

import (
	"fmt"
	"io"
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
			c, err := newAdminClient(base, user)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if all {
				ds, err := c.Domains(ctx)
				if err != nil {
					return err
				}
				for _, d := range ds {
					as, err := c.AllAccounts(ctx, d.Name)
					if err != nil {
						return err
					}
					for _, a := range as {
						args = append(args, a.Mailbox+"@"+d.Name)
					}
				}
			}
			for _, addr := range args {
				mb, dom, ok := strings.Cut(addr, "@")
				if !ok {
					return usagef("recount-usage: %q is not an address", addr)
				}
				u, err := c.RecountUsage(ctx, dom, mb)
				if err != nil {
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
