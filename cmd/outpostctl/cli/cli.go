// Package cli implements outpostctl's commands. Each command parses its own
// flags; results go to stdout (machine-usable), details and progress to stderr.
package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/outpost-iot/outpost/internal/buildinfo"
)

// Env is what a command gets.
type Env struct {
	Ctx    context.Context
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

type command struct {
	summary string
	run     func(e *Env, args []string) error
}

var commands = map[string]command{}

func register(name, summary string, run func(e *Env, args []string) error) {
	commands[name] = command{summary, run}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: outpostctl <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-18s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nThe hub is found with --hub / OUTPOST_HUB (https://host:8443), the admin token with\n--admin-token / OUTPOST_ADMIN_TOKEN (or --admin-token-file), the hub's CA with --ca / OUTPOST_CA.")
}

// Run runs outpostctl with args.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	e := &Env{Ctx: ctx, Stdin: stdin, Stdout: stdout, Stderr: stderr}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		if len(args) == 0 {
			return fmt.Errorf("no command")
		}
		return nil
	}
	// Two-word commands: "token issue", "certs init" …
	if len(args) >= 2 {
		if c, ok := commands[args[0]+" "+args[1]]; ok {
			return c.run(e, args[2:])
		}
	}
	if c, ok := commands[args[0]]; ok {
		return c.run(e, args[1:])
	}
	var near []string
	for n := range commands {
		if strings.HasPrefix(n, args[0]+" ") {
			near = append(near, n)
		}
	}
	sort.Strings(near)
	if len(near) > 0 {
		return fmt.Errorf("%q needs a subcommand: %s", args[0], strings.Join(near, ", "))
	}
	usage(stderr)
	return fmt.Errorf("unknown command %q", args[0])
}

func newFlags(name string, e *Env) *flag.FlagSet {
	fs := flag.NewFlagSet("outpostctl "+name, flag.ContinueOnError)
	fs.SetOutput(e.Stderr)
	return fs
}

// strs is a repeatable string flag that also splits on commas.
type strs []string

func (s *strs) String() string { return strings.Join(*s, ",") }
func (s *strs) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}

func init() {
	register("version", "print the version", func(e *Env, args []string) error {
		fmt.Fprintln(e.Stdout, buildinfo.String("outpostctl"))
		return nil
	})
}
