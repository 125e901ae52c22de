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
	"strconv"
	"strings"
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
	// PgbenchPath runs pgbench -N -c 16 in the same run, for the throughput share; "" skips.
	PgbenchPath string
	// ManyDiskServers is how many disk servers the scaling figure runs with (2 beside it).
	ManyDiskServers int
	// ScalePuts is how many cp round trips each side of the scaling figure measures.
	ScalePuts int
	// Settle waits for an idle machine before the round trips (see settle).
	Settle bool
}

// instanceDatabase makes the database name anew on the server of adminDSN and migrates it
// with pollux-admin from bin, for an instance of real processes, and returns its DSN. It
// uses the tests' database roles (schematest.RolePrefix), which the development cluster
// trusts; the local instance's (pollux_) must give a password there once `make run` has
// run, and the daemons run as their roles (e2e.Start).
func instanceDatabase(ctx context.Context, adminDSN, bin, name string) (string, error) {
	if err := recreateDatabase(ctx, adminDSN, name); err != nil {
		return "", err
	}
	dsn, err := pg.WithDatabase(adminDSN, name)
	if err != nil {
		return "", err
	}
	if dsn, err = pg.WithParam(dsn, "options", "-c pollux.role_prefix=pollux_test_"); err != nil {
		return "", err
	}
	if out, err := exec.CommandContext(ctx, filepath.Join(bin, "pollux-admin"), "migrate", "--database-url", dsn).CombinedOutput(); err != nil {
		return "", fmt.Errorf("migrate %s: %w\n%s", name, err, out)
	}
	return dsn, nil
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

// median is the middle of xs (of an even count, the upper of the two middle values, as
// latency's P50), sorting a copy.
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	return s[len(s)/2]
}

// MoverFigure is the mover figure of the rounds: the median plain copy, upload and
// download, and each side's share, the median over the rounds of its ratio to the plain copy
// just before it.
type MoverFigure struct {
	PlainCopy, Upload, Download time.Duration
	UpShare, DownShare          float64
}

// Mover derives the mover figure from MoverRounds (the zero figure when none ran).
func (r RequestReport) Mover() MoverFigure {
	if len(r.MoverRounds) == 0 {
		return MoverFigure{}
	}
	var plains, ups, downs []time.Duration
	var upShares, downShares []float64
	for _, rd := range r.MoverRounds {
		plains, ups, downs = append(plains, rd[0], rd[2]), append(ups, rd[1]), append(downs, rd[3])
		upShares, downShares = append(upShares, rd[0].Seconds()/rd[1].Seconds()), append(downShares, rd[2].Seconds()/rd[3].Seconds())
	}
	return MoverFigure{PlainCopy: latency(plains).P50, Upload: latency(ups).P50, Download: latency(downs).P50,
		UpShare: median(upShares), DownShare: median(downShares)}
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
	// MoverRounds are the mover figure's rounds: a plain copy, the upload, a plain copy, the
	// download (Mover derives the figure from them).
	MoverRounds [][4]time.Duration
	// Load is the one-minute load average when each figure was taken, by figure.
	Load map[string]string
	// CPUPerCp is the CPU time per pollux cp of every process of the system under test (the
	// client, the daemons, the database server's processes), less what the idle instance
	// used in as long; MachineCPUPerCp the same from the whole machine's counters, which
	// count whatever else runs there too.
	CPUPerCp, MachineCPUPerCp time.Duration
	// PgbenchTPS is pgbench -N -c 16 on the same server in the same run (0: not run).
	PgbenchTPS float64
	// FewServers and ManyServers are cp round trips with 2 and with ManyDiskServers disk
	// servers registered, measured one after the other.
	FewServers, ManyServers Latency
	ManyDiskServers         int
}

