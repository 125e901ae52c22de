// Command pollux-stress puts a sustained load on any Pollux instance, as its users would:
// N clients running the real client commands (pollux cp up and down, stager_rm), with a
// mix of operations and a spread of file sizes, for a duration or a number of requests. It
// prints throughput and latency percentiles per operation every few seconds and at the
// end, the failures by reason, and then verifies that every file it was told was stored
// reads back with the right bytes (and, given the instance's database, that every
// acknowledged request finished and none is stuck). It exits 0 only if nothing
// acknowledged was lost. The load generator and judge are testsuites/load, which the
// failure suite uses too.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pollux-storage/pollux/framework/flagenv"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/testsuites/load"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

type options struct {
	stageHost, token, svcClass, prefix, bin, databaseURL, mix, work string
	clients, requests, minSize, maxSize                             int
	duration, every, pause, settle, opTimeout                       time.Duration
	rate, burstFactor                                               float64
	burstEvery, burstFor                                            time.Duration
}

// run is the command without the process: exit 0 when nothing acknowledged was lost, 1
// when something was (or the run could not be judged), 2 for a command-line error.
func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pollux-stress", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var o options
	fs.StringVar(&o.stageHost, "stage-host", "", "The instance: rhd's host:port, a comma list or a DNS alias (default $STAGE_HOST).")
	fs.StringVar(&o.token, "token", "", "The bearer token the clients send (default $POLLUX_TOKEN).")
	fs.StringVar(&o.svcClass, "svcclass", "", "The service class (default $STAGE_SVCCLASS, else default).")
	fs.StringVar(&o.prefix, "prefix", "", "The Pollux directory the run writes under (default /pollux/stress/<host>-<time>); the run removes what it wrote there.")
	fs.StringVar(&o.bin, "bin", "", "Where the client commands are (default: beside this program, else $PATH).")
	fs.StringVar(&o.databaseURL, "database-url", "", "The instance's database, to check that every acknowledged request finished and none is stuck (optional: without it only the files are judged).")
	fs.StringVar(&o.mix, "mix", "put=5,get=3,rm=1", "Weights of the operations.")
	fs.StringVar(&o.work, "work-dir", "", "Local directory for the files moved (default: a temporary one, removed at the end).")
	fs.IntVar(&o.clients, "clients", 8, "Concurrent clients.")
	fs.IntVar(&o.requests, "requests", 0, "Stop after this many operations (0: run for --duration).")
	fs.IntVar(&o.minSize, "min-size", 1<<10, "Smallest file, in bytes.")
	fs.IntVar(&o.maxSize, "max-size", 1<<20, "Largest file, in bytes.")
	fs.Float64Var(&o.rate, "rate", 0, "Operations a second for the whole run, on an open schedule (a slow service builds a backlog and shows it as latency); 0: every client as fast as it goes (see --pause). --clients bounds the operations in flight.")
	fs.Float64Var(&o.burstFactor, "burst-factor", 10, "With --rate and --burst-every: the rate is this many times --rate during each burst.")
	fs.DurationVar(&o.burstEvery, "burst-every", 0, "With --rate: a burst at the end of every such period (e.g. 30s; 0: no bursts); the report says how each drained.")
	fs.DurationVar(&o.burstFor, "burst-for", 3*time.Second, "Length of each burst.")
	fs.DurationVar(&o.duration, "duration", time.Minute, "How long the load runs (when --requests is 0).")
	fs.DurationVar(&o.every, "report-every", 5*time.Second, "How often to print the figures of the last window.")
	fs.DurationVar(&o.pause, "pause", 0, "Pause of each client between two operations (0: as fast as it goes).")
	fs.DurationVar(&o.settle, "settle", time.Minute, "How long the judge waits for the run's requests to end (with --database-url).")
	fs.DurationVar(&o.opTimeout, "op-timeout", 2*time.Minute, "Bound on one client command; one cut off counts as not acknowledged.")
	help := fs.Bool("help", false, "Explain the command and its flags.")
	if _, err := flagenv.Parse(fs, args, environ, nil); err != nil || *help {
		if errors.Is(err, flag.ErrHelp) || *help {
			flagenv.PrintHelp(stdout, "pollux-stress", "sustained load on any Pollux instance, then a verdict on what it stored",
				"pollux-stress [flags]", "", fs)
			return 0
		}
		fmt.Fprintf(stderr, "pollux-stress: %v\nRun pollux-stress --help to see every flag.\n", err)
		return 2
	}
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	pick := func(flagValue, variable, def string) string {
		switch {
		case flagValue != "":
			return flagValue
		case env[variable] != "":
			return env[variable]
		}
		return def
	}
	o.stageHost = pick(o.stageHost, "STAGE_HOST", "")
	o.token = pick(o.token, "POLLUX_TOKEN", "")
	o.svcClass = pick(o.svcClass, "STAGE_SVCCLASS", "default")
	weights, err := parseMix(o.mix)
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "pollux-stress: --mix: %v\n", err)
		return 2
	case o.stageHost == "":
		fmt.Fprintln(stderr, "pollux-stress: --stage-host (or STAGE_HOST) is required")
		return 2
	case o.rate < 0, o.burstEvery < 0, o.burstEvery > 0 && (o.rate == 0 || o.burstFactor <= 1 || o.burstFor <= 0 || o.burstFor >= o.burstEvery):
		fmt.Fprintln(stderr, "pollux-stress: --rate must be 0 or more; --burst-every needs --rate, a --burst-factor above 1 and a --burst-for shorter than itself")
		return 2
	case o.clients < 1, o.requests < 0, o.minSize < 0, o.maxSize < o.minSize, o.duration <= 0, o.every <= 0:
		fmt.Fprintln(stderr, "pollux-stress: --clients must be at least 1, --requests and --min-size at least 0, --max-size at least --min-size, --duration and --report-every above 0")
		return 2
	}
	if o.prefix == "" {
		host, _ := os.Hostname()
		o.prefix = fmt.Sprintf("/pollux/stress/%s-%s", host, time.Now().UTC().Format("20060102-150405"))
	}
	bin, err := clientDir(o.bin)
	if err != nil {
		fmt.Fprintf(stderr, "pollux-stress: %v\n", err)
		return 2
	}
	work := o.work
	if work == "" {
		if work, err = os.MkdirTemp("", "pollux-stress"); err != nil {
			fmt.Fprintf(stderr, "pollux-stress: %v\n", err)
			return 1
		}
		defer os.RemoveAll(work)
	}
	clientEnv := append(append([]string(nil), environ...),
		"STAGE_HOST="+o.stageHost, "POLLUX_TOKEN="+o.token, "STAGE_SVCCLASS="+o.svcClass)
	runClient := func(ctx context.Context, name string, args ...string) load.Result {
		cmd := exec.CommandContext(ctx, filepath.Join(bin, name), args...)
		cmd.Env = clientEnv
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		res := load.Result{Stdout: out.String(), Stderr: errOut.String()}
		var exit *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &exit):
			res.Code = exit.ExitCode()
		default:
			res.Code, res.Stderr = -1, res.Stderr+err.Error()
		}
		return res
	}

	cfg := load.Config{Run: runClient, Dir: filepath.Join(work, "files"), Prefix: o.prefix, Clients: o.clients,
		MinSize: o.minSize, MaxSize: o.maxSize, Put: weights["put"], Get: weights["get"], Rm: weights["rm"],
		Pause: o.pause, OpTimeout: o.opTimeout, Limit: o.requests, LogPath: filepath.Join(work, "clients.jsonl"),
		Rate: o.rate}
	if o.burstEvery > 0 {
		cfg.Burst = load.Burst{Factor: o.burstFactor, Every: o.burstEvery, For: o.burstFor}
	}
	if cfg.Pause == 0 {
		cfg.Pause = time.Nanosecond // as fast as it goes; load's default would pause
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	fmt.Fprintf(stdout, "pollux-stress: %d clients against %s under %s, mix %s, files %d–%d bytes, %s\n", o.clients, o.stageHost,
		o.prefix, o.mix, o.minSize, o.maxSize, limitText(o))
	start := time.Now()
	ld, err := load.Start(loadCtx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "pollux-stress: %v\n", err)
		return 2
	}
	end := time.After(o.duration)
	if o.requests > 0 {
		end = nil
	}
	tick := time.NewTicker(o.every)
	defer tick.Stop()
	last := start
