package pg

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Querier runs statements. pgx.Tx, *pgxpool.Pool and *pgx.Conn satisfy it, and so does the
// model package's DBTX interface, which has the same method set: daemons pass what Tx hands
// them straight to the generated wrappers without importing pgx.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Config says how to reach the database and how hard to try.
type Config struct {
	// DSN is a libpq connection string or URL. Several hosts
	// ("host=a,b target_session_attrs=read-write") give failover to whichever is primary.
	DSN string
	// MaxConns caps the pool; 0 keeps pgx's default (max(4, cores)).
	MaxConns int32
	// ApplicationName is shown in pg_stat_activity (daemon and instance).
	ApplicationName string
	// Settings are run-time parameters every connection starts with, sent in the startup
	// packet so they cost no round trip: e.g. custom settings ("app.instance") that the
	// database's logic reads with current_setting to know which process made a change.
	Settings map[string]string
	// RetryBudget bounds how long one transaction is retried for; 0 means 60 s, long enough
	// to ride out a PostgreSQL restart or a replica promotion.
	RetryBudget time.Duration
	// Logger receives one line per retry; nil means no logging.
	Logger *zap.Logger
	// Registerer receives the retry counter and pool statistics; nil means none.
	Registerer prometheus.Registerer
}

// DB is a pool plus the retry policy.
type DB struct {
	pool        *pgxpool.Pool
	maxConns    int
	log         *zap.Logger
	retryBudget time.Duration
	retries     *prometheus.CounterVec
	unknown     *prometheus.CounterVec
}

// ErrOutcomeUnknown is wrapped by the error of work that is not declared idempotent and
// whose connection broke while its commit was in flight: it may have committed or not,
// and running it again could do it twice. Test for it with errors.Is.
var ErrOutcomeUnknown = errors.New("outcome unknown: the connection broke while the commit was in flight, so it may have committed")

// Open connects a pool and checks that the database answers.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	pcfg, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if cfg.MaxConns > 0 {
		pcfg.MaxConns = cfg.MaxConns
	}
	if cfg.ApplicationName != "" {
		pcfg.ConnConfig.RuntimeParams["application_name"] = cfg.ApplicationName
	}
	for k, v := range cfg.Settings {
		pcfg.ConnConfig.RuntimeParams[k] = v
	}
	// A connection that died with the server must not be handed out again.
	pcfg.HealthCheckPeriod = 5 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	db := &DB{pool: pool, maxConns: int(pcfg.MaxConns), log: cfg.Logger, retryBudget: cfg.RetryBudget}
	if db.log == nil {
		db.log = zap.NewNop()
	}
	if db.retryBudget == 0 {
		db.retryBudget = 60 * time.Second
	}
	db.retries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pollux_db_retries_total",
		Help: "Transactions retried, by the SQLSTATE that caused the retry (empty: connection lost).",
	}, []string{"sqlstate"})
	db.unknown = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pollux_db_outcome_unknown_total",
		Help: "Work whose connection broke while its commit was in flight: retried (declared idempotent) or returned as outcome unknown.",
	}, []string{"action"})
	if err := db.DoIdempotent(ctx, "ping", func(q Querier) error {
		_, err := q.Exec(ctx, "select 1")
		return err
	}); err != nil {
		pool.Close()
		return nil, fmt.Errorf("reach database: %w", err)
	}
	// Registered only once connected, so a caller may retry Open with the same registry.
	if cfg.Registerer != nil {
		if err := registerAll(cfg.Registerer, db.retries, db.unknown, newPoolCollector(pool)); err != nil {
			pool.Close()
			return nil, err
		}
	}
	return db, nil
}

func registerAll(r prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("register database metrics: %w", err)
		}
	}
	return nil
}

// Pool exposes the pgx pool for libraries that take one (River, golang-migrate).
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// Close closes every connection.
func (db *DB) Close() { db.pool.Close() }

// Tx runs fn in a transaction and commits it, retrying the whole transaction when it
// certainly did not commit (see the package doc): fn may therefore run more than once, and
// must not have effects outside the transaction that a re-run would repeat. When the
// connection broke while the COMMIT was in flight, Tx does not run fn again: it returns an
// error wrapping ErrOutcomeUnknown. name appears in logs and errors.
func (db *DB) Tx(ctx context.Context, name string, fn func(q Querier) error) error {
	return db.retry(ctx, name, false, func() error { return db.attemptTx(ctx, pgx.TxOptions{}, fn) })
}

// TxIdempotent is Tx for work that is safe to run again after it committed: a re-run
// finds its effects and answers the same success. It is re-run also when the connection
// broke while the COMMIT was in flight, so a lost reply costs a retry, never an error.
func (db *DB) TxIdempotent(ctx context.Context, name string, fn func(q Querier) error) error {
	return db.retry(ctx, name, true, func() error { return db.attemptTx(ctx, pgx.TxOptions{}, fn) })
}

