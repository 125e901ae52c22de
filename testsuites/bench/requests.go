package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pollux-storage/pollux/cmd/client"
	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/testsuites/e2e"
)

// RequestDatabase is the scratch database of the request benchmark.
const RequestDatabase = "pollux_bench_requests"

// RequestOptions configures the request benchmark.
type RequestOptions struct {
	Root      string // the checkout (binaries are built from it)
	AdminDSN  string // a maintenance database on the server
	Dir       string // scratch space for the instance and the files
	RoundTrip int    // round trips measured for PUT and for GET
	TxPuts    int    // puts whose transactions are counted
	Clients   int    // concurrent clients for the throughput figures
	PerClient int    // files each concurrent client puts and gets
	BigBytes  int64  // size of the mover bandwidth file
	// ServerLog is the server's log file, when the benchmark may turn statement logging on
	// (AdminDSN's role is a superuser) to count each daemon's transactions; "" skips that.
	ServerLog string
}

// Latency summarises round trips.
type Latency struct {
	N             int
	P50, P99, Max time.Duration
}

func latency(ds []time.Duration) Latency {
	slices.Sort(ds)
	at := func(q float64) time.Duration { return ds[min(len(ds)-1, int(q*float64(len(ds))))] }
	return Latency{N: len(ds), P50: at(0.50), P99: at(0.99), Max: ds[len(ds)-1]}
}

// RequestReport is what the request benchmark measured.
type RequestReport struct {
	PutRoundTrip, CpRoundTrip, GetRoundTrip Latency
	// PutPhases splits PutRoundTrip: stager_put until READY, the upload, stager_putdone.
	PutPhases             [3]Latency
	TxPerPutdone, TxPerCp float64
	// StatementTx are the transactions per cp (PUT) and per GET that ran a statement, by
	// daemon (from the server's statement log), when counted.
	StatementTx                  map[string]map[string]float64
	PutsPerSecond, GetsPerSecond float64
	Clients                      int
	BigBytes                     int64
	PlainCopy, Upload, Download  time.Duration
}