// RunRequests starts an idle instance (one of each daemon, two disk servers) as real
// processes and measures it through the client library.
func RunRequests(ctx context.Context, o RequestOptions, progress io.Writer) (RequestReport, error) {
	rep := RequestReport{Load: map[string]string{}}
	bin := filepath.Join(o.Dir, "bin")
	fmt.Fprintln(progress, "pollux-bench: building binaries")
	if err := e2e.Build(o.Root, bin); err != nil {
		return rep, err
	}
	dsn, err := instanceDatabase(ctx, o.AdminDSN, bin, RequestDatabase)
	if err != nil {
		return rep, err
	}
	defer dropDatabase(context.WithoutCancel(ctx), o.AdminDSN, RequestDatabase)
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

	if o.Settle {
		settle(ctx, progress)
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
	rep.Load["put"] = loadAverage()
	for k := range phases {
		rep.PutPhases[k] = latency(phases[k])
	}
	fmt.Fprintf(progress, "pollux-bench: %d × pollux cp up (put + 1 KiB upload, closed at the end), with the machine's CPU time\n", o.RoundTrip)
	idleFrom, idleAt := busyCPU(), time.Now()
	idleOwn, err := sampleCPU(ctx, db, in)
	if err != nil {
		return rep, err
	}
	time.Sleep(5 * time.Second) // the idle instance's own rate (heartbeats, polls), to subtract
	idleRate := (busyCPU() - idleFrom).Seconds() / time.Since(idleAt).Seconds()
	ownAt, err := sampleCPU(ctx, db, in)
	if err != nil {
		return rep, err
	}
	ownIdleRate := ownAt.since(idleOwn).Seconds() / time.Since(idleAt).Seconds()
	cpuFrom, cpuAt := busyCPU(), time.Now()
	for i := range o.RoundTrip {
		d, err := b.put(ctx, small, fmt.Sprintf("/pollux/bench/c%d", i), true)
		if err != nil {
			return rep, err
		}
		cps = append(cps, d.total)
	}
	busy := (busyCPU() - cpuFrom).Seconds() - idleRate*time.Since(cpuAt).Seconds()
	rep.MachineCPUPerCp = time.Duration(busy / float64(o.RoundTrip) * float64(time.Second))
	ownEnd, err := sampleCPU(ctx, db, in)
	if err != nil {
		return rep, err
	}
	own := ownEnd.since(ownAt).Seconds() - ownIdleRate*time.Since(cpuAt).Seconds()
	rep.CPUPerCp = time.Duration(own / float64(o.RoundTrip) * float64(time.Second))
	rep.CpRoundTrip = latency(cps)
	rep.Load["cp"] = loadAverage()
	fmt.Fprintf(progress, "pollux-bench: %d × stager_get + 1 KiB download\n", o.RoundTrip)
	for i := range o.RoundTrip {
		d, err := b.get(ctx, fmt.Sprintf("/pollux/bench/p%d", i), filepath.Join(b.dir, "back"))
		if err != nil {
			return rep, err
		}
		gets = append(gets, d)
	}
	rep.GetRoundTrip = latency(gets)
	rep.Load["get"] = loadAverage()

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
	rep.Load["tx"] = loadAverage()

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
	rep.Load["puts/s"] = loadAverage()
	if rep.GetsPerSecond, err = b.parallel(ctx, o.Clients, o.PerClient, func(cl, i int) error {
		_, err := b.get(ctx, fmt.Sprintf("/pollux/bench/par%d_%d", cl, i), filepath.Join(b.dir, fmt.Sprintf("back%d", cl)))
		return err
	}); err != nil {
		return rep, err
	}
	if o.PgbenchPath != "" {
		fmt.Fprintf(progress, "pollux-bench: pgbench -N -c 16 -j 2 -T 10 on the same server\n")
		if rep.PgbenchTPS, err = pgbenchBeside(ctx, o.PgbenchPath, o.AdminDSN); err != nil {
			return rep, err
		}
		rep.Load["pgbench"] = loadAverage()
	}

	fmt.Fprintf(progress, "pollux-bench: mover bandwidth with a %d MiB file beside a plain copy\n", o.BigBytes>>20)
	rep.BigBytes = o.BigBytes
	big := filepath.Join(b.dir, "big")
	if err := writeRandom(big, o.BigBytes); err != nil {
		return rep, err
	}
	defer os.Remove(big)
	// Three rounds, each of a plain copy and the upload, then a plain copy and the download,
	// one after the other; each side's share is the median over the rounds of its ratio to
	// the plain copy just before it. Every file each side writes is kept until all rounds
	// are done, as the uploads' copies are kept by the catalogue. Both because of how this
	// machine's VM backs its memory: writing into pages the guest freed a moment ago is
	// fast, writing into pages it has not used lately is not (the hypervisor backs each
	// again on its first use, time the guest sees as its own kernel's), and a run crosses
	// from one to the other after a few GiB (a GiB copied in 0.97 s, then 2.35 s, for the
	// plain copy and the mover alike). A yardstick that removed its copy at once wrote warm
	// pages while the mover wrote cold ones; a median of each side over rounds compared a
	// warm round of one with a cold round of the other.
	defer func() {
		for i := range 2 * moverRounds {
			os.Remove(fmt.Sprintf("%s.copy%d", big, i))
		}
		for round := range moverRounds {
			os.Remove(fmt.Sprintf("%s.back%d", big, round))
		}
	}()
	// paired times a plain copy (the copy-th) and then transfer.
	paired := func(copy int, transfer func() error) (plain, took time.Duration, err error) {
		if plain, err = plainCopy(big, fmt.Sprintf("%s.copy%d", big, copy)); err != nil {
			return 0, 0, err
		}
		start := time.Now()
		err = transfer()
		return plain, time.Since(start), err
	}
	for round := range moverRounds {
		path := fmt.Sprintf("/pollux/bench/big%d", round)
		var rd [4]time.Duration
		var err error
		if rd[0], rd[1], err = paired(2*round, func() error { return b.upload(ctx, big, path) }); err != nil {
			return rep, err
		}
		if rd[2], rd[3], err = paired(2*round+1, func() error {
			_, err := b.get(ctx, path, fmt.Sprintf("%s.back%d", big, round))
			return err
		}); err != nil {
			return rep, err
		}
		rep.MoverRounds = append(rep.MoverRounds, rd)
	}
	rep.Load["mover"] = loadAverage()

	if o.ManyDiskServers > 2 && o.ScalePuts > 0 {
		// The same figure twice in a row, so that both sides see the same machine.
		fmt.Fprintf(progress, "pollux-bench: %d × pollux cp with 2 disk servers, then with %d\n", o.ScalePuts, o.ManyDiskServers)
		cp := func(tag string) (Latency, error) {
			var ds []time.Duration
			for i := range o.ScalePuts {
				d, err := b.put(ctx, small, fmt.Sprintf("/pollux/bench/%s%d", tag, i), true)
				if err != nil {
					return Latency{}, err
				}
				ds = append(ds, d.total)
			}
			return latency(ds), nil
		}
		if rep.FewServers, err = cp("few"); err != nil {
			return rep, err
		}
		for i := 3; i <= o.ManyDiskServers; i++ {
			if err := in.AddDiskServer(ctx, fmt.Sprintf("disk%d", i)); err != nil {
				return rep, fmt.Errorf("start disk server %d: %w", i, err)
			}
		}
		rep.ManyDiskServers = o.ManyDiskServers
		if rep.ManyServers, err = cp("many"); err != nil {
			return rep, err
		}
		rep.Load["scale"] = loadAverage()
	}
	return rep, nil
}

// busyCPU is the CPU time every process of the machine has used since boot (/proc/stat:
// user, nice, system, irq, softirq, steal; not idle or iowait).
func busyCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		if i < len(f) {
			n, _ := strconv.ParseInt(f[i], 10, 64)
			ticks += n
		}
	}
	// USER_HZ is 100 on Linux whatever the kernel's own tick rate.
	return time.Duration(ticks) * 10 * time.Millisecond
}

