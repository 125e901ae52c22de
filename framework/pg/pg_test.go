package pg_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/pgtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// flaky raises p_code on the first p_failures calls; a sequence counts calls because a
// sequence is not rolled back with the failed transaction.
var flakyDB = pgtest.SQLTemplate(`
		create table t (id integer primary key);
		create function flaky(p_seq text, p_code text, p_failures integer) returns void language plpgsql as $$
		begin
			if nextval(p_seq) <= p_failures then
				raise exception 'flaky failure %', p_code using errcode = p_code;
			end if;
		end $$;`)

type bundle struct {
	db  *pg.DB
	reg *prometheus.Registry
	ctx context.Context
}

func setup(t *testing.T) *bundle {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	reg := prometheus.NewRegistry()
	db, err := pg.Open(ctx, pg.Config{DSN: pgtest.NewDatabase(t, flakyDB), Registerer: reg, RetryBudget: 20 * time.Second})
	require.NoError(t, err)
	t.Cleanup(db.Close)
	return &bundle{db: db, reg: reg, ctx: ctx}
}

func TestTransientSQLStatesAreRetried(t *testing.T) {
	t.Parallel()
	for _, code := range []string{
		pgerrcode.SerializationFailure, pgerrcode.DeadlockDetected, pgerrcode.AdminShutdown,
		pgerrcode.ReadOnlySQLTransaction, pgerrcode.ConnectionFailure, pgerrcode.CannotConnectNow,
		pgerrcode.TooManyConnections,
	} {
		t.Run(code, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			seq := "seq_" + strings.ToLower(code)
			_, err := b.db.Pool().Exec(b.ctx, "create sequence "+seq)
			require.NoError(t, err)
			attempts := 0
			err = b.db.Tx(b.ctx, "flaky", func(q pg.Querier) error {
				attempts++
				_, err := q.Exec(b.ctx, "select flaky($1, $2, 2)", seq, code)
				return err
			})
			require.NoError(t, err)
			require.Equal(t, 3, attempts, "two failures, then success")
			require.Equal(t, 2.0, testutil.ToFloat64(retries(t, b, code)))
		})
	}
}

func retries(t *testing.T, b *bundle, code string) prometheus.Collector {
	t.Helper()
	mfs, err := b.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "pollux_db_retries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == code {
				return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x"}, func() float64 { return m.GetCounter().GetValue() })
			}
		}
	}
	t.Fatalf("no retry counted for %s", code)
	return nil
}

func TestPermanentErrorsAreNotRetried(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.db.Pool().Exec(b.ctx, "insert into t values (1)")
	require.NoError(t, err)
	attempts := 0
	err = b.db.Tx(b.ctx, "insert duplicate", func(q pg.Querier) error {
		attempts++
		_, err := q.Exec(b.ctx, "insert into t values (1)")
		return err
	})
	require.Error(t, err)
	require.Equal(t, 1, attempts)
	require.Equal(t, pgerrcode.UniqueViolation, pg.SQLState(err))
	require.Contains(t, err.Error(), "insert duplicate: ", "errors carry the transaction's name")

	// A user-facing failure raised by the logic is permanent too.
	_, err = b.db.Pool().Exec(b.ctx, "create sequence s_user")
	require.NoError(t, err)
	attempts = 0
	err = b.db.Tx(b.ctx, "user failure", func(q pg.Querier) error {
		attempts++
		_, err := q.Exec(b.ctx, "select flaky('s_user', 'PX001', 5)")
		return err
	})
	require.Equal(t, "PX001", pg.SQLState(err))
	require.Equal(t, 1, attempts)
}

func TestLostConnectionIsRetried(t *testing.T) {
	t.Parallel()
	b := setup(t)
	attempts := 0
	err := b.db.Tx(b.ctx, "killed", func(q pg.Querier) error {
		attempts++
		if attempts == 1 {
			// The server closes our own connection mid-transaction (as a restart would).
			_, err := q.Exec(b.ctx, "select pg_terminate_backend(pg_backend_pid())")
			return err
		}
		_, err := q.Exec(b.ctx, "insert into t values (7)")
		return err
	})
	require.NoError(t, err)
	require.Equal(t, 2, attempts)
	var n int
	require.NoError(t, b.db.Pool().QueryRow(b.ctx, "select count(*) from t where id = 7").Scan(&n))
	require.Equal(t, 1, n)
}

