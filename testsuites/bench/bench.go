// Package bench measures Pollux's claim framework (framework/claim driving framework/pg
// transactions) on a queue shaped like the stager's claim, and pgbench's simple-update
// workload (-N) on the same server in the same run. A claim rate means little on its own;
// next to pgbench it says how close the framework comes to what this server and machine do
// for an ordinary small write transaction. River's own bench shape (MeasureRiver) runs on the
// same server in the same run as the anchor: a queue library doing the same job there.
//
// Every measurement runs a pool that never finds the queue empty, so the figures are the
// framework's ceiling, not a model of production load.
package bench

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pollux-storage/pollux/framework/pg"
)

//go:embed bench.sql
var schemaSQL string

// ClaimDatabase and PgbenchDatabase are the scratch databases Run creates on the server and
// drops again, with RiverDatabase.
const (
	ClaimDatabase   = "pollux_bench"
	PgbenchDatabase = "pollux_bench_pgbench"
)

var scratchDatabases = []string{ClaimDatabase, RiverDatabase, PgbenchDatabase}

// PgbenchScale is the pgbench scale factor (10 × 100,000 accounts); at this size the data
// fits in shared_buffers and the -N run measures commits, not reads.
const PgbenchScale = 10

// SchemaSQL returns bench.sql: the queue table and bench_item_claim.
func SchemaSQL() string { return schemaSQL }

// Install loads bench.sql into the empty database behind db.
func Install(ctx context.Context, db *pg.DB) error {
	if _, err := db.Pool().Exec(ctx, schemaSQL); err != nil {
		return fmt.Errorf("load bench.sql: %w", err)
	}
	return nil
}

// Fill replaces the queue's content with n pending rows and vacuums and analyzes the table,
// so that every measurement starts from a compact table and index (no dead entries left by
// the previous one) and a plan made for them.
func Fill(ctx context.Context, db *pg.DB, n int) error {
	err := db.Tx(ctx, "fill queue", func(q pg.Querier) error {
		if _, err := q.Exec(ctx, "truncate bench_item restart identity"); err != nil {
			return err
		}
		_, err := q.Exec(ctx, "insert into bench_item (path) select '/bench/file-' || g from generate_series(1, $1::integer) g", n)
		return err
	})
	if err != nil {
		return fmt.Errorf("fill queue: %w", err)
	}
	// VACUUM cannot run inside a transaction, hence the bare pool.
	if _, err := db.Pool().Exec(ctx, "vacuum analyze bench_item"); err != nil {
		return fmt.Errorf("vacuum queue: %w", err)
	}
	return nil
}

// Pending returns how many rows wait in the queue.
func Pending(ctx context.Context, db *pg.DB) (int64, error) {
	var n int64
	err := db.Pool().QueryRow(ctx, "select count(*) from bench_item where status in ('START', 'RESTART', 'RETRY')").Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count pending rows: %w", err)
	}
	return n, nil
}

// Options configure Run.
type Options struct {
	// AdminDSN reaches any database on the server; its role must be allowed to CREATE
	// DATABASE. Run creates its own databases next to it.
	AdminDSN string
	// PgbenchPath is the pgbench binary; empty means FindPgbench.
	PgbenchPath string
	// Workers and Batches span the grid of claim configurations.
	Workers []int
	Batches []int
	// Duration is the measurement window of one claim configuration.
	Duration time.Duration
	// Warmup runs before each window and is not counted; 0 means 500 ms.
	Warmup time.Duration
	// PgbenchDuration is the length of each pgbench run (whole seconds, at least 1).
	PgbenchDuration time.Duration
	// Progress receives a line per step of the procedure; nil discards them.
	Progress io.Writer
}

// Report is everything Run measured.
type Report struct {
	Started  time.Time
	Options  Options
	Server   Server
	Machine  Machine
	Claims   []ClaimResult
	Pgbench  []PgbenchResult
	Warnings []string

	// River is River's bench shape on the same server, the anchor the claim pool is
	// measured against; nil when not measured.
	River *RiverResult
}

// Server describes the PostgreSQL settings that move the figures most.
type Server struct {
	Version           string
	SharedBuffers     string
	SynchronousCommit string
	Fsync             string
}

// Machine describes where the benchmark ran; the clients and the server share it.
type Machine struct {
	// NProc is the number of CPUs this process may use (what nproc prints).
	NProc int
	// LoadStart and LoadEnd are the 1-minute load averages before and after, or "" where
	// the system does not say. Others' work on the machine shows up here.
	LoadStart, LoadEnd string
}

