package bench_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/schema/schematest"
	"github.com/pollux-storage/pollux/testsuites/bench"
)

// planFixture is a database of the schema with the history fixture's live queue of every
// kind (bench.MakeHistoryFixture), for the tests that read plans behind history or a queue.
type planFixture struct {
	ctx context.Context
	dsn string
	db  *pg.DB
	f   bench.HistoryFixture
}

func newPlanFixture(t *testing.T) *planFixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	dsn := schematest.DSN(t)
	db, err := pg.Open(ctx, pg.Config{DSN: dsn})
	require.NoError(t, err)
	t.Cleanup(db.Close)
	f, err := bench.MakeHistoryFixture(ctx, db)
	require.NoError(t, err)
	return &planFixture{ctx: ctx, dsn: dsn, db: db, f: f}
}

// live are the partial indexes that hold a queue and no history, as the fixture has them now.
func (x *planFixture) live(t *testing.T) map[string]bool {
	t.Helper()
	live, err := bench.LiveIndexes(x.ctx, x.db)
	require.NoError(t, err)
	return live
}

// requireIndexedReads fails unless every statement of every probe, as auto_explain shows
// it, reads request and subrequest only through an index condition or a live index.
func (x *planFixture) requireIndexedReads(t *testing.T, probes []bench.Probe) {
	t.Helper()
	live := x.live(t)
	for _, p := range probes {
		plans, err := bench.Plans(x.ctx, x.dsn, p)
		require.NoError(t, err, p.Name)
		require.NotEmpty(t, plans, "%s: auto_explain reported no plan", p.Name)
		for _, pl := range plans {
			require.Empty(t, pl.Root.WalksHistory(live), "%s reads more than its rows in:\n%s", p.Name, strings.Join(strings.Fields(pl.Query), " "))
		}
	}
}