// pgbenchBeside runs pgbench -N -c 16 for 10 s on a scratch database of the same server.
func pgbenchBeside(ctx context.Context, pgbench, adminDSN string) (float64, error) {
	const name = "pollux_bench_requests_pgbench"
	if err := recreateDatabase(ctx, adminDSN, name); err != nil {
		return 0, err
	}
	defer dropDatabase(context.WithoutCancel(ctx), adminDSN, name)
	dsn, err := pg.WithDatabase(adminDSN, name)
	if err != nil {
		return 0, err
	}
	if err := PgbenchInit(ctx, pgbench, dsn, PgbenchScale); err != nil {
		return 0, err
	}
	res, err := RunPgbench(ctx, pgbench, dsn, 16, 2, 10*time.Second)
	return res.TPS, err
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
		// A deliberate pause, not a wait for a condition: the last reports' notifications
		// are read by every listening session in transactions of their own.
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

// The latency targets are an idle machine's: before the round trips, the benchmark waits
// until the 1-minute load average falls below settleBelow (the build of the binaries, or a
// suite before this one, leaves it at 3-4 on two cores), for at most settleFor.
const (
	settleBelow = 1.0
	settleFor   = 3 * time.Minute
)

// settle waits for the machine to quieten (see settleBelow), and says so.
func settle(ctx context.Context, progress io.Writer) {
	deadline := time.Now().Add(settleFor)
	for {
		l, err := strconv.ParseFloat(loadAverage(), 64)
		if err != nil || l < settleBelow {
			return
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(progress, "pollux-bench: the load average is still %.2f after %s: measuring anyway\n", l, settleFor)
			return
		}
		fmt.Fprintf(progress, "pollux-bench: load average %.2f: waiting for it to fall below %.1f before the round trips\n", l, settleBelow)
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Second):
		}
	}
}

// moverRounds is how many times the mover figure measures each side.
const moverRounds = 3