// Run performs the whole procedure on one server: it creates the scratch databases (dropping
// leftovers of an earlier run), measures every workers × batch configuration of the claim
// pool, then River's bench shape (MeasureRiver) with the same warm-up and window, runs
// pgbench -N at 1 and 16 clients, and drops the databases again.
func Run(ctx context.Context, opts Options) (rep *Report, err error) {
	if err := opts.normalise(); err != nil {
		return nil, err
	}
	rep = &Report{Started: time.Now(), Options: opts,
		Machine: Machine{NProc: runtime.NumCPU(), LoadStart: loadAverage()}}
	progress := func(format string, args ...any) { fmt.Fprintf(opts.Progress, "pollux-bench: "+format+"\n", args...) }

	for _, name := range scratchDatabases {
		progress("creating database %s", name)
		if err := recreateDatabase(ctx, opts.AdminDSN, name); err != nil {
			return nil, err
		}
	}
	defer func() {
		// The databases go even when the run failed or was interrupted.
		dropCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		for _, name := range scratchDatabases {
			if dropErr := dropDatabase(dropCtx, opts.AdminDSN, name); dropErr != nil {
				err = errors.Join(err, dropErr)
			}
		}
	}()
	claimDSN, err := pg.WithDatabase(opts.AdminDSN, ClaimDatabase)
	if err != nil {
		return nil, fmt.Errorf("claim database url: %w", err)
	}
	pgbenchDSN, err := pg.WithDatabase(opts.AdminDSN, PgbenchDatabase)
	if err != nil {
		return nil, fmt.Errorf("pgbench database url: %w", err)
	}
	riverDSN, err := pg.WithDatabase(opts.AdminDSN, RiverDatabase)
	if err != nil {
		return nil, fmt.Errorf("river database url: %w", err)
	}

	db, err := pg.Open(ctx, pg.Config{DSN: claimDSN, MaxConns: 2, ApplicationName: "pollux-bench setup"})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", ClaimDatabase, err)
	}
	defer db.Close()
	if rep.Server, err = readServer(ctx, db); err != nil {
		return nil, err
	}
	if err := Install(ctx, db); err != nil {
		return nil, err
	}
	cp := &checkpointer{db: db, warn: func(w string) { rep.Warnings = append(rep.Warnings, w); progress("%s", w) }}

	// The queue must hold more rows than the pool can take in a window, or the last part of
	// the window measures an empty queue. The first guess is generous; after that the guess
	// follows the fastest rate seen, and a configuration that ran dry is measured again with
	// a bigger queue.
	rate := 60_000.0
	for _, workers := range opts.Workers {
		for _, batch := range opts.Batches {
			res, err := measureCell(ctx, db, cp, claimDSN, Claim{Workers: workers, Batch: batch, Warmup: opts.Warmup, Window: opts.Duration}, &rate, progress)
			if err != nil {
				return nil, err
			}
			rep.Claims = append(rep.Claims, res)
		}
	}

	progress("migrating %s with rivermigrate", RiverDatabase)
	if err := MigrateRiver(ctx, riverDSN); err != nil {
		return nil, err
	}
	river, err := measureRiver(ctx, cp, riverDSN, opts, progress)
	if err != nil {
		return nil, err
	}
	rep.River = &river
	db.Close()

	progress("pgbench -i -s %d -q", PgbenchScale)
	if err := PgbenchInit(ctx, opts.PgbenchPath, pgbenchDSN, PgbenchScale); err != nil {
		return nil, err
	}
	pdb, err := pg.Open(ctx, pg.Config{DSN: pgbenchDSN, MaxConns: 1, ApplicationName: "pollux-bench setup"})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", PgbenchDatabase, err)
	}
	defer pdb.Close()
	cp.db = pdb
	for _, c := range []struct{ clients, threads int }{{1, 1}, {16, 2}} {
		if err := cp.checkpoint(ctx); err != nil {
			return nil, err
		}
		progress("pgbench -N -c %d -j %d -T %d", c.clients, c.threads, wholeSeconds(opts.PgbenchDuration))
		res, err := RunPgbench(ctx, opts.PgbenchPath, pgbenchDSN, c.clients, c.threads, opts.PgbenchDuration)
		if err != nil {
			return nil, err
		}
		progress("  %.1f tps", res.TPS)
		rep.Pgbench = append(rep.Pgbench, res)
	}
	pdb.Close()
	rep.Machine.LoadEnd = loadAverage()
	return rep, nil
}

