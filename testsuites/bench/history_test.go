package bench_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/schema/schematest"
	"github.com/pollux-storage/pollux/testsuites/bench"
)

// Behind a history of finished subrequests, no claim or sweep of any daemon reads the
// history: each plan, as auto_explain shows it for every statement inside the logic's
// functions, reads request and subrequest only through an index condition. A claim written
// as type = ANY (array) walked the primary key past every finished row and took 65x longer
// behind a million of them; this test fails on that shape.
func TestNoClaimOrSweepReadsHistory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dsn := schematest.DSN(t)
	db, err := pg.Open(ctx, pg.Config{DSN: dsn})
	require.NoError(t, err)
	defer db.Close()
	f, err := bench.MakeHistoryFixture(ctx, db)
	require.NoError(t, err)
	require.NoError(t, bench.FillHistory(ctx, db, f, 200_000))
	live, err := bench.LiveIndexes(ctx, db)
	require.NoError(t, err)
	require.True(t, live["subrequest_new_idx"], "the stager's queue index holds no history: %v", live)
	require.False(t, live["request_finished_idx"], "the archive's index is all history: %v", live)

	for _, p := range bench.Probes(f.DiskServer) {
		plans, err := bench.Plans(ctx, dsn, p)
		require.NoError(t, err, p.Name)
		require.NotEmpty(t, plans, "%s: auto_explain reported no plan", p.Name)
		for _, pl := range plans {
			require.Empty(t, pl.Root.WalksHistory(live), "%s reads the history in:\n%s", p.Name, pl.Query)
		}
	}
}

// The check itself catches a walk: an ordered read of the primary key that filters.
func TestHistoryCheckCatchesAWalkOfThePrimaryKey(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dsn := schematest.DSN(t)
	db, err := pg.Open(ctx, pg.Config{DSN: dsn})
	require.NoError(t, err)
	defer db.Close()
	f, err := bench.MakeHistoryFixture(ctx, db)
	require.NoError(t, err)
	require.NoError(t, bench.FillHistory(ctx, db, f, 20_000))
	plans, err := bench.Plans(ctx, dsn, bench.Probe{Name: "walk", SQL: `do $$ begin
		perform s.id from subrequest s where s.path like '%probe%' order by s.id limit 10; end $$`})
	require.NoError(t, err)
	live, err := bench.LiveIndexes(ctx, db)
	require.NoError(t, err)
	var walks []string
	for _, pl := range plans {
		walks = append(walks, pl.Root.WalksHistory(live)...)
	}
	require.NotEmpty(t, walks, "the walk was not flagged: %+v", plans)
}
