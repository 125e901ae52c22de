package bench_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/testsuites/bench"
)

// Behind a history of finished subrequests, no claim or sweep of any daemon reads the
// history: each plan, as auto_explain shows it for every statement inside the logic's
// functions, reads request and subrequest only through an index condition. A claim written
// as type = ANY (array) walked the primary key past every finished row and took 65x longer
// behind a million of them; this test fails on that shape.
func TestNoClaimOrSweepReadsHistory(t *testing.T) {
	x := newPlanFixture(t)
	require.NoError(t, bench.FillHistory(x.ctx, x.db, x.f, 200_000))
	live := x.live(t)
	require.True(t, live["subrequest_queued_idx"], "the stager's queue index holds no history: %v", live)
	require.False(t, live["request_finished_idx"], "the archive's index is all history: %v", live)
	x.requireIndexedReads(t, bench.Probes(x.f.DiskServer))
}

// The check itself catches a walk: an ordered read of the primary key that filters.
func TestHistoryCheckCatchesAWalkOfThePrimaryKey(t *testing.T) {
	x := newPlanFixture(t)
	require.NoError(t, bench.FillHistory(x.ctx, x.db, x.f, 20_000))
	plans, err := bench.Plans(x.ctx, x.dsn, bench.Probe{Name: "walk", SQL: `do $$ begin
		perform s.id from subrequest s where s.path like '%probe%' order by s.id limit 10; end $$`})
	require.NoError(t, err)
	live := x.live(t)
	var walks []string
	for _, pl := range plans {
		walks = append(walks, pl.Root.WalksHistory(live)...)
	}
	require.NotEmpty(t, walks, "the walk was not flagged: %+v", plans)
}