// RunRequests starts an idle instance (one of each daemon, two disk servers) as real
// processes and measures it through the client library.
func RunRequests(ctx context.Context, o RequestOptions, progress io.Writer) (RequestReport, error) {
	var rep RequestReport
	bin := filepath.Join(o.Dir, "bin")
	fmt.Fprintln(progress, "pollux-bench: building binaries")
	if err := e2e.Build(o.Root, bin); err != nil {
		return rep, err
	}
	if err := recreateDatabase(ctx, o.AdminDSN, RequestDatabase); err != nil {
		return rep, err
	}
	dsn, err := pg.WithDatabase(o.AdminDSN, RequestDatabase)
	if err != nil {
		return rep, err
	}
	defer dropDatabase(context.WithoutCancel(ctx), o.AdminDSN, RequestDatabase)
	if out, err := exec.CommandContext(ctx, filepath.Join(bin, "pollux-admin"), "migrate", "--database-url", dsn).CombinedOutput(); err != nil {
		return rep, fmt.Errorf("migrate: %w\n%s", err, out)
	}
	fmt.Fprintln(progress, "pollux-bench: starting rhd, stagerd, jobmanagerd, schedulerd and two disk servers")
	// The daemons log at info: the harness learns their addresses from those lines.
	in, err := e2e.Start(ctx, e2e.Options{Bin: bin, DSN: dsn, Dir: filepath.Join(o.Dir, "instance")})
	if err != nil {
		return rep, err
	}
	defer in.Stop()
	db, err := pg.Open(ctx, pg.Config{DSN: dsn})
	if err != nil {
		return rep, err
	}
	defer db.Close()

	c := client.New(client.Config{Hosts: []string{in.StageHost()}, Token: in.Token, ServiceClass: "default"})
	defer c.Close()
	b := &reqBench{c: c, dir: filepath.Join(o.Dir, "files")}
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		return rep, err
	}
	small := filepath.Join(b.dir, "1k")
	if err := writeRandom(small, 1024); err != nil {
		return rep, err
	}
	// Warm-up: connections, prepared statements, plans.
	for i := range 20 {
		if _, err := b.put(ctx, small, fmt.Sprintf("/pollux/bench/warm%d", i), true); err != nil {
			return rep, fmt.Errorf("warm-up: %w", err)
		}
	}

	fmt.Fprintf(progress, "pollux-bench: %d × stager_put + 1 KiB upload + stager_putdone\n", o.RoundTrip)
	var puts, cps, gets []time.Duration
	var phases [3][]time.Duration
	for i := range o.RoundTrip {
		d, err := b.put(ctx, small, fmt.Sprintf("/pollux/bench/p%d", i), false)
		if err != nil {
			return rep, err
		}
		puts = append(puts, d.total)
		for k := range phases {
			phases[k] = append(phases[k], d.phases[k])
		}
	}
	rep.PutRoundTrip = latency(puts)
	for k := range phases {
		rep.PutPhases[k] = latency(phases[k])
	}
	fmt.Fprintf(progress, "pollux-bench: %d × pollux cp up (put + 1 KiB upload, closed at the end)\n", o.RoundTrip)
	for i := range o.RoundTrip {
		d, err := b.put(ctx, small, fmt.Sprintf("/pollux/bench/c%d", i), true)
		if err != nil {
			return rep, err
		}
		cps = append(cps, d.total)
	}
	rep.CpRoundTrip = latency(cps)
	fmt.Fprintf(progress, "pollux-bench: %d × stager_get + 1 KiB download\n", o.RoundTrip)
	for i := range o.RoundTrip {
		d, err := b.get(ctx, fmt.Sprintf("/pollux/bench/p%d", i), filepath.Join(b.dir, "back"))
		if err != nil {
			return rep, err
		}
		gets = append(gets, d)
	}
	rep.GetRoundTrip = latency(gets)

	fmt.Fprintf(progress, "pollux-bench: counting database transactions over %d puts\n", o.TxPuts)
	if rep.TxPerPutdone, err = b.transactions(ctx, db, o.TxPuts, func(i int) error {
		_, err := b.put(ctx, small, fmt.Sprintf("/pollux/bench/t%d", i), false)
		return err
	}); err != nil {
		return rep, err
	}
	if rep.TxPerCp, err = b.transactions(ctx, db, o.TxPuts, func(i int) error {
		_, err := b.put(ctx, small, fmt.Sprintf("/pollux/bench/u%d", i), true)
		return err
	}); err != nil {
		return rep, err
	}

	if o.ServerLog != "" {
		fmt.Fprintf(progress, "pollux-bench: counting each daemon's transactions over %d puts and %d gets (statement log)\n", o.TxPuts, o.TxPuts)
		if rep.StatementTx, err = b.statementTransactions(ctx, o, small); err != nil {
			return rep, err
		}
	}

	fmt.Fprintf(progress, "pollux-bench: %d clients × %d puts then gets of 1 KiB files\n", o.Clients, o.PerClient)
	rep.Clients = o.Clients
	if rep.PutsPerSecond, err = b.parallel(ctx, o.Clients, o.PerClient, func(cl, i int) error {
		_, err := b.put(ctx, small, fmt.Sprintf("/pollux/bench/par%d_%d", cl, i), true)
		return err
	}); err != nil {
		return rep, err
	}
	if rep.GetsPerSecond, err = b.parallel(ctx, o.Clients, o.PerClient, func(cl, i int) error {
		_, err := b.get(ctx, fmt.Sprintf("/pollux/bench/par%d_%d", cl, i), filepath.Join(b.dir, fmt.Sprintf("back%d", cl)))
		return err
	}); err != nil {
		return rep, err
	}

	fmt.Fprintf(progress, "pollux-bench: mover bandwidth with a %d MiB file beside a plain copy\n", o.BigBytes>>20)
	rep.BigBytes = o.BigBytes
	big := filepath.Join(b.dir, "big")
	if err := writeRandom(big, o.BigBytes); err != nil {
		return rep, err
	}
	defer os.Remove(big)
	if rep.PlainCopy, err = plainCopy(big, big+".copy"); err != nil {
		return rep, err
	}
	os.Remove(big + ".copy")
	start := time.Now()
	if err := b.upload(ctx, big, "/pollux/bench/big"); err != nil {
		return rep, err
	}
	rep.Upload = time.Since(start)
	start = time.Now()
	if _, err := b.get(ctx, "/pollux/bench/big", big+".back"); err != nil {
		return rep, err
	}
	rep.Download = time.Since(start)
	os.Remove(big + ".back")
	return rep, nil
}

