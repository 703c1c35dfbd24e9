package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

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
			pw := os.Getenv("MAILCLUSTER_ADMIN_PASSWORD")
			if pw == "" {
				return usagef("status: set MAILCLUSTER_ADMIN_PASSWORD to the password of %s", user)
			}
			if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
				return usagef("status: --url %q must start with http:// or https://", url)
			}
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, strings.TrimSuffix(url, "/")+"/api/v1/cluster", nil)
			if err != nil {
				return usagef("status: %v", err)
			}
			req.SetBasicAuth(user, pw)
			resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
			if err != nil {
				return fmt.Errorf("status: %w", err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
			if resp.StatusCode != http.StatusOK {
				var p struct{ Detail string }
				_ = json.Unmarshal(body, &p)
				return fmt.Errorf("status: %s: %s", resp.Status, p.Detail)
			}
			var st mailcluster.ClusterStatus
			if err := json.Unmarshal(body, &st); err != nil {
				return fmt.Errorf("status: bad answer: %w", err)
			}
			printStatus(stdout, &st)
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
