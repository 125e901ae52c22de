package certify

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/pollux-storage/pollux/framework/flagenv"
)

// Exit codes of pollux-certify.
const (
	ExitPass   = 0 // every case that ran passed
	ExitFailed = 1 // a case failed
	ExitUsage  = 2 // the run could not start: a bad command line, no instance named
)

// Main is the pollux-certify command without the process: cmd/pollux-certify calls it,
// and the suite's own test runs it in-process.
func Main(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	return MainWith(ctx, args, environ, stdout, stderr, nil)
}

// MainWith is Main with a last say on the configuration: a harness that runs the instance
// itself adds what no command line can give (Config.DrainRHD).
func MainWith(ctx context.Context, args, environ []string, stdout, stderr io.Writer, adjust func(*Config)) int {
	fs := flag.NewFlagSet("pollux-certify", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var cfg Config
	var tokensFile, junit string
	var asJSON, list, catalogue, verbose, help bool
	fs.StringVar(&cfg.StageHost, "stage-host", "", "The instance: rhd's host:port, a comma list or a DNS alias (default $STAGE_HOST).")
	fs.StringVar(&cfg.ServiceClass, "svcclass", "", "The service class the cases write to (default $STAGE_SVCCLASS, else default).")
	fs.StringVar(&cfg.Namespace, "namespace", "", "Where the run writes, under /pollux/ (default /pollux/certify/<run id>); it removes what it created.")
	fs.StringVar(&cfg.Token, "token", "", "The first user's bearer token.")
	fs.StringVar(&cfg.Token2, "token2", "", "A second user's token, for the permission cases (optional).")
	fs.StringVar(&tokensFile, "tokens-file", "", "A file of TOKEN USER lines (rhd's --tokens-file): the first two users are the run's, unless --token/--token2 say otherwise.")
	fs.BoolVar(&cfg.Admin, "admin", false, "Run the operator's cases too (hot patches, listings, drains): needs --database-url and pollux-admin.")
	fs.StringVar(&cfg.DatabaseURL, "database-url", "", "The instance's database, for --admin only.")
	fs.StringVar(&cfg.AdminBin, "admin-bin", "", "The pollux-admin program for --admin (default: pollux-admin on PATH).")
	fs.StringVar(&cfg.Run, "run", "", "Run only the cases whose id matches this regular expression.")
	fs.StringVar(&cfg.Journal, "journal", "", "The file listing what the run created, for the cleanup of an interrupted run (default: one per instance in the user's cache directory).")
	fs.DurationVar(&cfg.ServiceTimeout, "service-timeout", 20*time.Second, "The clients' --service-timeout within the cases.")
	fs.StringVar(&junit, "junit", "", "Also write the report as JUnit XML to this `FILE`.")
	fs.BoolVar(&asJSON, "json", false, "Write the report as JSON on stdout (the summary goes to stderr).")
	fs.BoolVar(&list, "list", false, "Print the catalogue of cases and exit.")
	fs.BoolVar(&catalogue, "catalogue", false, "Print docs/certification.md (the catalogue in Markdown) and exit.")
	fs.BoolVar(&verbose, "verbose", false, "List passed cases and their evidence too.")
	fs.BoolVar(&help, "help", false, "Explain the command and its flags.")
	usage := func(err error) int {
		fmt.Fprintf(stderr, "pollux-certify: %v\nRun pollux-certify --help to see every flag.\n", err)
		return ExitUsage
	}
	unknown, err := flagenv.Parse(fs, args, environ, map[string]bool{"POLLUX_CA_FILE": true, "POLLUX_TEST_DATABASE_URL": true})
	if errors.Is(err, flag.ErrHelp) || help {
		flagenv.PrintHelp(stdout, "pollux-certify", "the certification suite: every functional case against a live instance",
			"pollux-certify --stage-host ALIAS [--svcclass S] [--namespace /pollux/certify/...] [--admin] [--junit FILE] [--json]",
			"Exit 0 only if every case that ran passed, 1 if one failed, 2 if the run could not start.", fs)
		return ExitPass
	}
	if err != nil {
		return usage(err)
	}
	for _, u := range unknown {
		fmt.Fprintf(stderr, "pollux-certify: warning: %s matches no flag\n", u)
	}
	if list {
		WriteList(stdout)
		return ExitPass
	}
	if catalogue {
		io.WriteString(stdout, Catalogue())
		return ExitPass
	}
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	if cfg.StageHost == "" {
		cfg.StageHost = env["STAGE_HOST"]
	}
	if cfg.ServiceClass == "" {
		cfg.ServiceClass = env["STAGE_SVCCLASS"]
	}
	if tokensFile != "" {
		users, err := readTokens(tokensFile)
		if err != nil {
			return usage(err)
		}
		if cfg.Token == "" && len(users) > 0 {
			cfg.Token, cfg.User = users[0][0], users[0][1]
		}
		if cfg.Token2 == "" && len(users) > 1 {
			cfg.Token2, cfg.User2 = users[1][0], users[1][1]
		}
	}
	if cfg.Token != "" && cfg.Token == cfg.Token2 {
		return usage(errors.New("--token and --token2 are the same token: the permission cases need two users"))
	}
	if junit != "" {
		// Fail before the run, not after it, when the report cannot be written.
		f, err := os.OpenFile(junit, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return usage(fmt.Errorf("--junit: %w", err))
		}
		f.Close()
	}
	summary := stdout
	if asJSON {
		summary = stderr
	}
	cfg.Progress = func(r Result) {
		if verbose || r.Status == Failed {
			fmt.Fprintf(stderr, "%s %s (%s)\n", strings.ToUpper(string(r.Status)), r.ID, r.Duration.Round(time.Millisecond))
		}
	}
	if adjust != nil {
		adjust(&cfg)
	}
	rep, err := Run(ctx, cfg)
	if err != nil {
		return usage(err)
	}
	if len(rep.Results) == 0 {
		return usage(fmt.Errorf("no case matches --run %q (see --list)", cfg.Run))
	}
	WriteSummary(summary, rep, verbose)
	if asJSON {
		if err := WriteJSON(stdout, rep); err != nil {
			fmt.Fprintf(stderr, "pollux-certify: write JSON: %v\n", err)
			return ExitFailed
		}
	}
	if junit != "" {
		f, err := os.Create(junit)
		if err == nil {
			err = WriteJUnit(f, rep)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "pollux-certify: write --junit %s: %v\n", junit, err)
			return ExitFailed
		}
	}
	if !rep.OK() || ctx.Err() != nil {
		return ExitFailed
	}
	return ExitPass
}

// readTokens reads rhd's tokens file: TOKEN USER lines, # comments. It never quotes a
// token in an error.
func readTokens(path string) ([][2]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--tokens-file: %w", err)
	}
	defer f.Close()
	var out [][2]string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return nil, fmt.Errorf("--tokens-file %s line %d: want TOKEN USER", path, n)
		}
		out = append(out, [2]string{fields[0], fields[1]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--tokens-file: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--tokens-file %s names no user", path)
	}
	return out, nil
}