type reqBench struct {
	c   *client.Client
	dir string
}

func finished(s api.Subrequest) bool {
	return s.Status == "FINISHED" || s.Status == "FAILED"
}

func ready(s api.Subrequest) bool { return s.Status == "READY" || finished(s) }

// request submits one request for one path and waits until done holds.
func (b *reqBench) request(ctx context.Context, typ, path string, autoClose bool, done func(api.Subrequest) bool) (api.Subrequest, error) {
	id := client.NewRequestID()
	sub, err := b.c.Submit(ctx, api.SubmitRequest{ID: id, Type: typ, ServiceClass: "default", Paths: []string{path}, AutoClose: autoClose}, b.c.PollWait)
	if err != nil {
		return api.Subrequest{}, fmt.Errorf("%s %s: %w", typ, path, err)
	}
	req, err := b.c.Wait(ctx, id, sub.Request, done, nil, nil)
	if err != nil {
		return api.Subrequest{}, fmt.Errorf("%s %s: %w", typ, path, err)
	}
	s := req.Subrequests[0]
	if s.Status == "FAILED" {
		return s, fmt.Errorf("%s %s failed: %s", typ, path, s.ErrorMessage)
	}
	return s, nil
}

// putTime is how long a put took, in all and by phase: until READY, the upload, and
// stager_putdone (zero when the put closes at the end).
type putTime struct {
	total  time.Duration
	phases [3]time.Duration
}

// put is stager_put + upload (+ stager_putdone unless the put closes at the end).
func (b *reqBench) put(ctx context.Context, local, path string, autoClose bool) (putTime, error) {
	var t putTime
	start := time.Now()
	s, err := b.request(ctx, "PUT", path, autoClose, ready)
	if err != nil {
		return t, err
	}
	t.phases[0] = time.Since(start)
	if _, err := b.c.Upload(ctx, s.MoverURL, s.Token, local, nil); err != nil {
		return t, fmt.Errorf("upload %s: %w", path, err)
	}
	t.phases[1] = time.Since(start) - t.phases[0]
	if !autoClose {
		if _, err := b.request(ctx, "PUTDONE", path, false, finished); err != nil {
			return t, err
		}
	}
	t.total = time.Since(start)
	t.phases[2] = t.total - t.phases[0] - t.phases[1]
	return t, nil
}

func (b *reqBench) upload(ctx context.Context, local, path string) error {
	_, err := b.put(ctx, local, path, true)
	return err
}

// get is stager_get + download.
func (b *reqBench) get(ctx context.Context, path, local string) (time.Duration, error) {
	start := time.Now()
	s, err := b.request(ctx, "GET", path, false, ready)
	if err != nil {
		return 0, err
	}
	if _, err := b.c.Download(ctx, s.MoverURL, s.Token, local, nil); err != nil {
		return 0, fmt.Errorf("download %s: %w", path, err)
	}
	return time.Since(start), nil
}

// transactions counts the database's transactions per call of fn, less what the idle
// instance (heartbeats, polls) commits in the same time.
func (b *reqBench) transactions(ctx context.Context, db *pg.DB, n int, fn func(int) error) (float64, error) {
	read := func() (int64, time.Time, error) {
		// An idle backend flushes its counters up to 10 s late (PostgreSQL 15's
		// PGSTAT_IDLE_INTERVAL): wait that out so every transaction so far is counted.
		time.Sleep(11 * time.Second)
		var v int64
		err := db.Pool().QueryRow(ctx, "select xact_commit + xact_rollback from pg_stat_database where datname = current_database()").Scan(&v)
		return v, time.Now(), err
	}
	c0, t0, err := read()
	if err != nil {
		return 0, err
	}
	// The idle baseline (heartbeats, polls) over a window as long as the flush delay.
	c1, t1, err := read()
	if err != nil {
		return 0, err
	}
	idle := float64(c1-c0-1) / t1.Sub(t0).Seconds() // -1: our own read
	for i := range n {
		if err := fn(i); err != nil {
			return 0, err
		}
	}
	c2, t2, err := read()
	if err != nil {
		return 0, err
	}
	busy := float64(c2-c1-1) - idle*t2.Sub(t1).Seconds()
	return busy / float64(n), nil
}

