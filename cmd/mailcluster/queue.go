package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"mailcluster/client"
)

// newQueueCommand returns "queue" with its subcommands list, show, retry,
// delete and stats, which call a node's REST API (/api/v1/queue).
func newQueueCommand(stdout io.Writer) *cobra.Command {
	var url, user string
	cmd := &cobra.Command{
		Use:   "queue",
		Short: "List, show, retry and delete messages of the outbound queue",
		Long: "queue asks a node's REST API for the outbound queue. Any node lists and shows the whole\n" +
			"cluster's queue; retry and delete are made on the primary (a secondary refuses them and\n" +
			"names the primary). The password is read from MAILCLUSTER_ADMIN_PASSWORD.",
		Args: noQueueArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usagef("queue: give a subcommand: list, show, retry, delete or stats")
		},
	}
	cmd.PersistentFlags().StringVar(&url, "url", "http://127.0.0.1:8080", "base URL of a node's HTTP API (the primary's for retry and delete)")
	cmd.PersistentFlags().StringVar(&user, "user", "admin@localhost", "global administrator's full address")
	connect := func() (*client.Client, error) { return newAdminClient(url, user) }

	var node, cursor string
	var limit int
	list := &cobra.Command{
		Use:   "list",
		Short: "Print one page of the queue, oldest first",
		Args:  noQueueArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 || limit > 1000 {
				return usagef("queue list: --limit must be from 1 to 1000")
			}
			c, err := connect()
			if err != nil {
				return err
			}
			p, err := c.Queue(cmd.Context(), node, cursor, limit)
			if err != nil {
				return fmt.Errorf("queue list: %w", err)
			}
			printQueue(stdout, p)
			return nil
		},
	}
	list.Flags().StringVar(&node, "node", "", "only the messages this node owns")
	list.Flags().IntVar(&limit, "limit", 100, "messages per page (1-1000)")
	list.Flags().StringVar(&cursor, "cursor", "", "the id printed after \"next page:\" by the previous page")

	show := &cobra.Command{
		Use:   "show ID",
		Short: "Print one message and its recipients' states",
		Args:  exactlyOneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			m, err := c.QueuedMessage(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("queue show: %w", err)
			}
			printQueuedMessage(stdout, m)
			return nil
		},
	}
	retry := &cobra.Command{
		Use:   "retry ID",
		Short: "Ask the owning node to attempt a message now (on the primary)",
		Args:  exactlyOneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			if err := c.RetryQueuedMessage(cmd.Context(), args[0]); err != nil {
				return fmt.Errorf("queue retry: %w", err)
			}
			fmt.Fprintf(stdout, "%s: retry asked\n", args[0])
			return nil
		},
	}
	del := &cobra.Command{
		Use:   "delete ID",
		Short: "Remove a message without a notice to its sender (on the primary)",
		Args:  exactlyOneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			if err := c.DeleteQueuedMessage(cmd.Context(), args[0]); err != nil {
				return fmt.Errorf("queue delete: %w", err)
			}
			fmt.Fprintf(stdout, "%s: deleted\n", args[0])
			return nil
		},
	}
	stats := &cobra.Command{
		Use:   "stats",
		Short: "Print the counts of every node's queue",
		Args:  noQueueArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			st, err := c.QueueStats(cmd.Context())
			if err != nil {
				return fmt.Errorf("queue stats: %w", err)
			}
			printQueueStats(stdout, st)
			return nil
		},
	}
	cmd.AddCommand(list, show, retry, del, stats)
	return cmd
}

// noQueueArgs refuses arguments as a usage error.
func noQueueArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q", cmd.CommandPath(), args)
	}
	return nil
}

// exactlyOneID refuses anything but one argument as a usage error.
func exactlyOneID(cmd *cobra.Command, args []string) error {
	if len(args) != 1 || args[0] == "" {
		return usagef("queue %s: give one message id", cmd.Name())
	}
	return nil
}

// printQueue prints a page as a table, and the cursor of the next page.
func printQueue(w io.Writer, p *client.QueuePage) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNODE\tFROM\tPENDING\tATTEMPTS\tNEXT ATTEMPT\tSIZE\t")
	for _, m := range p.Messages {
		pending := 0
		for _, r := range m.Recipients {
			if r.State == "pending" {
				pending++
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%d\t%s\t%d\t\n", m.ID, m.Node, sender(m.From), pending, len(m.Recipients),
			m.Attempts, m.NextAttempt.Format(time.RFC3339), m.Size)
	}
	tw.Flush()
	if p.NextCursor != "" {
		fmt.Fprintf(w, "next page: --cursor %s\n", p.NextCursor)
	}
}

// printQueuedMessage prints one message's fields and a line per recipient.
func printQueuedMessage(w io.Writer, m *client.QueuedMessage) {
	fmt.Fprintf(w, "id:           %s\nnode:         %s\nfrom:         %s\nsubject:      %s\nsize:         %d\n",
		m.ID, m.Node, sender(m.From), oneLine(m.Subject), m.Size)
	fmt.Fprintf(w, "created:      %s\nnext attempt: %s\nattempts:     %d\ndelay warned: %t\n\n",
		m.Created.Format(time.RFC3339), m.NextAttempt.Format(time.RFC3339), m.Attempts, m.DelayWarned)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RECIPIENT\tSTATE\tATTEMPTS\tHOST\tLAST REPLY\t")
	for _, r := range m.Recipients {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t\n", r.Address, r.State, r.Attempts, orDash(r.Host), orDash(oneLine(r.Reply)))
	}
	tw.Flush()
}

// printQueueStats prints a line per node, in name order.
func printQueueStats(w io.Writer, st *client.QueueStats) {
	names := make([]string, 0, len(st.Nodes))
	for n := range st.Nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tMESSAGES\tDEFERRED\tRECIPIENTS\tOLDEST\t")
	for _, n := range names {
		s := st.Nodes[n]
		oldest := "-"
		if s.Oldest != nil {
			oldest = s.Oldest.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t\n", n, s.Messages, s.Deferred, s.Recipients, oldest)
	}
	tw.Flush()
}

// sender shows the null sender of a DSN as <>.
func sender(from string) string {
	if from == "" {
		return "<>"
	}
	return from
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps a remote reply or a subject on one terminal line.
func oneLine(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\r' || r == '\n' || r < ' ' }), " ")
}
