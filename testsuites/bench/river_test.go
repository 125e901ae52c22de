package bench_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/pgtest"
	"github.com/pollux-storage/pollux/testsuites/bench"
)

// riverTables is a database with River's tables, keyed by River's migration SQL so that a
// River upgrade rebuilds the template.
var riverTables = pgtest.Template{Key: riverMigrationsKey(), Setup: bench.MigrateRiver}

func riverMigrationsKey() string {
	m, err := rivermigrate.New(riverpgxv5.New(nil), nil)
	if err != nil {
		panic(fmt.Sprintf("river migrator: %v", err))
	}
	h := sha256.New()
	for _, v := range m.AllVersions() {
		fmt.Fprintf(h, "%d\x00%s\x00", v.Version, v.SQLUp)
	}
	return fmt.Sprintf("bench-river-%x", h.Sum(nil))
}

// A short run of River's bench shape completes jobs inside its window, reports a positive
// rate, and counts only what river_job holds; TestMain's goleak checks that the client
// stopped entirely.
func TestMeasureRiverCompletesJobs(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dsn := pgtest.NewDatabase(t, riverTables)

	res, err := bench.MeasureRiver(ctx, dsn, bench.River{Warmup: 200 * time.Millisecond, Window: 300 * time.Millisecond,
		InsertBatch: 1_000, Backlog: 10_000, Log: t.Output()})
	require.NoError(t, err)
	t.Logf("%d jobs in %s (%.0f jobs/s), %d completed of %d inserted, backlog low water %d",
		res.Jobs, res.Window, res.JobsPerSecond(), res.TotalJobs, res.Inserted, res.LowWater)

	require.Positive(t, res.Jobs, "no job completed inside the window")
	require.Positive(t, res.JobsPerSecond())
	require.GreaterOrEqual(t, res.Window, 300*time.Millisecond)
	require.LessOrEqual(t, res.Jobs, res.TotalJobs, "the window counted more than was completed")
	require.LessOrEqual(t, res.TotalJobs, res.Inserted, "more jobs completed than were inserted")
	require.GreaterOrEqual(t, res.Inserted, int64(10_000), "the backlog was not inserted ahead of the window")

	db, err := pg.Open(ctx, pg.Config{DSN: dsn})
	require.NoError(t, err)
	defer db.Close()
	var completed, available int64
	require.NoError(t, db.Pool().QueryRow(ctx, `select
			count(*) filter (where state = 'completed'),
			count(*) filter (where state = 'available')
		from river_job`).Scan(&completed, &available))
	require.Equal(t, res.TotalJobs, completed)
	require.Equal(t, res.Inserted-completed, available, "jobs neither completed nor available")
}