// plainCopy is the yardstick for the mover: the file copied into a new one and fsynced
// (io.CopyBuffer hands two files to the kernel's copy_file_range: one copy in memory, the
// least a copy can make), as the mover writes and fsyncs a new file.
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

// Print writes the request benchmark's figures and its target lines, each with the
// one-minute load average when it was taken.
func (r RequestReport) Print(w io.Writer) error {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	load := func(k string) string { return "load " + r.Load[k] }
	row := func(name string, l Latency, k string) string {
		return fmt.Sprintf("  %-48s p50 %9s   p99 %9s   max %9s   (n=%d)   %s\n", name, ms(l.P50), ms(l.P99), ms(l.Max), l.N, load(k))
	}
	mibs := func(d time.Duration) float64 { return float64(r.BigBytes) / (1 << 20) / d.Seconds() }
	var b strings.Builder
	fmt.Fprintf(&b, `
Requests through a local instance (rhd, stagerd, jobmanagerd, schedulerd, 2 disk servers, real processes)
round trips, one client at a time:
%s%s%s%s%s`,
		row("stager_put + 1 KiB upload + stager_putdone", r.PutRoundTrip, "put"),
		row("  of which stager_put until READY", r.PutPhases[0], "put"),
		row("           the 1 KiB upload", r.PutPhases[1], "put")+row("           stager_putdone", r.PutPhases[2], "put"),
		row("pollux cp up: put + 1 KiB upload, closed", r.CpRoundTrip, "cp"),
		row("stager_get + 1 KiB download", r.GetRoundTrip, "get"))
	fmt.Fprintf(&b, "  CPU per pollux cp: client, daemons and database server, less the idle rate   %s   (the whole machine's counters: %s)   %s\n",
		ms(r.CPUPerCp), ms(r.MachineCPUPerCp), load("cp"))
	fmt.Fprintf(&b, `
database transactions the server counted (pg_stat_database commits and rollbacks, less the idle
instance's rate; these include each listening session's reading of the NOTIFY queue):
  per put + 1 KiB upload, closed at the end (pollux cp)   %5.1f   %s
  per put + 1 KiB upload + putdone (two requests)        %5.1f
`, r.TxPerCp, load("tx"), r.TxPerPutdone)
	fmt.Fprintf(&b, "\nthroughput, %d concurrent clients, 1 KiB files:\n  puts (put + upload + close)   %7.1f files/s   %s\n  gets (get + download)         %7.1f files/s\n",
		r.Clients, r.PutsPerSecond, load("puts/s"), r.GetsPerSecond)
	mv := r.Mover()
	fmt.Fprintf(&b, `
mover bandwidth, %d MiB file (%d rounds; each side's share: the median of its rounds' plain copy / transfer):
  plain local copy (copy_file_range, fsync) %5.1f MiB/s   %s
  pollux cp up   (put + upload + close)   %7.1f MiB/s   %5.1f %% of the plain copy
  pollux cp down (get + download)         %7.1f MiB/s   %5.1f %% of the plain copy
`, r.BigBytes>>20, moverRounds, mibs(mv.PlainCopy), load("mover"), mibs(mv.Upload), 100*mv.UpShare,
		mibs(mv.Download), 100*mv.DownShare)
	for i, rd := range r.MoverRounds {
		fmt.Fprintf(&b, "  round %d: plain copy %.2f s, up %.2f s; plain copy %.2f s, down %.2f s\n", i+1,
			rd[0].Seconds(), rd[1].Seconds(), rd[2].Seconds(), rd[3].Seconds())
	}
	if r.ManyDiskServers > 0 {
		fmt.Fprintf(&b, "\nscaling out the disk servers (pollux cp round trips, one after the other):\n%s%s",
			row("with 2 disk servers", r.FewServers, "scale"), row(fmt.Sprintf("with %d disk servers", r.ManyDiskServers), r.ManyServers, "scale"))
	}

	if r.StatementTx != nil {
		fmt.Fprintf(&b, "\ntransactions that ran a statement, by daemon (server statement log, less the idle rate):\n")
		fmt.Fprintf(&b, "  %-14s %8s %8s\n", "", "cp up", "get")
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
			fmt.Fprintf(&b, "  %-14s %8.2f %8.2f\n", p, cp, get)
		}
		fmt.Fprintf(&b, "  %-14s %8.2f %8.2f\n", "total", total[0], total[1])
	}

	b.WriteString("\ntargets (issue 12):\n")
	printVerdicts(&b, r.Verdicts())
	_, err := io.WriteString(w, b.String())
	return err
}
