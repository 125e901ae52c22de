// Command pollux-bench measures Pollux's claim framework against pgbench -N and River's own
// bench shape on one PostgreSQL server and prints the comparison (`make bench`). Without --database-url it uses
// the private cluster under ./var/pg, starting it if needed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pollux-storage/pollux/framework/pgcluster"
	"github.com/pollux-storage/pollux/schema/schematest"
	"github.com/pollux-storage/pollux/testsuites/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pollux-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	databaseURL := fs.String("database-url", "", "PostgreSQL server to measure (any database; the role must be allowed to CREATE DATABASE).\n"+
		"Default: the private cluster under <repo>/var/pg, started if needed.")
	duration := fs.Duration("duration", 5*time.Second, "Measurement window of each workers × batch configuration, and of River's bench shape.")
	workers := fs.String("workers", "1,4,16", "Comma-separated worker counts.")
	batches := fs.String("batches", "1,10,100", "Comma-separated batch sizes.")
	pgbenchDuration := fs.Duration("pgbench-duration", 10*time.Second, "Length of each pgbench -N run.")
	suites := fs.String("suites", "claim,requests,history,queue", "Which benchmarks: claim (claim pools beside pgbench and River's bench shape), requests (a whole instance),\n"+
		"history (every claim and sweep behind finished history), queue (claims and the PUT round trip with a long queue).")
	queueSizes := fs.String("queue", "1000,1000000", "Queue: the queue lengths (waiting subrequests of each kind) to time the claims and the PUT round trip with.")
	record := fs.String("record", "", "Add this run's summary table to the history section of this markdown file (docs/benchmarks.md), newest first.")
	queueRoundTrips := fs.Int("queue-round-trips", 300, "Queue: pollux cp round trips at each queue length (0: claims only).")
	historySizes := fs.String("history", "1000000,10000000", "History: the sizes of finished history (subrequests) to time the claims and sweeps behind.")
	roundTrips := fs.Int("round-trips", 1000, "Requests: round trips measured for each of put and get.")
	txPuts := fs.Int("tx-puts", 200, "Requests: puts whose database transactions are counted.")
	clients := fs.Int("clients", 16, "Requests: concurrent clients for the throughput figures.")
	perClient := fs.Int("per-client", 60, "Requests: files each concurrent client puts and gets.")
	bigMiB := fs.Int64("big-mib", 1024, "Requests: size of the mover bandwidth file, MiB.")
	manyServers := fs.Int("disk-servers", 30, "Requests: disk servers of the scaling figure (measured beside 2).")
	settle := fs.Bool("settle", true, "Requests: wait (up to 3 minutes) for the 1-minute load average to fall below 1 before the round trips, whose targets are an idle machine's.")
	scalePuts := fs.Int("scale-puts", 300, "Requests: pollux cp round trips on each side of the scaling figure.")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pollux-bench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	opts := bench.Options{AdminDSN: *databaseURL, Duration: *duration, PgbenchDuration: *pgbenchDuration, Progress: stderr}
	var err error
	if opts.Workers, err = parseList(*workers); err != nil {
		fmt.Fprintf(stderr, "pollux-bench: --workers: %v\n", err)
		return 2
	}
	if opts.Batches, err = parseList(*batches); err != nil {
		fmt.Fprintf(stderr, "pollux-bench: --batches: %v\n", err)
		return 2
	}
	started := time.Now()
	// The checkout as the run starts: the suites build and run what it holds then, and an
	// edit made while they run (they take minutes) is not what they measured.
	measured := commit()
	var verdicts []bench.Verdict
	var serverLog string
	if opts.AdminDSN == "" {
		if opts.AdminDSN, opts.PgbenchPath, serverLog, err = privateCluster(ctx, stderr); err != nil {
			fmt.Fprintf(stderr, "pollux-bench: %v\n", err)
			return 1
		}
	}
	// The request suite first: its round trips want an idle machine (see bench.settle),
	// which the claim suite leaves loaded for minutes.
	if strings.Contains(*suites, "requests") {
		root, err := pgcluster.RepoRoot()
		if err != nil {
			fmt.Fprintf(stderr, "pollux-bench: %v\n", err)
			return 1
		}
		dir, err := os.MkdirTemp("", "pollux-bench")
		if err != nil {
			fmt.Fprintf(stderr, "pollux-bench: %v\n", err)
			return 1
		}
		defer os.RemoveAll(dir)
		rep, err := bench.RunRequests(ctx, bench.RequestOptions{Root: root, AdminDSN: opts.AdminDSN, Dir: dir,
			RoundTrip: *roundTrips, TxPuts: *txPuts, Clients: *clients, PerClient: *perClient, BigBytes: *bigMiB << 20, ServerLog: serverLog,
			PgbenchPath: opts.PgbenchPath, ManyDiskServers: *manyServers, ScalePuts: *scalePuts, Settle: *settle}, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "pollux-bench: requests: %v\n", err)
			return 1
		}
		if err := rep.Print(stdout); err != nil {
			fmt.Fprintf(stderr, "pollux-bench: print report: %v\n", err)
			return 1
		}
		verdicts = append(verdicts, rep.Verdicts()...)
	}
	if strings.Contains(*suites, "claim") {
		rep, err := bench.Run(ctx, opts)
		if err != nil {
			fmt.Fprintf(stderr, "pollux-bench: %v\n", err)
			return 1
		}
		if err := rep.Print(stdout); err != nil {
			fmt.Fprintf(stderr, "pollux-bench: print report: %v\n", err)
			return 1
		}
		verdicts = append(verdicts, rep.Verdicts()...)
	}
	if strings.Contains(*suites, "history") {
		sizes, err := parseList(*historySizes)
		if err != nil {
			fmt.Fprintf(stderr, "pollux-bench: --history: %v\n", err)
			return 2
		}
		rep, err := bench.RunHistory(ctx, opts.AdminDSN, sizes, schematest.Install, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "pollux-bench: history: %v\n", err)
			return 1
		}
		if err := rep.Print(stdout); err != nil {
			fmt.Fprintf(stderr, "pollux-bench: print report: %v\n", err)
			return 1
		}
		verdicts = append(verdicts, rep.Verdicts()...)
	}
	if strings.Contains(*suites, "queue") {
		sizes, err := parseList(*queueSizes)
		if err != nil {
			fmt.Fprintf(stderr, "pollux-bench: --queue: %v\n", err)
			return 2
		}
		root, err := pgcluster.RepoRoot()
		if err != nil {
			fmt.Fprintf(stderr, "pollux-bench: %v\n", err)
			return 1
		}
		dir, err := os.MkdirTemp("", "pollux-bench-queue")
		if err != nil {
			fmt.Fprintf(stderr, "pollux-bench: %v\n", err)
			return 1
		}
		defer os.RemoveAll(dir)
		rep, err := bench.RunQueue(ctx, bench.RequestOptions{Root: root, AdminDSN: opts.AdminDSN, Dir: dir}, sizes, *queueRoundTrips,
			schematest.Install, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "pollux-bench: queue: %v\n", err)
			return 1
		}
		if err := rep.Print(stdout); err != nil {
			fmt.Fprintf(stderr, "pollux-bench: print report: %v\n", err)
			return 1
		}
		verdicts = append(verdicts, rep.Verdicts()...)
	}
	run := bench.RunID{At: started, Commit: measured, NProc: runtime.NumCPU()}
	if err := bench.PrintSummary(stdout, run, verdicts); err != nil {
		fmt.Fprintf(stderr, "pollux-bench: print summary: %v\n", err)
		return 1
	}
	if *record != "" {
		if err := bench.RecordHistory(*record, run, verdicts); err != nil {
			fmt.Fprintf(stderr, "pollux-bench: %v\n", err)
			return 1
		}
		fmt.Fprintf(stderr, "pollux-bench: recorded this run in %s\n", *record)
	}
	return 0
}

// commit names the checkout the run measured, "-dirty" when it had changes.
func commit() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// privateCluster starts the repository's cluster if needed and returns the DSN of its
// maintenance database, its pgbench and its log.
func privateCluster(ctx context.Context, progress io.Writer) (dsn, pgbench, log string, err error) {
	root, err := pgcluster.RepoRoot()
	if err != nil {
		return "", "", "", fmt.Errorf("find repository root: %w", err)
	}
	c, err := pgcluster.Ensure(ctx, filepath.Join(root, "var", "pg"), progress)
	if err != nil {
		return "", "", "", fmt.Errorf("start private cluster: %w", err)
	}
	return c.DSN("postgres"), filepath.Join(c.BinDir, "pgbench"), c.LogFile(), nil
}

// parseList parses "1,4,16".
func parseList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive whole number", f)
		}
		out = append(out, n)
	}
	return out, nil
}
