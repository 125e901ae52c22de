package pg_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/pgtest"
	"github.com/pollux-storage/pollux/framework/pgtest/pgproxy"
)

// proxied is a test's database reached through a proxy that can lose a commit's reply;
// direct reaches it without the proxy, to look at what committed.
type proxied struct {
	*bundle
	proxy  *pgproxy.Proxy
	direct *pg.DB
}

func setupProxied(t *testing.T) *proxied {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	dsn := pgtest.NewDatabase(t, flakyDB)
	proxy := pgproxy.New(t, dsn)
	reg := prometheus.NewRegistry()
	db, err := pg.Open(ctx, pg.Config{DSN: proxy.DSN(), Registerer: reg, RetryBudget: 20 * time.Second})
	require.NoError(t, err)
	t.Cleanup(db.Close)
	direct, err := pg.Open(ctx, pg.Config{DSN: dsn})
	require.NoError(t, err)
	t.Cleanup(direct.Close)
	return &proxied{bundle: &bundle{db: db, reg: reg, ctx: ctx}, proxy: proxy, direct: direct}
}

// rows counts the rows of t with id, as committed.
func (p *proxied) rows(t *testing.T, id int) int {
	t.Helper()
	var n int
	require.NoError(t, p.direct.Pool().QueryRow(p.ctx, "select count(*) from t where id = $1", id).Scan(&n))
	return n
}

func (p *proxied) unknown(t *testing.T, action string) float64 {
	t.Helper()
	mfs, err := p.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "pollux_db_outcome_unknown_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == action {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func requireCut(t *testing.T, cut <-chan struct{}) {
	t.Helper()
	select {
	case <-cut:
	default:
		t.Fatal("the proxy did not drop the reply it was armed for")
	}
}

// An idempotent transaction whose COMMIT reply is lost is run again, and the re-run finds
// its own row: it succeeds once, and there is exactly one row.
func TestIdempotentTxIsRetriedAfterItsCommitReplyIsLost(t *testing.T) {
	t.Parallel()
	p := setupProxied(t)
	cut := p.proxy.Arm(pgproxy.Commit)
	attempts := 0
	err := p.db.TxIdempotent(p.ctx, "insert once", func(q pg.Querier) error {
		attempts++
		_, err := q.Exec(p.ctx, "insert into t values ($1) on conflict (id) do nothing", 1)
		return err
	})
	require.NoError(t, err)
	requireCut(t, cut)
	require.Equal(t, 2, attempts, "run again after the lost reply")
	require.Equal(t, 1, p.rows(t, 1))
	require.Equal(t, 1.0, p.unknown(t, "retried"))
	require.Zero(t, p.unknown(t, "returned"))
}

// A transaction not declared idempotent whose COMMIT reply is lost is not run again: the
// caller is told that the outcome is unknown (here it committed).
func TestTxWhoseCommitReplyIsLostReportsOutcomeUnknown(t *testing.T) {
	t.Parallel()
	p := setupProxied(t)
	cut := p.proxy.Arm(pgproxy.Commit)
	attempts := 0
	err := p.db.Tx(p.ctx, "insert", func(q pg.Querier) error {
		attempts++
		_, err := q.Exec(p.ctx, "insert into t values ($1)", 2)
		return err
	})
	require.ErrorIs(t, err, pg.ErrOutcomeUnknown)
	require.Contains(t, err.Error(), "insert: outcome unknown")
	class, _ := pg.Classify(err)
	require.Equal(t, pg.OutcomeUnknown, class)
	requireCut(t, cut)
	require.Equal(t, 1, attempts, "not run again")
	require.Equal(t, 1, p.rows(t, 2), "the commit went through; a re-run would have inserted twice")
	require.Equal(t, 1.0, p.unknown(t, "returned"))
}