// TestStalePlansAreRetried: after a result type changed, every statement that selects from
// the function is stale in every connection's cache, and pgx drops one copy per failure. A
// transaction meets one stale copy per statement at least (more when its retries run on
// other connections), and is retried until none is left.
func TestStalePlansAreRetried(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.db.Pool().Exec(b.ctx, "create function f(p integer) returns table (a integer) language sql as 'select p'")
	require.NoError(t, err)
	statements := []string{"select a from f($1::integer)", "select a + 0 from f($1::integer)", "select a from f($1::integer) where a > 0"}
	// Cache every statement on every connection: hold them all at once.
	conns := make([]*pgxpool.Conn, b.db.Pool().Config().MaxConns)
	for i := range conns {
		conns[i], err = b.db.Pool().Acquire(b.ctx)
		require.NoError(t, err)
		for _, s := range statements {
			var a int32
			require.NoError(t, conns[i].QueryRow(b.ctx, s, 1).Scan(&a))
		}
	}
	for _, c := range conns {
		c.Release()
	}
	_, err = b.db.Pool().Exec(b.ctx, "drop function f(integer); create function f(p integer) returns table (a bigint) language sql as 'select p::bigint'")
	require.NoError(t, err)

	attempts := 0
	err = b.db.Tx(b.ctx, "call f", func(q pg.Querier) error {
		attempts++
		for _, s := range statements {
			var a int64
			if err := q.QueryRow(b.ctx, s, 1).Scan(&a); err != nil {
				return err
			}
		}
		return nil
	})
	require.NoError(t, err)
	require.GreaterOrEqual(t, attempts, 1+len(statements), "each statement failed once on a stale plan")
	require.Positive(t, testutil.ToFloat64(retries(t, b, pgerrcode.FeatureNotSupported)))
}

func TestClassify(t *testing.T) {
	t.Parallel()
	class, _ := pg.Classify(context.Canceled)
	require.Equal(t, pg.Permanent, class)
	class, _ = pg.Classify(errors.New("some bug"))
	require.Equal(t, pg.Permanent, class)
	class, _ = pg.Classify(fmt.Errorf("wrapped: %w", errors.New("unexpected EOF")))
	require.Equal(t, pg.Transient, class)
}

func TestListenerFansOutAndSurvivesReconnect(t *testing.T) {
	t.Parallel()
	b := setup(t)
	l := pg.NewListener(b.db, nil)
	// Subscribed before Run, so that the first LISTEN, after which Ready is closed, covers
	// them: subscribed after, a LISTEN could come after Ready and after the first NOTIFY,
	// which is then lost (the cause of a red run under the race detector).
	s1 := l.Subscribe("chan_a", 8)
	s2 := l.Subscribe("chan_a", 8)
	ctx, cancel := context.WithCancel(b.ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = l.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-l.Ready()
	// notify may run in an EventuallyWithT condition: t is then its collector.
	notify := func(t require.TestingT, ch, payload string) {
		_, err := b.db.Pool().Exec(b.ctx, "select pg_notify($1, $2)", ch, payload)
		require.NoError(t, err)
	}
	recv := func(s *pg.Subscription) pg.Notification {
		select {
		case n := <-s.C:
			return n
		case <-time.After(10 * time.Second):
			t.Fatal("no notification within 10s")
			return pg.Notification{}
		}
	}
	notify(t, "chan_a", "one")
	require.Equal(t, "one", recv(s1).Payload)
	require.Equal(t, "one", recv(s2).Payload)

	// A channel subscribed while the listener waits is listened to as well.
	s3 := l.Subscribe("chan_b", 8)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		notify(c, "chan_b", "late")
		select {
		case n := <-s3.C:
			assert.Equal(c, "late", n.Payload)
		case <-time.After(100 * time.Millisecond):
			c.Errorf("no notification on chan_b within 100ms")
		}
	}, 10*time.Second, time.Millisecond)

	// Kill the listening connection: every subscriber is told to look again, and
	// notifications flow once more after the reconnect.
	_, err := b.db.Pool().Exec(b.ctx, `select pg_terminate_backend(pid) from pg_stat_activity
		where datname = current_database() and query ilike 'listen%'`)
	require.NoError(t, err)
	n := recv(s1)
	for n.Payload == "late" || n.Payload == "one" {
		n = recv(s1)
	}
	require.True(t, n.Reconnected, "subscribers are woken after a reconnect")
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		notify(c, "chan_a", "two")
		select {
		case n := <-s1.C:
			assert.Equal(c, "two", n.Payload)
		case <-time.After(100 * time.Millisecond):
			c.Errorf("no notification on chan_a within 100ms")
		}
	}, 15*time.Second, time.Millisecond)
}