// Snapshot runs fn in a read-only REPEATABLE READ transaction, so that all its statements
// see the database as of one instant (under READ COMMITTED each statement takes its own
// snapshot, and a row read before a commit can sit beside rows read after it). It changes
// nothing, so it is re-run after any transient failure.
func (db *DB) Snapshot(ctx context.Context, name string, fn func(q Querier) error) error {
	opts := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	return db.retry(ctx, name, true, func() error { return db.attemptTx(ctx, opts, fn) })
}

// Do runs fn on pooled connections outside an explicit transaction, with the retry policy
// of Tx; use it for single statements, which need no BEGIN and COMMIT round trips. Each
// statement commits by itself, so a connection that broke while one was in flight leaves
// the outcome unknown: Do returns ErrOutcomeUnknown then, as Tx does for its COMMIT.
func (db *DB) Do(ctx context.Context, name string, fn func(q Querier) error) error {
	return db.retry(ctx, name, false, func() error { return db.attemptDo(fn) })
}

// DoIdempotent is Do for reads and for statements that are safe to run again after they
// committed; it is re-run whatever the moment the connection broke.
func (db *DB) DoIdempotent(ctx context.Context, name string, fn func(q Querier) error) error {
	return db.retry(ctx, name, true, func() error { return db.attemptDo(fn) })
}

// attemptTx runs one attempt of a transaction, marking a failure of its COMMIT as one that
// came while a commit was in flight; a failure before it leaves nothing committed.
func (db *DB) attemptTx(ctx context.Context, opts pgx.TxOptions, fn func(q Querier) error) error {
	tx, err := db.pool.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		// A broken connection rolls back by itself; a rollback that fails adds nothing.
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return &commitInFlight{err: err}
	}
	return nil
}

// attemptDo runs one attempt of Do's fn, whose every statement commits by itself.
func (db *DB) attemptDo(fn func(q Querier) error) error {
	if err := fn(db.pool); err != nil {
		return &commitInFlight{err: err}
	}
	return nil
}

func (db *DB) retry(ctx context.Context, name string, idempotent bool, attempt func() error) error {
	start := time.Now()
	stalePlans := 0
	// mayHaveCommitted: an attempt's commit reply was lost. Work given up after that is of
	// unknown outcome, whatever the last attempt's error.
	mayHaveCommitted := false
	// lost counts a commit reply lost, but not a caller that gave up on its own work.
	lost := func(action string) {
		if ctx.Err() == nil {
			db.unknown.WithLabelValues(action).Inc()
		}
	}
	giveUp := func(err error) error {
		if mayHaveCommitted && !errors.Is(err, ErrOutcomeUnknown) {
			lost("returned")
			return fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
		}
		return err
	}
	for n := 0; ; n++ {
		err := attempt()
		if err == nil {
			return nil
		}
		class, code := Classify(err)
		if class == OutcomeUnknown {
			if !idempotent {
				lost("returned")
				return fmt.Errorf("%s: %w: %w", name, ErrOutcomeUnknown, err)
			}
			mayHaveCommitted = true
		}
		switch {
		case class == StalePlan && stalePlans < db.maxConns:
			// Every pooled connection caches its own copy of a statement, and pgx drops a
			// copy only when it fails on its connection: the retry may run on another
			// connection, or reach another statement of the transaction, whose copy is
			// stale too. Each failure drops one stale copy, so the retries converge; at
			// once while one per connection can explain them, with backoff after that.
			stalePlans++
			db.retries.WithLabelValues(code).Inc()
			db.log.Info("retrying after a logic patch changed a result type", zap.String("tx", name), zap.Int("attempt", n+1))
			continue
		case class == Permanent:
			if ctx.Err() != nil {
				// The caller gave up: an earlier attempt may still have committed.
				err = giveUp(err)
			}
			// Otherwise the server's answer to a re-run of idempotent work is the work's.
			return fmt.Errorf("%s: %w", name, err)
		case ctx.Err() != nil:
			return fmt.Errorf("%s: %w (last error: %w)", name, ctx.Err(), giveUp(err))
		case time.Since(start) > db.retryBudget:
			return fmt.Errorf("%s: gave up after %d attempts in %s: %w", name, n+1, time.Since(start).Round(time.Millisecond), giveUp(err))
		}
		db.retries.WithLabelValues(code).Inc()
		if class == OutcomeUnknown {
			lost("retried")
		}
		delay := Backoff(n - stalePlans)
		db.log.Warn("retrying transient database error",
			zap.String("tx", name), zap.String("sqlstate", code), zap.Int("attempt", n+1),
			zap.Stringer("class", class), zap.Duration("delay", delay), zap.Error(err))
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: %w (last error: %w)", name, ctx.Err(), giveUp(err))
		case <-t.C:
		}
	}
}

// Backoff is the delay before retry n (from 0): exponential from 5 ms, capped at 2 s, with
// full jitter in the upper half so that daemons that lost the database together do not
// come back in lockstep.
func Backoff(n int) time.Duration {
	const base, ceiling = 5 * time.Millisecond, 2 * time.Second
	d := ceiling
	if n < 16 {
		d = min(base<<n, ceiling)
	}
	return d/2 + rand.N(d/2+1)
}

// IsNoRows reports whether err says a query returned no row.
func IsNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }
