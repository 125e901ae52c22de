package failover_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/pgcluster"
	"github.com/pollux-storage/pollux/framework/pgha"
	"github.com/pollux-storage/pollux/testsuites/e2e"
	"github.com/pollux-storage/pollux/testsuites/load"
)

// EnvDir names an existing formation to run against (make failover sets it up and
// migrates it); without it the suite creates its own in a temporary directory.
const EnvDir = "POLLUX_HA_DIR"

// EnvRounds is how many times the load test kills the primary (default 1).
const EnvRounds = "POLLUX_FAILOVER_ROUNDS"

// serviceTarget is the longest a client may wait for service after the primary died.
const serviceTarget = 15 * time.Second

var (
	bin string

	once    sync.Once
	shared  *pgha.Formation
	owned   bool // created here, removed at the end
	initErr error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pollux-failover-bin")
	if err != nil {
		panic(err)
	}
	bin = dir
	root, err := pgcluster.RepoRoot()
	if err == nil {
		err = e2e.Build(root, dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if shared != nil && owned {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		if err := shared.Remove(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "remove the formation in %s: %v\n", shared.Dir, err)
			code = 1
		} else {
			os.RemoveAll(filepath.Dir(shared.Dir)) // the temporary directory around it
		}
		cancel()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// formation returns the formation the tests share, in sync, its database migrated.
func formation(t *testing.T) *pgha.Formation {
	t.Helper()
	if testing.Short() {
		t.Skip("the failover suite runs a pg_auto_failover formation and a whole instance; -short leaves it out")
	}
	once.Do(func() { shared, initErr = setUp() })
	if initErr != nil {
		t.Fatalf("no HA formation: %v", initErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// A test that failed half-way may have left a node down.
	require.NoError(t, shared.Start(ctx))
	_, err := shared.WaitSync(ctx)
	require.NoError(t, err)
	return shared
}

func setUp() (*pgha.Formation, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var f *pgha.Formation
	if dir := os.Getenv(EnvDir); dir != "" {
		var err error
		if f, err = pgha.Ensure(ctx, pgha.Options{Dir: dir, Progress: os.Stderr}); err != nil {
			return nil, err
		}
	} else {
		if err := pgha.Available(); err != nil {
			return nil, err
		}
		dir, err := os.MkdirTemp("", "pollux-ha")
		if err != nil {
			return nil, err
		}
		start := time.Now()
		if f, err = pgha.Create(ctx, pgha.Options{Dir: filepath.Join(dir, "ha"), Progress: os.Stderr}); err != nil {
			return nil, err
		}
		owned = true
		fmt.Fprintf(os.Stderr, "formation created in %s in %s\n", f.Dir, time.Since(start).Round(100*time.Millisecond))
	}
	return f, nil
}

var databases atomic.Int64

// database creates a database of the test's own on the formation, migrated as an
// operator would (pollux-admin migrate), and returns its name; it is dropped
// when the test ends. A formation that outlives a run (POLLUX_HA_DIR) would otherwise
// carry one run's disk servers and files into the next.
func database(t *testing.T, f *pgha.Formation) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	name := fmt.Sprintf("failover_%d_%d", time.Now().Unix(), databases.Add(1))
	// pgx tries the next host on a connection refused, not on "database does not exist":
	// the standby must have replayed the CREATE DATABASE before anyone connects, so its
	// commit waits for that (a synchronous standby otherwise only has it on disk).
	admin, err := pg.Open(ctx, pg.Config{DSN: f.DSN("postgres") + "&synchronous_commit=remote_apply", MaxConns: 1})
	require.NoError(t, err)
	t.Cleanup(admin.Close)
	require.NoError(t, admin.Do(ctx, "create database", func(q pg.Querier) error {
		_, err := q.Exec(ctx, "create database "+name)
		return err
	}))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		assert.NoError(t, admin.Do(ctx, "drop database", func(q pg.Querier) error {
			_, err := q.Exec(ctx, "drop database if exists "+name+" with (force)")
			return err
		}))
	})
	dsn := f.DSN(name)
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "pollux-admin"), "migrate")
	cmd.Env = append(os.Environ(), "POLLUX_DATABASE_URL="+dsn)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "pollux-admin migrate:\n%s", out)
	return name
}

// probe is what a daemon holds of framework/pg, opened on the multi-host DSN: a pool and
// the LISTEN connection, subscribed to a channel of the test's.
type probe struct {
	db   *pg.DB
	l    *pg.Listener
	sub  *pg.Subscription
	stop func()
}

const probeChannel = "pollux_failover_probe"

func newProbe(t *testing.T, ctx context.Context, dsn string) *probe {
	t.Helper()
	db, err := pg.Open(ctx, pg.Config{DSN: dsn, ApplicationName: "failover probe", Logger: zaptest.NewLogger(t)})
	require.NoError(t, err)
	p := &probe{db: db, l: pg.NewListener(db, zaptest.NewLogger(t))}
	p.sub = p.l.Subscribe(probeChannel, 16)
	runCtx, stopRun := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- p.l.Run(runCtx) }()
	p.stop = func() {
		stopRun()
		assert.NoError(t, <-ran)
		db.Close()
	}
	select {
	case <-p.l.Ready():
	case <-ctx.Done():
		p.stop()
		t.Fatal("the probe's listener never listened")
	}
	return p
}

// notify sends a NOTIFY through the pool (retried as any daemon's statement would be).
func (p *probe) notify(t *testing.T, ctx context.Context, payload string) {
	t.Helper()
	require.NoError(t, p.db.Do(ctx, "notify", func(q pg.Querier) error {
		_, err := q.Exec(ctx, "select pg_notify($1, $2)", probeChannel, payload)
		return err
	}))
}

// next is the next notification the listener delivers.
func (p *probe) next(t *testing.T, within time.Duration) pg.Notification {
	t.Helper()
	select {
	case n := <-p.sub.C:
		return n
	case <-time.After(within):
		t.Fatalf("no notification within %s", within)
	}
	return pg.Notification{}
}

// serverAddr is the address of the node a pooled connection reaches.
func (p *probe) serverAddr(t *testing.T, ctx context.Context) string {
	t.Helper()
	var addr string
	require.NoError(t, p.db.Do(ctx, "server address", func(q pg.Querier) error {
		return q.QueryRow(ctx, "select host(inet_server_addr())").Scan(&addr)
	}))
	return addr
}

