package bench_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/testsuites/bench"
)

// With a long queue behind the fixture's live rows, each claim reads the front of its
// queue through an index condition: no sequential scan and no walk of an index that holds
// other rows than its queue. The timing is make bench's; this is the shape that keeps it.
func TestNoClaimReadsPastTheFrontOfItsQueue(t *testing.T) {
	x := newPlanFixture(t)
	_, err := x.db.Pool().Exec(x.ctx, "insert into service_class (name) values ('bench-waiting') on conflict do nothing")
	require.NoError(t, err)
	require.NoError(t, bench.FillQueue(x.ctx, x.db, 100_000, true))
	x.requireIndexedReads(t, bench.QueueProbes())
	// The stager's claim reads its queue's own index: ordered by when each subrequest joined
	// the queue, which no other index gives (ordered by id, the primary key could answer it,
	// and with a million queued the planner took it).
	for _, p := range bench.QueueProbes()[:2] {
		plans, err := bench.Plans(x.ctx, x.dsn, p)
		require.NoError(t, err)
		var used []string
		for _, pl := range plans {
			used = append(used, pl.Root.Indexes()...)
		}
		require.Contains(t, used, "subrequest_queued_idx", "%s reads %v", p.Name, used)
	}
}

// A recorded run goes on top of the history, under its heading, above the runs before it,
// with one verdict per target; a file without the heading is refused and left alone.
func TestRecordHistoryNewestFirst(t *testing.T) {
	path := filepath.Join(t.TempDir(), "benchmarks.md")
	doc := "# Benchmarks\n\nintro\n\n" + bench.HistoryMarker + "\n\n### older run\n\nold table\n\n## Narrative\n"
	require.NoError(t, os.WriteFile(path, []byte(doc), 0o644))
	vs := []bench.Verdict{
		{Issue: 12, Figure: "pollux cp up, p50", Value: "6.1 ms", Target: "≤ 7 ms", Met: true, Load: "0.50"},
		{Issue: 15, Figure: "a | b", Value: "3.0×", Target: "≤ 2×", Met: false, Load: "0.70"},
	}
	run := bench.RunID{At: time.Date(2026, 12, 2, 9, 30, 0, 0, time.UTC), Commit: "abc1234", NProc: 2}
	require.NoError(t, bench.RecordHistory(path, run, vs))
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	s := string(got)
	require.Less(t, strings.Index(s, "2026-12-02 09:30 UTC, commit abc1234"), strings.Index(s, "### older run"))
	require.Contains(t, s, "| 12 | pollux cp up, p50 | 6.1 ms | ≤ 7 ms | **MET** | 0.50 |")
	require.Contains(t, s, `| 15 | a \| b | 3.0× | ≤ 2× | **MISSED** | 0.70 |`)
	require.True(t, strings.HasPrefix(s, "# Benchmarks\n\nintro\n\n"+bench.HistoryMarker+"\n"))

	bare := filepath.Join(t.TempDir(), "bare.md")
	require.NoError(t, os.WriteFile(bare, []byte("# nothing here\n"), 0o644))
	require.ErrorContains(t, bench.RecordHistory(bare, run, vs), "has no line")
	left, err := os.ReadFile(bare)
	require.NoError(t, err)
	require.Equal(t, "# nothing here\n", string(left))
}
