// Command mailcluster runs a mail server node, standalone on an embedded
// store or as a member of a Consul-backed cluster, and manages it.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"mailcluster"
	"mailcluster/internal/logbuf"
	"mailcluster/node"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line and returns the exit status: 0 on
// success, 2 for bad usage or config, 1 for any other failure.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCommand(stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "mailcluster: %v\n", err)
		if isUsageError(err) {
			return 2
		}
		return 1
	}
	return 0
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "mailcluster",
		Short:         "A clustered mail server node",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newServeCommand(stdout, stderr), newVersionCommand(stdout), newStatusCommand(stdout), newRecountCommand(stdout))
	root.AddCommand(newMigrateCommand(stdout, stderr))
	root.AddCommand(newQueueCommand(stdout))
	return root
}

func newVersionCommand(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintf(stdout, "mailcluster %s (%s %s/%s)\n", mailcluster.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}

func newServeCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a node (standalone on an embedded store)",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("serve takes no arguments, got %q", args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd.Flags())
			if err != nil {
				return err
			}
			// The log goes through a writer goroutine, so that the lines
			// of concurrent requests share write calls; it is flushed
			// before serve returns.
			lw := logbuf.New(stderr)
			defer lw.Close()
			log := newLogger(lw, cfg)
			n := node.New(cfg, log, stdout)
			if err := applyTestHooks(cmd.Flags(), n, log); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := n.Run(ctx); err != nil {
				return err
			}
			<-ctx.Done()
			log.Info("stopping")
			return n.Close()
		},
	}
	addServeFlags(cmd.Flags())
	return cmd
}

func newLogger(w io.Writer, c *node.Config) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(strings.ToUpper(c.LogLevel)))
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
