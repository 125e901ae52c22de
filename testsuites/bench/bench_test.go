package bench_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/pgtest"
	"github.com/pollux-storage/pollux/testsuites/bench"
)

// The pool, its database connections and the timers of a measurement must all be gone when
// MeasureClaim returns.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var queue = pgtest.Template{
	Key: fmt.Sprintf("bench-queue-%x", sha256.Sum256([]byte(bench.SchemaSQL()))),
	Setup: func(ctx context.Context, dsn string) error {
		db, err := pg.Open(ctx, pg.Config{DSN: dsn})
		if err != nil {
			return err
		}
		defer db.Close()
		return bench.Install(ctx, db)
	},
}

// A short measurement completes every row it reports exactly once, and no other.
func TestMeasureClaimCompletesRowsOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dsn := pgtest.NewDatabase(t, queue)
	db, err := pg.Open(ctx, pg.Config{DSN: dsn})
	require.NoError(t, err)
	defer db.Close()

	// More rows than one worker claims in under half a second, so the queue never runs dry.
	const filled = 50_000
	require.NoError(t, bench.Fill(ctx, db, filled))
	res, err := bench.MeasureClaim(ctx, dsn, bench.Claim{Workers: 1, Batch: 10, Warmup: 100 * time.Millisecond, Window: 300 * time.Millisecond})
	require.NoError(t, err)

	require.Positive(t, res.TotalRows, "the pool claimed nothing")
	require.LessOrEqual(t, res.Rows, res.TotalRows, "the window counted rows the pool never returned")
	require.LessOrEqual(t, res.Txs, res.Rows, "a counted transaction claimed no row")

	var done, once, twice, pending int64
	require.NoError(t, db.Pool().QueryRow(ctx, `select
			count(*) filter (where status = 'DONE'),
			count(*) filter (where status = 'DONE' and claims = 1),
			count(*) filter (where claims > 1),
			count(*) filter (where status <> 'DONE' and claims = 0)
		from bench_item`).Scan(&done, &once, &twice, &pending))
	require.Zero(t, twice, "rows processed more than once")
	require.Equal(t, res.TotalRows, done, "rows marked done versus rows the steps returned")
	require.Equal(t, done, once, "done rows whose claim count is not 1")
	require.Equal(t, int64(filled)-done, pending, "rows neither done nor pending")
	require.Equal(t, pending, res.Remaining)
}

func TestParsePgbenchTPS(t *testing.T) {
	out := `pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: simple update>
number of clients: 16
latency average = 3.950 ms
initial connection time = 20.145 ms
tps = 4050.123456 (without initial connection time)
`
	tps, err := bench.ParsePgbenchTPS(out)
	require.NoError(t, err)
	require.InDelta(t, 4050.123456, tps, 1e-9)

	_, err = bench.ParsePgbenchTPS("pgbench: error: connection to server failed\n")
	require.ErrorContains(t, err, "no tps line")
}
