package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pollux-storage/pollux/framework/claim"
	"github.com/pollux-storage/pollux/framework/pg"
)

// Claim is one configuration of the claim pool.
type Claim struct {
	// Workers is the pool's worker count; the database pool gets two connections more, as
	// a daemon's would for its other work.
	Workers int
	// Batch is the most rows one step claims.
	Batch int
	// Warmup runs before the window and is not counted: connections open and plans are
	// made in it.
	Warmup time.Duration
	// Window is how long the rate is measured for.
	Window time.Duration
}

// ClaimResult is what one configuration did.
type ClaimResult struct {
	Workers, Batch int
	// Window is the measured length of the window (the timer's, not the requested one).
	Window time.Duration
	// Rows counts rows whose claim committed within the window.
	Rows int64
	// Txs counts steps that committed within the window with at least one row.
	Txs int64
	// TotalRows counts every row claimed from Start to Stop, warm-up and drain included.
	TotalRows int64
	// Remaining counts the rows still pending after the pool stopped.
	Remaining int64
}

// RowsPerSecond is the claim rate over the window.
func (r ClaimResult) RowsPerSecond() float64 { return perSecond(r.Rows, r.Window) }

// TxPerSecond is the rate of steps that claimed at least one row, over the window.
func (r ClaimResult) TxPerSecond() float64 { return perSecond(r.Txs, r.Window) }

func perSecond(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// MeasureClaim runs a claim pool over the queue of the database at dsn, filled beforehand
// (Fill), and counts the rows its steps complete. Each step is one statement, its own
// transaction (db.Do), calling bench_item_claim: the shape of the daemons' claims, which
// run their claim function so (with DoIdempotent; Do here, so that a step whose commit is in
// doubt fails the measurement rather than counting rows twice). Any failed step fails the
// measurement: the pool would retry it, but a rate that includes back-offs is not the rate
// asked for.
func MeasureClaim(ctx context.Context, dsn string, c Claim) (ClaimResult, error) {
	if c.Workers < 1 || c.Batch < 1 || c.Window <= 0 || c.Warmup < 0 {
		return ClaimResult{}, fmt.Errorf("invalid claim configuration %+v", c)
	}
	db, err := pg.Open(ctx, pg.Config{DSN: dsn, MaxConns: int32(c.Workers + 2), ApplicationName: "pollux-bench claim"})
	if err != nil {
		return ClaimResult{}, fmt.Errorf("open claim pool database: %w", err)
	}
	defer db.Close()

	var rows, txs atomic.Int64
	var failed struct {
		sync.Mutex
		n     int
		first error
	}
	step := func(ctx context.Context) (int, error) {
		n := 0
		// One statement, so one transaction without an explicit BEGIN and COMMIT, as the
		// daemons' claims run (stagerd's subrequest_claim, schedulerd's, diskserverd's).
		err := db.Do(ctx, "bench claim", func(q pg.Querier) error {
			n = 0 // a retried statement counts afresh
			r, err := q.Query(ctx, "select id from bench_item_claim($1)", c.Batch)
			if err != nil {
				return err
			}
			defer r.Close()
			for r.Next() {
				n++
			}
			return r.Err()
		})
		if err != nil {
			failed.Lock()
			if failed.n++; failed.first == nil {
				failed.first = err
			}
			failed.Unlock()
			return 0, err
		}
		// Counted only after the commit: a row is complete when its claim is durable.
		if n > 0 {
			rows.Add(int64(n))
			txs.Add(1)
		}
		return n, nil
	}
	pool, err := claim.New(claim.Config{Name: "bench", Workers: c.Workers, Batch: c.Batch,
		PollInterval: 50 * time.Millisecond, Step: step}, nil, nil, nil)
	if err != nil {
		return ClaimResult{}, err
	}
	runCtx, abort := context.WithCancel(ctx)
	defer abort()
	if err := pool.Start(runCtx); err != nil {
		return ClaimResult{}, fmt.Errorf("start claim pool: %w", err)
	}
	stopped := false
	stop := func() error {
		stopped = true
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		return pool.Stop(stopCtx)
	}
	defer func() {
		if !stopped {
			_ = stop() // the error that brought us here is the one to report
		}
	}()

	// The warm-up is a deliberate wait, not synchronisation.
	if err := wait(ctx, c.Warmup); err != nil {
		return ClaimResult{}, err
	}
	rows0, txs0, t0 := rows.Load(), txs.Load(), time.Now()
	if err := wait(ctx, c.Window); err != nil {
		return ClaimResult{}, err
	}
	rows1, txs1, t1 := rows.Load(), txs.Load(), time.Now()
	if err := stop(); err != nil {
		return ClaimResult{}, fmt.Errorf("stop claim pool: %w", err)
	}
	failed.Lock()
	defer failed.Unlock()
	if failed.n > 0 {
		return ClaimResult{}, fmt.Errorf("%d claim steps failed, the first with: %w", failed.n, failed.first)
	}
	remaining, err := Pending(ctx, db)
	if err != nil {
		return ClaimResult{}, err
	}
	return ClaimResult{Workers: c.Workers, Batch: c.Batch, Window: t1.Sub(t0),
		Rows: rows1 - rows0, Txs: txs1 - txs0, TotalRows: rows.Load(), Remaining: remaining}, nil
}

// wait returns after d, or with ctx's error when ctx ends first.
func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
