package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"mailcluster"
)

func newStatusCommand(stdout io.Writer) *cobra.Command {
	var url, user string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Print the cluster's nodes, roles, health and replication as a table",
		Long: "status asks a node's REST API (any node, primary or secondary) for GET /api/v1/cluster.\n" +
			"The password is read from MAILCLUSTER_ADMIN_PASSWORD.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newAdminClient(url, user)
			if err != nil {
				return err
			}
			st, err := c.ClusterStatus(cmd.Context())
			if err != nil {
				return fmt.Errorf("status: %w", err)
			}
			printStatus(stdout, st)
			return nil
		},
	}
	cmd.Flags().StringVar(&url, "url", "http://127.0.0.1:8080", "base URL of any node's HTTP API")
	cmd.Flags().StringVar(&user, "user", "admin@localhost", "administrator's full address")
	return cmd
}

func printStatus(w io.Writer, st *mailcluster.ClusterStatus) {
	primary := "(none)"
	if st.Primary != nil {
		primary = st.Primary.Name + " " + st.Primary.APIURL
	}
	name := st.Cluster
	if name == "" {
		name = "-"
	}
	fmt.Fprintf(w, "mode: %s   cluster: %s   primary: %s\n\n", st.Mode, name, primary)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tHEALTHY\tVERSION\tINDEX\tLAG\tAPI\t")
	for _, n := range st.Nodes {
		lag := "?"
		if n.LagMS >= 0 {
			lag = fmt.Sprintf("%dms", n.LagMS)
		}
		healthy := "yes"
		if !n.Healthy {
			healthy = "no"
			if n.Detail != "" {
				healthy += " (" + n.Detail + ")"
			}
		}
		self := ""
		if n.Self {
			self = " *"
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%d\t%s\t%s\t\n", n.Name, self, n.Role, healthy, n.Version, n.Index, lag, n.APIURL)
	}
	tw.Flush()
}