// measureCell fills the queue and measures one configuration, again with a bigger queue if
// it ran dry. rate is the rows/s the next fill is sized for; it grows with what was seen.
func measureCell(ctx context.Context, db *pg.DB, cp *checkpointer, dsn string, c Claim, rate *float64,
	progress func(string, ...any)) (ClaimResult, error) {
	// Room for the warm-up, the window, the pool's start and drain, and one batch per worker
	// still pending at the end (see below).
	span := (c.Warmup + c.Window + time.Second).Seconds()
	for attempt := 1; ; attempt++ {
		rows := int(*rate*span) + 2*c.Workers*c.Batch
		progress("workers %d, batch %d: filling %d rows", c.Workers, c.Batch, rows)
		if err := Fill(ctx, db, rows); err != nil {
			return ClaimResult{}, err
		}
		// Start every window from the same WAL position, so that a checkpoint forced by the
		// fill's WAL does not land in some windows and not in others.
		if err := cp.checkpoint(ctx); err != nil {
			return ClaimResult{}, err
		}
		res, err := MeasureClaim(ctx, dsn, c)
		if err != nil {
			return ClaimResult{}, fmt.Errorf("workers %d, batch %d: %w", c.Workers, c.Batch, err)
		}
		*rate = max(*rate, 2*res.RowsPerSecond())
		// Rows only leave the queue, so a batch per worker still pending after the drain
		// means there was one throughout the window: no step came back short for want of rows.
		if res.Remaining >= int64(c.Workers*c.Batch) {
			progress("  %.0f rows/s, %.0f transactions/s", res.RowsPerSecond(), res.TxPerSecond())
			return res, nil
		}
		if attempt == 3 {
			return ClaimResult{}, fmt.Errorf("workers %d, batch %d: the queue of %d rows ran dry three times", c.Workers, c.Batch, rows)
		}
		*rate *= 2
		progress("  the queue ran dry (%d rows left); measuring again with a bigger one", res.Remaining)
	}
}

// measureRiver measures River's bench shape with the claim cells' warm-up and window, again
// with twice the backlog if the queue ran low.
func measureRiver(ctx context.Context, cp *checkpointer, dsn string, opts Options, progress func(string, ...any)) (RiverResult, error) {
	backlog := RiverBacklog
	for attempt := 1; ; attempt++ {
		progress("river: %d workers, InsertMany batches of %d, backlog %d", RiverMaxWorkers, RiverInsertBatch, backlog)
		res, err := MeasureRiver(ctx, dsn, River{Warmup: opts.Warmup, Window: opts.Duration, Backlog: backlog,
			BeforeStart: cp.checkpoint, Log: opts.Progress})
		if err != nil {
			return RiverResult{}, fmt.Errorf("river: %w", err)
		}
		if !res.RanDry() {
			progress("  %.0f jobs/s", res.JobsPerSecond())
			return res, nil
		}
		if attempt == 3 {
			return RiverResult{}, fmt.Errorf("river: the backlog of %d jobs ran low (%d) three times", backlog, res.LowWater)
		}
		backlog *= 2
		progress("  the backlog fell to %d jobs; measuring again with a bigger one", res.LowWater)
	}
}

// checkpointer runs CHECKPOINT before measurements; a role that may not gets a warning in
// the report instead of a failed run, since the figures are still worth having.
type checkpointer struct {
	db       *pg.DB
	disabled bool
	warn     func(string)
}

func (c *checkpointer) checkpoint(ctx context.Context) error {
	if c.disabled {
		return nil
	}
	_, err := c.db.Pool().Exec(ctx, "checkpoint")
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	c.disabled = true
	c.warn(fmt.Sprintf("no CHECKPOINT before measurements (%v); a checkpoint may fall into a window", err))
	return nil
}

func (o *Options) normalise() error {
	switch {
	case o.AdminDSN == "":
		return errors.New("a database url is required")
	case len(o.Workers) == 0 || len(o.Batches) == 0:
		return errors.New("at least one worker count and one batch size are required")
	case o.Duration <= 0:
		return fmt.Errorf("duration must be positive, got %s", o.Duration)
	case o.PgbenchDuration <= 0:
		return fmt.Errorf("pgbench duration must be positive, got %s", o.PgbenchDuration)
	}
	for _, n := range append(append([]int(nil), o.Workers...), o.Batches...) {
		if n < 1 {
			return fmt.Errorf("worker counts and batch sizes must be at least 1, got %d", n)
		}
	}
	if o.Warmup <= 0 {
		o.Warmup = 500 * time.Millisecond
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.PgbenchPath == "" {
		p, err := FindPgbench()
		if err != nil {
			return err
		}
		o.PgbenchPath = p
	}
	return nil
}

func readServer(ctx context.Context, db *pg.DB) (Server, error) {
	var s Server
	err := db.Pool().QueryRow(ctx, `select current_setting('server_version'), current_setting('shared_buffers'),
		current_setting('synchronous_commit'), current_setting('fsync')`).
		Scan(&s.Version, &s.SharedBuffers, &s.SynchronousCommit, &s.Fsync)
	if err != nil {
		return Server{}, fmt.Errorf("read server settings: %w", err)
	}
	return s, nil
}

func recreateDatabase(ctx context.Context, adminDSN, name string) error {
	if err := dropDatabase(ctx, adminDSN, name); err != nil {
		return err
	}
	if err := adminExec(ctx, adminDSN, "create database "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

func dropDatabase(ctx context.Context, adminDSN, name string) error {
	// FORCE ends sessions an interrupted earlier run may have left behind.
	if err := adminExec(ctx, adminDSN, "drop database if exists "+pgx.Identifier{name}.Sanitize()+" with (force)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

func adminExec(ctx context.Context, adminDSN, sql string) error {
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		return fmt.Errorf("connect to server: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

// loadAverage returns the 1-minute load average, or "" off Linux.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return ""
}
