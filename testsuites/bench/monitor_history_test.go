package bench_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/testsuites/bench"
)

// The monitor's pages and a request's story cost the same behind a history of finished
// requests: as for the claims (TestNoClaimOrSweepReadsHistory), no statement of theirs reads
// request or subrequest but through an index condition or a queue's partial index. The
// list of recent requests is left out: it sorts the hot request table, which the archive
// sweep keeps to the retention (schema/logic/monitor.sql says why).
func TestMonitorReadsNoHistory(t *testing.T) {
	x := newPlanFixture(t)
	require.NoError(t, bench.FillHistory(x.ctx, x.db, x.f, 200_000))
	var waiting string
	require.NoError(t, x.db.Pool().QueryRow(x.ctx,
		"select request_id::text from subrequest where status not in ('FINISHED', 'FAILED') order by id limit 1").Scan(&waiting))

	x.requireIndexedReads(t, []bench.Probe{
		{Name: "monitor queues", SQL: "select * from monitor_queues()"},
		{Name: "monitor claim rates", SQL: "select * from monitor_claim_rates(300)"},
		{Name: "monitor disk servers", SQL: "select * from monitor_disk_servers()"},
		{Name: "request history", SQL: "select * from request_history('" + waiting + "')"},
		{Name: "request waits", SQL: "select * from request_waits('" + waiting + "')"},
	})
}