// A connection that breaks before the COMMIT is sent takes the transaction with it, so
// even work not declared idempotent is run again.
func TestTxCutBeforeItsCommitIsRetried(t *testing.T) {
	t.Parallel()
	p := setupProxied(t)
	// The extended protocol (an argument): the statement's Sync inside a transaction
	// block commits nothing.
	cut := p.proxy.Arm(pgproxy.Statement("insert into t values"))
	attempts := 0
	err := p.db.Tx(p.ctx, "insert", func(q pg.Querier) error {
		attempts++
		_, err := q.Exec(p.ctx, "insert into t values ($1)", 3)
		return err
	})
	require.NoError(t, err)
	requireCut(t, cut)
	require.Equal(t, 2, attempts)
	require.Equal(t, 1, p.rows(t, 3))
	require.Zero(t, p.unknown(t, "returned"))
	require.Zero(t, p.unknown(t, "retried"))
	require.Equal(t, 1.0, testutil.ToFloat64(retries(t, p.bundle, "")))
}

// A statement of Do commits by itself: its lost reply is a lost commit reply.
func TestDoWhoseReplyIsLost(t *testing.T) {
	t.Parallel()
	p := setupProxied(t)

	cut := p.proxy.Arm(pgproxy.Statement("insert into t values"))
	attempts := 0
	err := p.db.Do(p.ctx, "insert", func(q pg.Querier) error {
		attempts++
		_, err := q.Exec(p.ctx, "insert into t values ($1)", 4)
		return err
	})
	require.ErrorIs(t, err, pg.ErrOutcomeUnknown)
	requireCut(t, cut)
	require.Equal(t, 1, attempts)
	require.Equal(t, 1, p.rows(t, 4))

	cut = p.proxy.Arm(pgproxy.Statement("insert into t values"))
	attempts = 0
	err = p.db.DoIdempotent(p.ctx, "insert once", func(q pg.Querier) error {
		attempts++
		_, err := q.Exec(p.ctx, "insert into t values ($1) on conflict (id) do nothing", 5)
		return err
	})
	require.NoError(t, err)
	requireCut(t, cut)
	require.Equal(t, 2, attempts)
	require.Equal(t, 1, p.rows(t, 5))
}

// What the server answers to a COMMIT is an answer, not an ambiguity: a deferred
// constraint that fails at commit rolls the transaction back and is returned at once.
func TestFailureAnsweredAtCommitIsNotAmbiguous(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.db.Pool().Exec(b.ctx, `create table d (id integer, constraint d_once unique (id) deferrable initially deferred);
		insert into d values (1)`)
	require.NoError(t, err)
	attempts := 0
	err = b.db.TxIdempotent(b.ctx, "deferred duplicate", func(q pg.Querier) error {
		attempts++
		_, err := q.Exec(b.ctx, "insert into d values (1)")
		return err
	})
	require.Equal(t, pgerrcode.UniqueViolation, pg.SQLState(err))
	require.False(t, errors.Is(err, pg.ErrOutcomeUnknown), "the server said it rolled back: %v", err)
	require.Equal(t, 1, attempts)
}

// Idempotent work given up after a lost commit reply (here the database stays out of reach
// until the budget is spent) may have committed: its error says the outcome is unknown.
func TestGivingUpAfterALostCommitReplyReportsOutcomeUnknown(t *testing.T) {
	t.Parallel()
	p := setupProxied(t)
	db, err := pg.Open(p.ctx, pg.Config{DSN: p.proxy.DSN(), RetryBudget: 100 * time.Millisecond})
	require.NoError(t, err)
	defer db.Close()
	cut := p.proxy.Arm(pgproxy.Commit)
	attempts := 0
	err = db.TxIdempotent(p.ctx, "insert once", func(q pg.Querier) error {
		attempts++
		if attempts > 1 {
			return fmt.Errorf("as if the server were gone: %w", io.ErrUnexpectedEOF)
		}
		_, err := q.Exec(p.ctx, "insert into t values ($1) on conflict (id) do nothing", 6)
		return err
	})
	requireCut(t, cut)
	require.ErrorIs(t, err, pg.ErrOutcomeUnknown)
	require.ErrorContains(t, err, "gave up after")
	// At least one re-run after the lost reply; how many more fit in the 100 ms budget
	// depends on how busy the machine is.
	require.GreaterOrEqual(t, attempts, 2)
	require.Equal(t, 1, p.rows(t, 6), "it had committed")
}
