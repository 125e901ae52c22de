package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/pollux-storage/pollux/framework/pg"
)

// RiverDatabase is the scratch database Run creates for River's tables and drops again.
const RiverDatabase = "pollux_bench_river"

// The settings of River's own benchmark (`river bench`, cmd/river/riverbench in River's
// repository). Its CLI is not on the module proxy, so MeasureRiver drives the library with
// them instead; keeping them equal to the CLI's is what makes the figure River's bench shape
// rather than some configuration of ours.
const (
	RiverMaxWorkers        = 2_000
	RiverFetchCooldown     = 2 * time.Millisecond
	RiverFetchPollInterval = 20 * time.Millisecond
	RiverInsertBatch       = 5_000
	// RiverBacklog is the number of unworked jobs the inserter tops the queue up to.
	RiverBacklog = 75_000
	// riverTopUpInterval is how often the inserter looks at the backlog, as the CLI does.
	riverTopUpInterval = 250 * time.Millisecond
)

// River is one measurement of River's bench shape.
type River struct {
	// Warmup runs after the client starts and is not counted.
	Warmup time.Duration
	// Window is how long completions are counted for.
	Window time.Duration
	// InsertBatch is how many jobs one InsertMany call inserts; 0 means RiverInsertBatch.
	InsertBatch int
	// Backlog is how many unworked jobs the inserter keeps ahead of the workers: the queue is
	// filled to it before the client starts and topped up to it during the run; 0 means
	// RiverBacklog.
	Backlog int
	// BeforeStart, if set, runs once the queue is filled and before the client starts (Run
	// puts a CHECKPOINT there, as before every claim window).
	BeforeStart func(context.Context) error
	// Log receives River's own log lines at warn level and above; nil discards them.
	Log io.Writer
}

// RiverResult is what one measurement of River's bench shape did.
type RiverResult struct {
	// Version is the River module the benchmark was built with, if the binary says.
	Version     string
	MaxWorkers  int
	InsertBatch int
	Backlog     int
	// Window is the measured length of the window.
	Window time.Duration
	// Jobs counts jobs completed inside the window.
	Jobs int64
	// TotalJobs counts every job completed from Start to Stop; Inserted every job inserted.
	TotalJobs, Inserted int64
	// LowWater is the smallest backlog (inserted less worked) seen during the window.
	LowWater int64
	// LoadStart and LoadEnd are the 1-minute load averages before and after, or "".
	LoadStart, LoadEnd string
}

// JobsPerSecond is the completion rate over the window.
func (r RiverResult) JobsPerSecond() float64 { return perSecond(r.Jobs, r.Window) }

// RanDry reports whether the backlog fell below one full fetch during the window: below
// MaxWorkers, a producer's fetch may have come back short for want of jobs, and the window
// measured the inserter rather than River's claim path.
func (r RiverResult) RanDry() bool { return r.LowWater < int64(r.MaxWorkers) }

