// Command consul is a trimmed build of the Consul agent (MPL-2.0) for
// mailcluster's tests and demo. It registers only the agent, members and
// leave commands; everything else of Consul's CLI is left out so that the
// binary builds from the Go module proxy alone.
package main

import (
	"fmt"
	"io"
	"log"
	"os"

	"github.com/hashicorp/consul/command/agent"
	"github.com/hashicorp/consul/command/cli"
	"github.com/hashicorp/consul/command/leave"
	"github.com/hashicorp/consul/command/members"
	mcli "github.com/mitchellh/cli"
)

func main() {
	os.Exit(run())
}

func run() int {
	log.SetOutput(io.Discard)
	ui := &cli.BasicUI{BasicUi: mcli.BasicUi{Writer: os.Stdout, ErrorWriter: os.Stderr}}
	cmds := map[string]mcli.CommandFactory{
		"agent":   func() (mcli.Command, error) { return agent.New(ui), nil },
		"members": func() (mcli.Command, error) { return members.New(ui), nil },
		"leave":   func() (mcli.Command, error) { return leave.New(ui), nil },
	}
	c := &mcli.CLI{
		Name:        "consul",
		Args:        os.Args[1:],
		Commands:    cmds,
		HelpFunc:    mcli.BasicHelpFunc("consul"),
		HelpWriter:  os.Stdout,
		ErrorWriter: os.Stderr,
	}
	code, err := c.Run()
	if err != nil {
		fmt.Fprintf(os.Stderr, "consul: %v\n", err)
		return 1
	}
	return code
}