// TestMultiHostDSN: a libpq-style DSN naming several hosts reaches whichever answers as
// read-write, as after a failover where the first host is gone.
func TestMultiHostDSN(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t, flakyDB)
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	q := u.Query()
	live := q.Get("host")
	// A socket directory where no server listens stands for the dead primary.
	q.Set("host", t.TempDir()+","+live)
	q.Set("port", q.Get("port")+","+q.Get("port"))
	q.Set("target_session_attrs", "read-write")
	u.RawQuery = q.Encode()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := pg.Open(ctx, pg.Config{DSN: u.String()})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.Tx(ctx, "write through the second host", func(q pg.Querier) error {
		_, err := q.Exec(ctx, "insert into t values (42)")
		return err
	}))
	l := pg.NewListener(db, nil)
	s := l.Subscribe("multi", 1) // before Run: Ready then means "multi" is listened to
	lctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = l.Run(lctx) }()
	defer func() { stop(); <-done }()
	<-l.Ready()
	_, err = db.Pool().Exec(ctx, "select pg_notify('multi', 'x')")
	require.NoError(t, err)
	select {
	case n := <-s.C:
		require.Equal(t, "x", n.Payload)
	case <-time.After(10 * time.Second):
		t.Fatal("the listener did not connect through the multi-host DSN")
	}
}

func TestSnapshotSeesOneInstant(t *testing.T) {
	t.Parallel()
	b := setup(t)
	err := b.db.Snapshot(b.ctx, "two reads", func(q pg.Querier) error {
		var before int
		if err := q.QueryRow(b.ctx, "select count(*) from t").Scan(&before); err != nil {
			return err
		}
		// Another session commits between our two statements.
		if _, err := b.db.Pool().Exec(b.ctx, "insert into t values (99)"); err != nil {
			return err
		}
		var after int
		if err := q.QueryRow(b.ctx, "select count(*) from t").Scan(&after); err != nil {
			return err
		}
		require.Equal(t, before, after, "both statements see the same instant")
		return nil
	})
	require.NoError(t, err)
}

func TestSettingsReachEveryConnection(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := pg.Open(ctx, pg.Config{DSN: pgtest.NewDatabase(t, flakyDB), MaxConns: 3, ApplicationName: "app 1",
		Settings: map[string]string{"app.instance": "0d5e", "app.host": "h1"}})
	require.NoError(t, err)
	defer db.Close()
	// Several connections at once, so that not only the first one is asked.
	conns := make([]*pgxpool.Conn, 3)
	for i := range conns {
		conns[i], err = db.Pool().Acquire(ctx)
		require.NoError(t, err)
	}
	for _, c := range conns {
		var instance, host, app string
		require.NoError(t, c.QueryRow(ctx, "select current_setting('app.instance'), current_setting('app.host'), current_setting('application_name')").
			Scan(&instance, &host, &app))
		require.Equal(t, []string{"0d5e", "h1", "app 1"}, []string{instance, host, app})
		c.Release()
	}
}