loop:
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(stderr, "pollux-stress: interrupted: stopping the clients, then judging what they did")
			break loop
		case <-end:
			break loop
		case <-ld.Done():
			break loop
		case now := <-tick.C:
			fmt.Fprintf(stdout, "%s last %s (load average %s):\n%s", now.UTC().Format(time.TimeOnly), now.Sub(last).Round(100*time.Millisecond),
				loadAverage(), load.FormatStats(load.Stats(ld.Ops(), last, now)))
			last = now
		}
	}
	ops := ld.Stop()
	took := time.Since(start)
	fmt.Fprintf(stdout, "whole run, %s (load average %s):\n%s", took.Round(time.Millisecond), loadAverage(),
		load.FormatStats(load.Stats(ops, start, time.Now())))
	issued := took // the bursts the clients ran: those that began before the load stopped
	if o.requests == 0 {
		issued = min(took, o.duration)
	}
	fmt.Fprint(stdout, load.BurstReport(ops, cfg.Burst.Windows(start, start.Add(issued))))

	judgeCtx := context.WithoutCancel(ctx)
	var db *pg.DB
	if o.databaseURL != "" {
		if db, err = pg.Open(judgeCtx, pg.Config{DSN: o.databaseURL, MaxConns: 4}); err != nil {
			fmt.Fprintf(stderr, "pollux-stress: open the database to judge the requests: %v\n", err)
			return 1
		}
		defer db.Close()
	}
	rep, err := load.Verify(judgeCtx, db, runClient, cfg.Dir, ops, o.settle)
	if err != nil {
		fmt.Fprintf(stderr, "pollux-stress: verify: %v\n", err)
		return 1
	}
	fmt.Fprint(stdout, rep.String())
	if db == nil {
		fmt.Fprintln(stdout, "(requests not judged: no --database-url; files judged)")
	}
	cleanUp(judgeCtx, runClient, ops, stdout)
	if !rep.OK() {
		return 1
	}
	return 0
}

