package claim_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pollux-storage/pollux/framework/claim"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/pgtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// queue is a work table with the claim-and-decide shape Pollux's logic uses: the claim
// locks with SKIP LOCKED and marks the rows processed in the same statement.
var queue = pgtest.SQLTemplate(`
		create table work_item (id bigint generated always as identity primary key, processed integer not null default 0);
		create index work_item_new_idx on work_item (id) where processed = 0;
		-- PL/pgSQL, planned with the batch it is given: a SQL function plans LIMIT p_batch
		-- for an unknown limit (a tenth of the table), which once the table is analysed is a
		-- sort of the whole queue at every claim (20 ms instead of 0.5 at 100,000 rows).
		create function work_item_claim(p_batch integer) returns table (id bigint) language plpgsql as $$
		begin
			return query
			with c as (select w.id from work_item w where w.processed = 0 order by w.id
			           for update skip locked limit p_batch)
			update work_item w set processed = w.processed + 1 from c where w.id = c.id returning w.id;
		end $$;`)

type bundle struct {
	db  *pg.DB
	ctx context.Context
}

func setup(t *testing.T) *bundle {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	db, err := pg.Open(ctx, pg.Config{DSN: pgtest.NewDatabase(t, queue), MaxConns: 24})
	require.NoError(t, err)
	t.Cleanup(db.Close)
	return &bundle{db: db, ctx: ctx}
}

// insert adds n rows and announces them with a NOTIFY in the same transaction.
func (b *bundle) insert(t *testing.T, n int) {
	t.Helper()
	err := b.db.Tx(b.ctx, "insert work", func(q pg.Querier) error {
		if _, err := q.Exec(b.ctx, "insert into work_item (processed) select 0 from generate_series(1, $1)", n); err != nil {
			return err
		}
		_, err := q.Exec(b.ctx, "notify work_item_new")
		return err
	})
	require.NoError(t, err)
	b.analyze(t)
}

// analyze gives the planner the table's size at once, so the claim's plan does not depend
// on when autovacuum gets to the table (a plan that changed mid-test made TestExclusiveClaims
// take 108 s instead of 3).
func (b *bundle) analyze(t *testing.T) {
	t.Helper()
	_, err := b.db.Pool().Exec(b.ctx, "analyze work_item")
	require.NoError(t, err)
}

// insertQuietly adds n rows without a NOTIFY.
func (b *bundle) insertQuietly(t *testing.T, n int) {
	t.Helper()
	_, err := b.db.Pool().Exec(b.ctx, "insert into work_item (processed) select 0 from generate_series(1, $1)", n)
	require.NoError(t, err)
	b.analyze(t)
}

// step claims a batch, remembering every id it saw.
func (b *bundle) step(batch int, seen *sync.Map, dups *atomic.Int64) claim.Step {
	return func(ctx context.Context) (int, error) {
		var ids []int64
		err := b.db.Tx(ctx, "claim work", func(q pg.Querier) error {
			ids = ids[:0]
			rows, err := q.Query(ctx, "select id from work_item_claim($1)", batch)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var id int64
				if err := rows.Scan(&id); err != nil {
					return err
				}
				ids = append(ids, id)
			}
			return rows.Err()
		})
		if err != nil {
			return 0, err
		}
		for _, id := range ids {
			if _, loaded := seen.LoadOrStore(id, true); loaded {
				dups.Add(1)
			}
		}
		return len(ids), nil
	}
}

func (b *bundle) unprocessed(t *testing.T) (zero, many int) {
	t.Helper()
	require.NoError(t, b.db.Pool().QueryRow(b.ctx,
		"select count(*) filter (where processed = 0), count(*) filter (where processed > 1) from work_item").Scan(&zero, &many))
	return zero, many
}