// TestDaemonsRideThroughPrimaryKill runs a whole instance on the formation's multi-host
// DSN under a steady load of puts and gets, kills the primary node whole, and checks
// that the daemons ride through the promotion: service comes back within serviceTarget,
// the daemons are all up and ready, rhd hears NOTIFYs again, and every put a client was
// told is stored reads back with its checksum. A probe holding framework/pg's pool and
// LISTEN connection as a daemon does shows both reach the new primary: the listener says
// it reconnected and hears a NOTIFY sent there. The old primary then rejoins as the
// standby; POLLUX_FAILOVER_ROUNDS repeats it all against each new primary.
func TestDaemonsRideThroughPrimaryKill(t *testing.T) {
	f := formation(t)
	rounds := 1
	if v := os.Getenv(EnvRounds); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err, "%s=%s", EnvRounds, v)
		require.Positive(t, n, "%s=%s", EnvRounds, v)
		rounds = n
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute+time.Duration(rounds)*2*time.Minute)
	defer cancel()
	name := database(t, f)
	dsn := f.DSN(name)
	in, err := e2e.Start(ctx, e2e.Options{Bin: bin, DSN: dsn, Dir: t.TempDir(), RHDs: 2, DiskServers: 2})
	require.NoError(t, err)
	// WithDatabase keeps every host and target_session_attrs of a multi-host DSN.
	probeDSN, err := pg.WithDatabase(f.DSN("postgres"), name)
	require.NoError(t, err)
	pr := newProbe(t, ctx, probeDSN)
	defer pr.stop()
	defer func() {
		if t.Failed() {
			t.Log(in.Logs(60))
		}
		in.Stop()
	}()
	dir := keptDir(t)
	// Puts and gets only: the judge then checks every acknowledged put reads back.
	cl := startClients(ctx, t, in, dir, load.Config{Prefix: "/pollux/failover", Clients: 3, Put: 1, Get: 1, Rm: -1, MaxSize: 64 << 10})
	wait := cl.wait
	wait("10 acknowledged requests", time.Minute, ackedSince(10, time.Now()))

	type round struct {
		killed, promoted string
		dbBack           time.Duration
		outage           load.Outage
	}
	var done []round
	for i := 1; i <= rounds; i++ {
		old, err := f.Primary(ctx)
		require.NoError(t, err)
		notified := map[string]float64{}
		for name, p := range in.Procs() {
			if strings.HasPrefix(name, "rhd") {
				notified[name] = metric(t, p.Admin(), `pollux_rhd_request_views_total{source="notification"}`)
			}
		}
		pr.notify(t, ctx, fmt.Sprintf("before %d", i))
		require.Equal(t, fmt.Sprintf("before %d", i), pr.next(t, 10*time.Second).Payload)
		require.Equal(t, old.Host, pr.serverAddr(t, ctx))
		killed := time.Now()
		_, err = f.Kill(ctx, old.Name)
		require.NoError(t, err)
		promoted, err := f.WaitPrimary(ctx, old.Name)
		require.NoError(t, err)
		dbBack := time.Since(killed)
		t.Logf("round %d: %s killed, %s takes writes after %s", i, old.Name, promoted.Name, dbBack.Round(10*time.Millisecond))
		// NOTIFYs sent while the listener was away are lost; it says so once it listens
		// again, on the new primary.
		n := pr.next(t, 30*time.Second)
		require.True(t, n.Reconnected, "first notification after the failover: %+v", n)
		t.Logf("round %d: the probe's listener back %s after the kill", i, time.Since(killed).Round(10*time.Millisecond))
		pr.notify(t, ctx, fmt.Sprintf("after %d", i))
		require.Equal(t, fmt.Sprintf("after %d", i), pr.next(t, 10*time.Second).Payload)
		require.Equal(t, promoted.Host, pr.serverAddr(t, ctx), "the pool reached another node than the new primary")
		wait("5 requests acknowledged after the kill", 2*time.Minute, ackedSince(5, killed))
		outage := load.OutageAt(cl.Ops(), killed)
		t.Logf("round %d: service back %s after the kill", i, outage.Back().Round(10*time.Millisecond))
		done = append(done, round{old.Name, promoted.Name, dbBack, outage})

		// Every daemon rode through: still running and ready (the database answers,
		// through the new primary). rhd answers long polls from NOTIFYs again: its
		// LISTEN connection is on the new primary.
		for name, p := range in.Procs() {
			assert.Equal(t, http.StatusOK, readyz(p.Admin()), "%s is not ready after the failover", name)
		}
		for name, before := range notified {
			p := in.Procs()[name]
			require.EventuallyWithT(t, func(c *assert.CollectT) {
				assert.Greater(c, metric(c, p.Admin(), `pollux_rhd_request_views_total{source="notification"}`), before)
			}, time.Minute, 50*time.Millisecond, "%s answered no long poll from a NOTIFY after the failover", name)
		}

		// The old primary comes back as the standby; the load goes on meanwhile.
		require.NoError(t, f.StartNode(ctx, old.Name))
		syncCtx, cancelSync := context.WithTimeout(ctx, 2*time.Minute)
		_, err = f.WaitSync(syncCtx)
		cancelSync()
		require.NoError(t, err)
		synced := time.Now()
		t.Logf("round %d: %s is the standby again, in sync, %s after the kill", i, old.Name, synced.Sub(killed).Round(10*time.Millisecond))
		wait("3 requests acknowledged after the rejoin", time.Minute, ackedSince(3, synced))
	}
	ops := cl.stop()

	judge, err := pg.Open(ctx, pg.Config{DSN: dsn})
	require.NoError(t, err)
	defer judge.Close()
	v, err := load.Verify(ctx, judge, cl.run, cl.files, ops, time.Minute)
	require.NoError(t, err)
	var report strings.Builder
	fmt.Fprintf(&report, "clients' log: %s\n%s", cl.logPath, load.Summary(ops))
	for i, r := range done {
		fmt.Fprintf(&report, "failover %d: %s killed, %s took writes after %s; service back after %s (target %s); "+
			"%d requests in flight at the kill, the longest around it took %s\n",
			i+1, r.killed, r.promoted, r.dbBack.Round(10*time.Millisecond), r.outage.Back().Round(10*time.Millisecond), serviceTarget,
			r.outage.InFlight, r.outage.Longest.Round(10*time.Millisecond))
		for reason, n := range r.outage.Failed {
			fmt.Fprintf(&report, "  refused during the outage: %d× %s\n", n, reason)
		}
	}
	report.WriteString(v.String())
	t.Log("\n" + report.String())
	require.True(t, v.OK(), "lost, corrupt or stuck: see the report above")
	require.Positive(t, v.FilesVerified)
	for i, r := range done {
		assert.LessOrEqual(t, r.outage.Back(), 3*serviceTarget, "failover %d: service came back after %s (target %s)", i+1, r.outage.Back(), serviceTarget)
	}
}