// parseMix reads "put=5,get=3,rm=1"; a kind left out has weight 0 (none).
func parseMix(s string) (map[string]int, error) {
	w := map[string]int{"put": -1, "get": -1, "rm": -1}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.Atoi(v)
		if _, known := w[k]; !ok || !known || err != nil || n < 0 {
			return nil, fmt.Errorf("%q: want put=N,get=N,rm=N with whole numbers of at least 0", part)
		}
		if n == 0 {
			n = -1 // load: negative is none
		}
		w[k] = n
	}
	if w["put"] < 1 {
		return nil, errors.New("put must have a weight above 0: the other operations need stored files")
	}
	return w, nil
}

func limitText(o options) string {
	s := "for " + o.duration.String()
	if o.requests > 0 {
		s = fmt.Sprintf("%d operations", o.requests)
	}
	if o.rate > 0 {
		s += fmt.Sprintf(" at %g/s", o.rate)
	}
	if o.burstEvery > 0 {
		s += fmt.Sprintf(", bursts of %g× for %s every %s", o.burstFactor, o.burstFor, o.burstEvery)
	}
	return s
}

// clientDir finds the client commands.
func clientDir(flagValue string) (string, error) {
	if flagValue != "" {
		if _, err := os.Stat(filepath.Join(flagValue, "pollux")); err != nil {
			return "", fmt.Errorf("--bin %s: no pollux command there: %w", flagValue, err)
		}
		return flagValue, nil
	}
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Dir(exe)
		if _, err := os.Stat(filepath.Join(dir, "pollux")); err == nil {
			return dir, nil
		}
	}
	p, err := exec.LookPath("pollux")
	if err != nil {
		return "", errors.New("no pollux command beside pollux-stress nor on $PATH: give --bin DIR")
	}
	return filepath.Dir(p), nil
}

// loadAverage is the machine's 1-minute load average, for the figures beside it.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

// cleanUp removes the files the run stored and did not remove.
func cleanUp(ctx context.Context, run load.Runner, ops []load.Op, out io.Writer) {
	gone := map[string]bool{}
	for _, o := range ops {
		if o.Kind == "rm" && o.Acked() {
			gone[o.Path] = true
		}
	}
	n := 0
	for _, o := range ops {
		if o.Kind == "put" && !gone[o.Path] {
			if r := run(ctx, "stager_rm", "-M", o.Path); r.Code == 0 {
				n++
			}
			gone[o.Path] = true
		}
	}
	fmt.Fprintf(out, "removed the %d files the run left\n", n)
}