// MigrateRiver brings River's tables in the database at dsn to River's head with River's own
// rivermigrate, so that no River SQL is copied here.
func MigrateRiver(ctx context.Context, dsn string) error {
	db, err := pg.Open(ctx, pg.Config{DSN: dsn, MaxConns: 1, ApplicationName: "pollux-bench river migrate"})
	if err != nil {
		return fmt.Errorf("open river database: %w", err)
	}
	defer db.Close()
	// rivermigrate logs every step at info; the caller reports instead.
	m, err := rivermigrate.New(riverpgxv5.New(db.Pool()), &rivermigrate.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fmt.Errorf("river migrator: %w", err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("migrate river up: %w", err)
	}
	return nil
}

// riverBenchArgs carries a sequence number, as the CLI's jobs do, so that the rows are the
// size River's bench inserts.
type riverBenchArgs struct {
	Num int `json:"num"`
}

func (riverBenchArgs) Kind() string { return "pollux_bench" }

// riverBenchWorker does nothing but count, so the window measures River's fetch and
// completion, not work. The count feeds only the inserter's backlog estimate; an atomic add
// costs far less than the per-job event a subscription would make River build.
type riverBenchWorker struct {
	river.WorkerDefaults[riverBenchArgs]
	worked *atomic.Int64
}

func (w *riverBenchWorker) Work(context.Context, *river.Job[riverBenchArgs]) error {
	w.worked.Add(1)
	return nil
}

// MeasureRiver runs River's bench shape on the database at dsn, whose River tables are
// migrated (MigrateRiver): it empties river_job, inserts the backlog with InsertMany, starts
// a client with one queue of RiverMaxWorkers workers and the CLI's fetch settings, keeps the
// backlog topped up while the client works, and counts the jobs River's batch completer
// marked completed inside the window.
//
// The count comes from river_job after the client has stopped (state 'completed' and
// finalized_at inside the window), not from an event subscription, for three reasons: a
// subscription drops events when its buffer is full, and River's completer delivers them
// in bursts of up to 5,000; with no subscriber River builds no per-job event at all, so the
// count costs the measured client nothing on a machine it shares with the server; and
// finalized_at is stamped by this process's clock when the worker returns, the clock the
// window is timed with. It is the worked time, a completer batch (≤ 250 ms) before the
// commit; in a steady run that lag shifts both ends of the window alike.
func MeasureRiver(ctx context.Context, dsn string, r River) (RiverResult, error) {
	if r.Window <= 0 || r.Warmup < 0 || r.InsertBatch < 0 || r.Backlog < 0 {
		return RiverResult{}, fmt.Errorf("invalid river configuration %+v", r)
	}
	if r.InsertBatch == 0 {
		r.InsertBatch = RiverInsertBatch
	}
	if r.Backlog == 0 {
		r.Backlog = RiverBacklog
	}
	logOut := r.Log
	if logOut == nil {
		logOut = io.Discard
	}
	res := RiverResult{Version: riverVersion(), MaxWorkers: RiverMaxWorkers, InsertBatch: r.InsertBatch, Backlog: r.Backlog}

	// pgx's default pool size (max(4, cores)), as the CLI opens its pool.
	db, err := pg.Open(ctx, pg.Config{DSN: dsn, ApplicationName: "pollux-bench river"})
	if err != nil {
		return RiverResult{}, fmt.Errorf("open river database: %w", err)
	}
	defer db.Close()
	// Every measurement starts from an empty table, as the CLI's does; TRUNCATE leaves no
	// dead rows from an earlier attempt behind.
	if _, err := db.Pool().Exec(ctx, "truncate river_job"); err != nil {
		return RiverResult{}, fmt.Errorf("empty river_job: %w", err)
	}

	var worked, inserted atomic.Int64
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &riverBenchWorker{worked: &worked}); err != nil {
		return RiverResult{}, fmt.Errorf("add river worker: %w", err)
	}
	client, err := river.NewClient(riverpgxv5.New(db.Pool()), &river.Config{
		FetchCooldown:     RiverFetchCooldown,
		FetchPollInterval: RiverFetchPollInterval,
		Logger:            slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: RiverMaxWorkers}},
		Workers:           workers,
	})
	if err != nil {
		return RiverResult{}, fmt.Errorf("new river client: %w", err)
	}

	var (
		inWindow atomic.Bool
		lowWater atomic.Int64
	)
	lowWater.Store(int64(r.Backlog))
	// note keeps the smallest backlog seen inside the window.
	note := func() {
		if !inWindow.Load() {
			return
		}
		n := inserted.Load() - worked.Load()
		for {
			cur := lowWater.Load()
			if n >= cur || lowWater.CompareAndSwap(cur, n) {
				return
			}
		}
	}
	batch := make([]river.InsertManyParams, r.InsertBatch)
	seq := 0
	// topUp inserts whole batches until the backlog reaches r.Backlog or done closes (when
	// River works faster than InsertMany inserts, the backlog may never get there). The
	// backlog falls while no insert commits, so its low points are just before each insert
	// and at the end of the window; note samples it there.
	done := make(chan struct{})
	topUp := func(ctx context.Context) error {
		for {
			note()
			if inserted.Load()-worked.Load() >= int64(r.Backlog) {
				return nil
			}
			select {
			case <-done:
				return nil
			default:
			}
			for i := range batch {
				seq++
				batch[i] = river.InsertManyParams{Args: riverBenchArgs{Num: seq}}
			}
			if _, err := client.InsertMany(ctx, batch); err != nil {
				return fmt.Errorf("insert river jobs: %w", err)
			}
			inserted.Add(int64(len(batch)))
		}
	}
	if err := topUp(ctx); err != nil {
		return RiverResult{}, err
	}
	// As Fill does for the claim queue: a plan made for the filled table.
	if _, err := db.Pool().Exec(ctx, "analyze river_job"); err != nil {
		return RiverResult{}, fmt.Errorf("analyze river_job: %w", err)
	}
	if r.BeforeStart != nil {
		if err := r.BeforeStart(ctx); err != nil {
			return RiverResult{}, err
		}
	}

	res.LoadStart = loadAverage()
	runCtx, abort := context.WithCancel(ctx)
	defer abort()
	if err := client.Start(runCtx); err != nil {
		return RiverResult{}, fmt.Errorf("start river client: %w", err)
	}
	var (
		insertErr error
		inserter  sync.WaitGroup
	)
	inserter.Go(func() {
		t := time.NewTicker(riverTopUpInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			if err := topUp(runCtx); err != nil {
				insertErr = err // read after inserter.Wait
				return
			}
		}
	})
	stopped := false
	stop := func() error {
		stopped = true
		close(done)
		inserter.Wait()
		// River's Stop waits for running jobs and the completer's last batch, so every
		// completion is in river_job when it returns.
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		return client.Stop(stopCtx)
	}
	defer func() {
		if !stopped {
			_ = stop() // the error that brought us here is the one to report
		}
	}()

	// The warm-up is a deliberate wait, and then as long as River takes to work its first
	// job: on a loaded machine its start (elections, the first fetch) can outlast the
	// warm-up, and a window that opened before River worked would measure its start.
	if err := wait(ctx, r.Warmup); err != nil {
		return RiverResult{}, err
	}
	for worked.Load() == 0 {
		if err := wait(ctx, 5*time.Millisecond); err != nil {
			return RiverResult{}, fmt.Errorf("river worked no job: %w", err)
		}
	}
	t0 := time.Now()
	inWindow.Store(true)
	if err := wait(ctx, r.Window); err != nil {
		return RiverResult{}, err
	}
	// The stretch since the inserter last looked has its low point now.
	note()
	t1 := time.Now()
	inWindow.Store(false)
	res.LoadEnd = loadAverage()
	if err := stop(); err != nil {
		return RiverResult{}, fmt.Errorf("stop river client: %w", err)
	}
	if insertErr != nil {
		return RiverResult{}, insertErr
	}

	var other int64
	err = db.Pool().QueryRow(ctx, `select
			count(*) filter (where state = 'completed' and finalized_at >= $1 and finalized_at < $2),
			count(*) filter (where state = 'completed'),
			count(*) filter (where state not in ('completed', 'available'))
		from river_job`, t0, t1).Scan(&res.Jobs, &res.TotalJobs, &other)
	if err != nil {
		return RiverResult{}, fmt.Errorf("count river jobs: %w", err)
	}
	// A no-op worker never fails, and Stop lets running jobs finish: any other state means
	// the figure counts something other than clean completions.
	if other > 0 {
		return RiverResult{}, fmt.Errorf("%d river jobs neither completed nor available after the client stopped", other)
	}
	res.Window, res.Inserted, res.LowWater = t1.Sub(t0), inserted.Load(), lowWater.Load()
	return res, nil
}

// riverVersion is the River module this binary was built with, or "".
func riverVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, m := range info.Deps {
		if m.Path == "github.com/riverqueue/river" {
			return m.Version
		}
	}
	return ""
}
