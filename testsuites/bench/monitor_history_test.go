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

// The monitor's pages and a request's story cost the same behind a history of finished
// requests: as for the claims (TestNoClaimOrSweepReadsHistory), no statement of theirs reads
// request or subrequest but through an index condition or a queue's partial index. The
// list of recent requests is left out: it sorts the hot request table, which the archive
// sweep keeps to the retention (schema/logic/monitor.sql says why).
func TestMonitorReadsNoHistory(t *testing.T) {
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
	var waiting string
	require.NoError(t, db.Pool().QueryRow(ctx,
		"select request_id::text from subrequest where status not in ('FINISHED', 'FAILED') order by id limit 1").Scan(&waiting))

	for _, p := range []bench.Probe{
		{Name: "monitor queues", SQL: "select * from monitor_queues()"},
		{Name: "monitor claim rates", SQL: "select * from monitor_claim_rates(300)"},
		{Name: "monitor disk servers", SQL: "select * from monitor_disk_servers()"},
		{Name: "request history", SQL: "select * from request_history('" + waiting + "')"},
		{Name: "request waits", SQL: "select * from request_waits('" + waiting + "')"},
	} {
		plans, err := bench.Plans(ctx, dsn, p)
		require.NoError(t, err, p.Name)
		require.NotEmpty(t, plans, "%s: auto_explain reported no plan", p.Name)
		for _, pl := range plans {
			require.Empty(t, pl.Root.WalksHistory(live), "%s reads the history in:\n%s", p.Name, pl.Query)
		}
	}
}
