package bench_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
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

	res, err := bench.MeasureRiver(ctx, dsn, bench.River{Warmup: 200 * time.Millisecond, Window: time.Second,
		InsertBatch: 1_000, Backlog: 10_000, Log: t.Output()})
	require.NoError(t, err)
	t.Logf("%d jobs in %s (%.0f jobs/s), %d completed of %d inserted, backlog low water %d",
		res.Jobs, res.Window, res.JobsPerSecond(), res.TotalJobs, res.Inserted, res.LowWater)

	require.Positive(t, res.Jobs, "no job completed inside the window")
	require.Positive(t, res.JobsPerSecond())
	require.GreaterOrEqual(t, res.Window, time.Second)
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

// The report compares the best claim configuration, wherever it is in the grid, with River's
// rate, and says so in the target line.
func TestReportPrintsRiverTarget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		riverJobs int64
		want      string
	}{
		{"met", 10_000, "target: claim rows/s at the best batch ≥ 3× River's bench shape on the same cluster: 40,000 / 10,000 = 4.00× → MET\n"},
		{"missed", 20_000, "target: claim rows/s at the best batch ≥ 3× River's bench shape on the same cluster: 40,000 / 20,000 = 2.00× → MISSED\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rep := &bench.Report{
				Options: bench.Options{Workers: []int{1, 16}, Batches: []int{10, 100}, Duration: time.Second, Warmup: 500 * time.Millisecond},
				Claims: []bench.ClaimResult{
					{Workers: 1, Batch: 10, Window: time.Second, Rows: 1_000},
					{Workers: 16, Batch: 100, Window: time.Second, Rows: 40_000},
					{Workers: 16, Batch: 10, Window: time.Second, Rows: 30_000},
				},
				River: &bench.RiverResult{MaxWorkers: bench.RiverMaxWorkers, Window: time.Second, Jobs: tc.riverJobs, LoadStart: "1.50", LoadEnd: "1.75"},
			}
			var out strings.Builder
			require.NoError(t, rep.Print(&out))
			require.Contains(t, out.String(), tc.want)
			require.Contains(t, out.String(), " jobs/s over 1s (500ms warm-up; 1-minute load average 1.50 before, 1.75 after)\n")
			require.Contains(t, out.String(), "best claim configuration: 16 workers, batch 100, 40,000 rows/s\n")
		})
	}
}