// clients is a load of clients on an instance, with what the judge needs of it.
type clients struct {
	*load.Load
	t              *testing.T
	ctx            context.Context
	run            load.Runner
	files, logPath string
	stopped        bool
}

// startClients starts the load cfg describes (its Run, Dir and LogPath are filled in:
// files and the clients' log under dir) on in; a test that fails before stopping it
// stops it as it ends.
func startClients(ctx context.Context, t *testing.T, in *e2e.Instance, dir string, cfg load.Config) *clients {
	t.Helper()
	c := &clients{t: t, ctx: ctx, files: filepath.Join(dir, "files"), logPath: filepath.Join(dir, "clients.jsonl"),
		run: func(ctx context.Context, name string, args ...string) load.Result {
			r := in.Run(ctx, nil, name, args...)
			return load.Result{Code: r.Code, Stdout: r.Stdout, Stderr: r.Stderr}
		}}
	cfg.Run, cfg.Dir, cfg.LogPath = c.run, c.files, c.logPath
	var err error
	c.Load, err = load.Start(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { c.stop() })
	return c
}

// wait waits, at most within, until cond holds for the clients' log.
func (c *clients) wait(what string, within time.Duration, cond func([]load.Op) bool) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, within)
	defer cancel()
	require.NoError(c.t, c.WaitFor(ctx, what, cond), "%s", load.Summary(c.Ops()))
}

// stop stops the clients (once) and returns their log.
func (c *clients) stop() []load.Op {
	if !c.stopped {
		c.stopped = true
		return c.Stop()
	}
	return c.Ops()
}

// putsSince holds once n puts that started at or after since were acknowledged.
func putsSince(n int, since time.Time) func([]load.Op) bool {
	return func(rs []load.Op) bool { return load.PutsSince(rs, since) >= n }
}

// ackedSince holds once n operations that started at or after since were acknowledged.
func ackedSince(n int, since time.Time) func([]load.Op) bool {
	return func(rs []load.Op) bool { return load.SucceededSince(rs, since) >= n }
}

// keptDir is where a test's clients keep their log: beside a formation of make
// failover's (var/failover/…), which outlives the run, or a temporary directory.
func keptDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(EnvDir)
	if dir == "" {
		return t.TempDir()
	}
	abs, err := filepath.Abs(dir)
	require.NoError(t, err)
	kept := filepath.Join(filepath.Dir(abs), "failover", t.Name()+"-"+time.Now().UTC().Format("20060102-150405"))
	require.NoError(t, os.MkdirAll(kept, 0o755))
	return kept
}

// readyz is the status of a daemon's /readyz (0 when it does not answer).
func readyz(admin string) int {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + admin + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// metric reads one sample (name with its labels, as exposed) from a daemon's /metrics; 0
// when it is not exposed yet.
func metric(t require.TestingT, admin, sample string) float64 {
	resp, err := http.Get("http://" + admin + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			n, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return n
		}
	}
	require.NoError(t, sc.Err())
	if resp.StatusCode != http.StatusOK {
		require.NoError(t, errors.New(resp.Status))
	}
	return 0
}