// statementTransactions counts the transactions each daemon runs per cp and per get, from
// the server's statement log, less what the idle instance runs in as long.
func (b *reqBench) statementTransactions(ctx context.Context, o RequestOptions, small string) (_ map[string]map[string]float64, err error) {
	log, err := startStatementLog(ctx, o.AdminDSN, o.ServerLog)
	if err != nil {
		return nil, err
	}
	defer func() {
		if serr := log.Stop(context.WithoutCancel(ctx)); serr != nil && err == nil {
			err = serr
		}
	}()
	window := func(fn func() error) (map[string]int, time.Duration, error) {
		from, err := log.Offset()
		if err != nil {
			return nil, 0, err
		}
		start := time.Now()
		if err := fn(); err != nil {
			return nil, 0, err
		}
		// River completes finished jobs in batches every 50 ms.
		time.Sleep(200 * time.Millisecond)
		took := time.Since(start)
		to, err := log.Offset()
		if err != nil {
			return nil, 0, err
		}
		counts, err := log.Transactions(RequestDatabase, from, to)
		return counts, took, err
	}
	idle, idleTook, err := window(func() error { time.Sleep(5 * time.Second); return nil })
	if err != nil {
		return nil, err
	}
	perCall := func(counts map[string]int, took time.Duration) map[string]float64 {
		out := map[string]float64{}
		for p, n := range counts {
			out[p] += float64(n)
		}
		for p, n := range idle {
			out[p] -= float64(n) * took.Seconds() / idleTook.Seconds()
		}
		for p := range out {
			out[p] = max(out[p], 0) / float64(o.TxPuts)
		}
		return out
	}
	out := map[string]map[string]float64{}
	puts, took, err := window(func() error {
		for i := range o.TxPuts {
			if _, err := b.put(ctx, small, fmt.Sprintf("/pollux/bench/s%d", i), true); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out["cp"] = perCall(puts, took)
	gets, took, err := window(func() error {
		for i := range o.TxPuts {
			if _, err := b.get(ctx, fmt.Sprintf("/pollux/bench/s%d", i), filepath.Join(b.dir, "back")); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out["get"] = perCall(gets, took)
	return out, nil
}

func (b *reqBench) parallel(ctx context.Context, clients, each int, fn func(cl, i int) error) (float64, error) {
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	start := time.Now()
	for cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := fn(cl, i); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if e := failed.Load(); e != nil {
		return 0, *e
	}
	return float64(clients*each) / time.Since(start).Seconds(), nil
}

func writeRandom(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	// A fast generator: the content only has to defeat compression and deduplication.
	r := rand.NewChaCha8([32]byte{1, 2, 3})
	if _, err := io.CopyN(f, r, size); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Sync()
}

// plainCopy is the yardstick for the mover: read, write, fsync, as the mover does.
func plainCopy(src, dst string) (time.Duration, error) {
	start := time.Now()
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return 0, err
	}
	if _, err := io.CopyBuffer(out, in, make([]byte, 1<<20)); err != nil {
		out.Close()
		return 0, err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return 0, err
	}
	if err := out.Close(); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// Print writes the request benchmark's figures and its target lines.
func (r RequestReport) Print(w io.Writer) error {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	row := func(name string, l Latency) string {
		return fmt.Sprintf("  %-48s p50 %9s   p99 %9s   max %9s   (n=%d)\n", name, ms(l.P50), ms(l.P99), ms(l.Max), l.N)
	}
	mibs := func(d time.Duration) float64 { return float64(r.BigBytes) / (1 << 20) / d.Seconds() }
	verdict := func(ok bool) string {
		if ok {
			return "MET"
		}
		return "MISSED"
	}
	_, err := fmt.Fprintf(w, `
Requests through an idle local instance (rhd, stagerd, jobmanagerd, schedulerd, 2 disk servers, real processes)
round trips, one client at a time:
%s%s%s%s%s
database transactions the server counted (pg_stat_database commits and rollbacks, less the idle
instance's rate; these include each listening connection's reading of the NOTIFY queue, see
docs/benchmarks.md):
  per put + 1 KiB upload, closed at the end (pollux cp)   %5.1f
  per put + 1 KiB upload + putdone (two requests)        %5.1f

throughput, %d concurrent clients, 1 KiB files:
  puts (put + upload + close)   %7.1f files/s
  gets (get + download)         %7.1f files/s

mover bandwidth, %d MiB file:
  plain local copy (read, write, fsync)   %7.1f MiB/s
  pollux cp up   (put + upload + close)   %7.1f MiB/s   %5.1f %% of the plain copy
  pollux cp down (get + download)         %7.1f MiB/s   %5.1f %% of the plain copy

target: PUT round trip p50 ≤ 10 ms (CASTOR2: 500 ms): %s → %s
target: mover ≥ 70 %% of a plain copy: up %.0f %%, down %.0f %% → %s
`,
		row("stager_put + 1 KiB upload + stager_putdone", r.PutRoundTrip),
		row("  of which stager_put until READY", r.PutPhases[0]),
		row("           the 1 KiB upload", r.PutPhases[1])+row("           stager_putdone", r.PutPhases[2]),
		row("pollux cp up: put + 1 KiB upload, closed", r.CpRoundTrip),
		row("stager_get + 1 KiB download", r.GetRoundTrip),
		r.TxPerCp, r.TxPerPutdone,
		r.Clients, r.PutsPerSecond, r.GetsPerSecond,
		r.BigBytes>>20, mibs(r.PlainCopy), mibs(r.Upload), 100*r.PlainCopy.Seconds()/r.Upload.Seconds(),
		mibs(r.Download), 100*r.PlainCopy.Seconds()/r.Download.Seconds(),
		ms(r.PutRoundTrip.P50), verdict(r.PutRoundTrip.P50 <= 10*time.Millisecond),
		100*r.PlainCopy.Seconds()/r.Upload.Seconds(), 100*r.PlainCopy.Seconds()/r.Download.Seconds(),
		verdict(r.PlainCopy.Seconds()/r.Upload.Seconds() >= 0.7 && r.PlainCopy.Seconds()/r.Download.Seconds() >= 0.7))
	if err != nil {
		return err
	}
	if r.StatementTx == nil {
		_, err = fmt.Fprintf(w, "target: transactions per PUT ≤ 9 (CASTOR2): not counted by statement (needs the private cluster's log); the server counted %.1f → %s\n",
			r.TxPerCp, verdict(r.TxPerCp <= 9))
		return err
	}
	fmt.Fprintf(w, "\ntransactions that ran a statement, by daemon (server statement log, less the idle rate):\n")
	fmt.Fprintf(w, "  %-14s %8s %8s\n", "", "cp up", "get")
	programs := []string{"rhd", "stagerd", "jobmanagerd", "schedulerd", "diskserverd"}
	for _, m := range r.StatementTx {
		for p := range m {
			if !slices.Contains(programs, p) {
				programs = append(programs, p)
			}
		}
	}
	var total [2]float64
	for _, p := range programs {
		cp, get := r.StatementTx["cp"][p], r.StatementTx["get"][p]
		total[0], total[1] = total[0]+cp, total[1]+get
		fmt.Fprintf(w, "  %-14s %8.2f %8.2f\n", p, cp, get)
	}
	_, err = fmt.Fprintf(w, "  %-14s %8.2f %8.2f\n", "total", total[0], total[1])
	if err == nil {
		_, err = fmt.Fprintf(w, "target: transactions per PUT ≤ 9 (CASTOR2), counted by statement: %.1f → %s\n", total[0], verdict(total[0] <= 9))
	}
	return err
}
