// Command pollux-admin is the operator's tool: it starts the local development cluster,
// migrates a database (Pollux's schema, River's tables and the SQL logic in one command),
// hot-patches and rolls back the logic, and shows the daemons and the event journal.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/pollux-storage/pollux/framework/flagenv"
)

// command is one subcommand.
type command struct {
	summary string
	usage   string
	run     func(ctx context.Context, c *cli, args []string) error
}

var commands = map[string]command{
	"db":      {"start, stop or locate the private PostgreSQL cluster under ./var/pg", "db start|stop|status|dsn [--dir DIR]", cmdDB},
	"migrate": {"bring a database to head: Pollux's schema, River's tables and the SQL logic", "migrate [up|status|down|force N] [--logic embedded|DIR|none]", cmdMigrate},
	"logic":   {"hot-patch the SQL logic: apply, status, rollback, history", "logic apply|status|rollback|history [--dir DIR]", cmdLogic},
	"daemons": {"list running and recently seen daemon instances with their heartbeat age", "daemons [--window 10m] [--json]", cmdDaemons},
	"leaders": {"show who leads each singleton role, since when, the lease's age and the backups", "leaders [--window 30s] [--json]", cmdLeaders},
	"check":   {"the sanity check: database and standbys, daemons and backups, leaders, versions, clocks, file systems, settings, River, stuck requests", "check [--strict] [--json]", cmdCheck},
	"events":  {"show the newest entries of the system event journal", "events [--limit 50] [--json]", cmdEvents},
	"policy":  {"show or change the policy the logic decides with (liveness, retries, time limits, retention)", "policy [list] | policy set NAME VALUE [--json]", cmdPolicy},
	"ha":      {"start, stop or look at a highly available PostgreSQL under ./var/ha (pg_auto_failover: monitor, primary, synchronous standby)", "ha start|stop|status|dsn|kill NODE|primary [--dir var/ha] [--remove]", cmdHA},
	"local":   {"start, stop or show the local instance under ./var (make run, make stop)", "local start|stop|status|demo [--dir var] [--base-port 9000]", cmdLocal},
}

// usageError marks a mistake on the command line (exit code 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// cli carries what every subcommand shares.
type cli struct {
	environ        []string
	stdout, stderr io.Writer
	databaseURL    string
	jsonOut        bool
}

// flags returns a flag set with the common flags.
func (c *cli) flags(name string, database bool) *flag.FlagSet {
	fs := flag.NewFlagSet("pollux-admin "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if database {
		fs.StringVar(&c.databaseURL, "database-url", "", "PostgreSQL connection string of the Pollux database. Required.")
	}
	fs.BoolVar(&c.jsonOut, "json", false, "Print machine-readable JSON instead of text.")
	return fs
}

// parse parses a subcommand's flags (with POLLUX_* fall-backs) and returns its positional
// arguments, which may stand before, between or after flags.
func (c *cli) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usageError{err.Error()}
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	// Variables for other commands' flags are expected in an operator's environment, so
	// unknown ones are not reported here.
	if _, err := flagenv.ApplyEnv(fs, c.environ, nil); err != nil {
		return nil, usageError{err.Error()}
	}
	if fs.Lookup("database-url") != nil && c.databaseURL == "" {
		return nil, usageError{fmt.Sprintf("--database-url (or %s) is required", flagenv.Name("database-url"))}
	}
	return positional, nil
}

func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	c := &cli{environ: environ, stdout: stdout, stderr: stderr}
	if len(args) == 0 || args[0] == "help" || args[0] == "--help" || args[0] == "-h" {
		printUsage(stdout)
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "pollux-admin: unknown command %q\n\n", args[0])
		printUsage(stderr)
		return 2
	}
	if len(args) > 1 && (args[1] == "--help" || args[1] == "-h") {
		fmt.Fprintf(stdout, "pollux-admin %s\n\n%s.\n", cmd.usage, cmd.summary)
		return 0
	}
	if err := cmd.run(ctx, c, args[1:]); err != nil {
		fmt.Fprintf(stderr, "pollux-admin %s: %v\n", args[0], err)
		if _, ok := err.(usageError); ok {
			fmt.Fprintf(stderr, "usage: pollux-admin %s\n", cmd.usage)
			return 2
		}
		return 1
	}
	return 0
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "pollux-admin — operate a Pollux instance\n\nUsage: pollux-admin COMMAND [flags]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n           %s\n", n, commands[n].summary, "pollux-admin "+commands[n].usage)
	}
	fmt.Fprintf(w, "\nEvery flag can also be given as POLLUX_<FLAG> (e.g. POLLUX_DATABASE_URL).\n"+
		"Exit codes: 0 success, 1 failure, 2 command-line error.\n")
}