func eventually(t *testing.T, within time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestExclusiveClaims(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const rows = 100_000
	b.insert(t, rows)

	var seen sync.Map
	var dups, claimed atomic.Int64
	step := b.step(10, &seen, &dups)
	pool, err := claim.New(claim.Config{Name: "exclusive", Workers: 16, Batch: 10, PollInterval: 50 * time.Millisecond,
		Step: func(ctx context.Context) (int, error) {
			n, err := step(ctx)
			claimed.Add(int64(n))
			return n, err
		}}, nil, nil, nil)
	require.NoError(t, err)
	require.NoError(t, pool.Start(b.ctx))
	// A guard against a hang, not a timing assertion: a loaded 2-core machine is slow.
	eventually(t, 8*time.Minute, func() bool { return claimed.Load() >= rows }, "all rows claimed")
	require.NoError(t, pool.Stop(b.ctx))

	require.Zero(t, dups.Load(), "rows handed to two workers")
	require.EqualValues(t, rows, claimed.Load())
	zero, many := b.unprocessed(t)
	require.Zero(t, zero, "rows skipped")
	require.Zero(t, many, "rows processed more than once")
}

func TestKilledWorkerReleasesRows(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.insert(t, 50)

	// A worker claims 5 rows and hangs inside its transaction.
	conn, err := b.db.Pool().Acquire(b.ctx)
	require.NoError(t, err)
	defer conn.Release()
	tx, err := conn.Begin(b.ctx)
	require.NoError(t, err)
	var pid int32
	require.NoError(t, tx.QueryRow(b.ctx, "select pg_backend_pid()").Scan(&pid))
	_, err = tx.Exec(b.ctx, "select * from work_item_claim(5)")
	require.NoError(t, err)

	var seen sync.Map
	var dups atomic.Int64
	step := b.step(100, &seen, &dups)
	n, err := step(b.ctx)
	require.NoError(t, err)
	require.Equal(t, 45, n, "rows locked by the hung worker must be skipped, not waited for")

	// The hung worker's connection is closed by the server; its claim rolls back.
	var ok bool
	require.NoError(t, b.db.Pool().QueryRow(b.ctx, "select pg_terminate_backend($1)", pid).Scan(&ok))
	require.True(t, ok)
	_, err = tx.Exec(b.ctx, "select 1")
	require.Error(t, err, "the killed worker's transaction must be gone")
	class, _ := pg.Classify(err)
	require.Equal(t, pg.Transient, class, "a killed connection is transient: %v", err)

	eventually(t, 10*time.Second, func() bool {
		n, err := step(b.ctx)
		require.NoError(t, err)
		return n == 0 && func() bool { z, _ := b.unprocessed(t); return z == 0 }()
	}, "the released rows are claimed by others")
	require.Zero(t, dups.Load())
	zero, many := b.unprocessed(t)
	require.Zero(t, zero)
	require.Zero(t, many)
}

// idlePool starts a pool of workers over the work table and waits until every worker has
// made its first claim, found nothing and gone idle: from then on a worker claims again
// only when something wakes it. It returns the rows claimed so far and the metrics.
func (b *bundle) idlePool(t *testing.T, cfg claim.Config, listener claim.Subscriber) (claimed *atomic.Int64, reg *prometheus.Registry) {
	t.Helper()
	var seen sync.Map
	var dups, steps atomic.Int64
	claimed = &atomic.Int64{}
	step := b.step(cfg.Batch, &seen, &dups)
	cfg.Step = func(ctx context.Context) (int, error) {
		n, err := step(ctx)
		claimed.Add(int64(n))
		steps.Add(1)
		return n, err
	}
	reg = prometheus.NewRegistry()
	pool, err := claim.New(cfg, listener, claim.NewMetrics(reg), nil)
	require.NoError(t, err)
	require.NoError(t, pool.Start(b.ctx))
	t.Cleanup(func() {
		require.NoError(t, pool.Stop(b.ctx))
		require.Zero(t, dups.Load(), "rows handed to two workers")
	})
	eventually(t, 10*time.Second, func() bool { return steps.Load() >= int64(cfg.Workers) }, "every worker made its first claim")
	require.Zero(t, claimed.Load())
	return claimed, reg
}

// wakeups reads pollux_claim_wakeups_total of a pool for one reason.
func wakeups(t *testing.T, reg *prometheus.Registry, pool, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "pollux_claim_wakeups_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["pool"] == pool && labels["reason"] == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestNotifyWakesIdleWorkers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	listener := pg.NewListener(b.db, nil)
	// The pool subscribes before the listener connects, so that Ready means its channel
	// is listened to: a NOTIFY sent after Ready cannot be missed.
	const deadline = 10 * time.Second
	claimed, reg := b.idlePool(t, claim.Config{Name: "notify", Workers: 4, Batch: 10,
		// Far beyond the deadline: only a NOTIFY (or a peer it woke) can make a worker claim.
		PollInterval: 100 * deadline, Channels: []string{"work_item_new"}}, listener)
	lctx, stopListener := context.WithCancel(b.ctx)
	listenerDone := make(chan struct{})
	go func() { defer close(listenerDone); _ = listener.Run(lctx) }()
	t.Cleanup(func() { stopListener(); <-listenerDone })
	<-listener.Ready()

	b.insert(t, 1000)
	eventually(t, deadline, func() bool { return claimed.Load() == 1000 }, "a NOTIFY wakes the pool and it drains the queue")
	require.Positive(t, wakeups(t, reg, "notify", "notify"))
	require.Zero(t, wakeups(t, reg, "notify", "poll"), "no worker woke by its poll timer")
}

func TestPollWakesIdleWorkersWithoutNotify(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// No listener: rows that come without a NOTIFY (or whose NOTIFY was lost) are found by
	// the poll.
	claimed, reg := b.idlePool(t, claim.Config{Name: "poll", Workers: 2, Batch: 10, PollInterval: 100 * time.Millisecond}, nil)
	b.insertQuietly(t, 100)
	eventually(t, 10*time.Second, func() bool { return claimed.Load() == 100 }, "the poll finds rows no NOTIFY announced")
	require.Positive(t, wakeups(t, reg, "poll", "poll"))
	require.Zero(t, wakeups(t, reg, "poll", "notify"))
}

func TestStopDrainsStepsInFlight(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.insert(t, 3)
	inStep := make(chan struct{}, 1)
	var finished atomic.Int64
	pool, err := claim.New(claim.Config{Name: "drain", Workers: 1, Batch: 1, Step: func(ctx context.Context) (int, error) {
		return 1, b.db.Tx(ctx, "slow claim", func(q pg.Querier) error {
			if _, err := q.Exec(ctx, "select * from work_item_claim(1)"); err != nil {
				return err
			}
			select {
			case inStep <- struct{}{}:
			default:
			}
			_, err := q.Exec(ctx, "select pg_sleep(0.3)")
			if err == nil {
				finished.Add(1)
			}
			return err
		})
	}}, nil, nil, nil)
	require.NoError(t, err)
	require.NoError(t, pool.Start(b.ctx))
	<-inStep
	stopCtx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, pool.Stop(stopCtx), "a step within the deadline finishes")
	require.EqualValues(t, 1, finished.Load(), "the step in flight ran to the end and no new one started")
	zero, _ := b.unprocessed(t)
	require.Equal(t, 2, zero, "exactly the in-flight claim committed")
}

func TestStopAbortsStepsPastTheDeadline(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.insert(t, 1)
	inStep := make(chan struct{})
	pool, err := claim.New(claim.Config{Name: "abort", Workers: 1, Batch: 1, Step: func(ctx context.Context) (int, error) {
		return 1, b.db.Tx(ctx, "stuck claim", func(q pg.Querier) error {
			if _, err := q.Exec(ctx, "select * from work_item_claim(1)"); err != nil {
				return err
			}
			close(inStep)
			_, err := q.Exec(ctx, "select pg_sleep(60)")
			return err
		})
	}}, nil, nil, nil)
	require.NoError(t, err)
	require.NoError(t, pool.Start(b.ctx))
	<-inStep
	stopCtx, cancel := context.WithTimeout(b.ctx, 300*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, pool.Stop(stopCtx), context.DeadlineExceeded)
	eventually(t, 5*time.Second, func() bool { z, _ := b.unprocessed(t); return z == 1 }, "the aborted claim rolls back and releases its row")
}
