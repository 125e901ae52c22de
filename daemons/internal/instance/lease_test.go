package instance_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/daemons/internal/instance"
	"github.com/pollux-storage/pollux/framework/leader"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/uuid"
	"github.com/pollux-storage/pollux/schema/schematest"
)

// Electors of one lease against the real logic: one leads, the others stand by; a clean
// stop hands over within a round; a preferred instance takes the lease back; a fenced
// write makes the writer a backup and commits nothing.

func electorEvery(t *testing.T, db *pg.DB, host string, preferred bool, ttl, renew time.Duration) (*leader.Elector, *atomic.Int32) {
	t.Helper()
	e, err := leader.New(leader.Config{Name: "test.sweep",
		Candidate: leader.Candidate{InstanceID: uuid.New(), Host: host, Preferred: preferred},
		TTL:       ttl, RenewInterval: renew}, db, instance.Leases{}, nil, nil)
	require.NoError(t, err)
	elected := &atomic.Int32{}
	e.OnElected(func() { elected.Add(1) })
	require.NoError(t, e.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.Stop(ctx)
	})
	return e, elected
}

func leading(e *leader.Elector) bool { _, ok := e.Term(); return ok }

func waitLeader(t *testing.T, want *leader.Elector, others ...*leader.Elector) {
	t.Helper()
	require.Eventually(t, func() bool {
		if !leading(want) {
			return false
		}
		for _, o := range others {
			if leading(o) {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond)
}

func TestElectorsHandOverAndPreferTheirPrimary(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := schematest.DB(t)

	// A 30 s lease: a takeover within seconds can only come from the resignation.
	a, aElected := electorEvery(t, db, "a", false, 30*time.Second, 100*time.Millisecond)
	waitLeader(t, a)
	b, bElected := electorEvery(t, db, "b", false, 30*time.Second, 100*time.Millisecond)
	// b has run rounds and stays a backup.
	require.Eventually(t, func() bool {
		var n int
		err := db.Pool().QueryRow(ctx, "select count(*) from leader_candidate where name = 'test.sweep' and host = 'b'").Scan(&n)
		return err == nil && n == 1
	}, 10*time.Second, 10*time.Millisecond)
	require.False(t, leading(b))
	require.EqualValues(t, 1, aElected.Load())

	// Work runs on the leader only, and is journalled with its epoch.
	ran := 0
	n, err := b.Tx(ctx, func(q pg.Querier) (int, error) { ran++; return 1, nil })
	require.NoError(t, err)
	require.Zero(t, n)
	require.Zero(t, ran, "a backup does not run singleton work")
	n, err = a.Tx(ctx, func(q pg.Querier) (int, error) { ran++; return 3, nil })
	require.NoError(t, err)
	require.Equal(t, 3, n)
	require.Equal(t, 1, ran)
	var journalled int
	require.NoError(t, db.Pool().QueryRow(ctx, "select coalesce(sum(rows), 0) from leader_work where name = 'test.sweep' and epoch = 1").Scan(&journalled))
	require.Equal(t, 3, journalled)

	// A clean stop resigns: b takes over on its next round, long before the lease expires.
	stopped := time.Now()
	require.NoError(t, a.Stop(ctx))
	waitLeader(t, b, a)
	require.Less(t, time.Since(stopped), 15*time.Second, "the takeover waited for the lease to expire")
	require.EqualValues(t, 1, bElected.Load())

	// A preferred instance takes the lease from b as soon as it stands.
	p, _ := electorEvery(t, db, "p", true, 30*time.Second, 100*time.Millisecond)
	waitLeader(t, p, b)
}

func TestFencedWriteCommitsNothingAndDemotes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := schematest.DB(t)
	// Rounds 20 s apart: none runs between the takeover below and the write.
	a, _ := electorEvery(t, db, "a", false, time.Minute, 20*time.Second)
	waitLeader(t, a)

	// Another instance took the lease between a's last round and its write (as after a
	// pause): the epoch moved on, and a still believes it leads.
	_, err := db.Pool().Exec(ctx, "update leader_lease set epoch = epoch + 1, holder_id = $1, holder_host = 'x' where name = 'test.sweep'", uuid.New())
	require.NoError(t, err)
	_, err = db.Pool().Exec(ctx, "create table fenced_probe (n int)")
	require.NoError(t, err)
	require.True(t, leading(a))
	n, err := a.Tx(ctx, func(q pg.Querier) (int, error) {
		_, err := q.Exec(ctx, "insert into fenced_probe values (1)")
		return 1, err
	})
	require.NoError(t, err, "a fenced write is not the step's error")
	require.Zero(t, n)
	require.False(t, leading(a), "a fenced writer stops believing it leads")
	var rows int
	require.NoError(t, db.Pool().QueryRow(ctx, "select count(*) from fenced_probe").Scan(&rows))
	require.Zero(t, rows, "the fence stops the transaction before the work")
}

func TestElectorRejectsBadConfig(t *testing.T) {
	t.Parallel()
	db := schematest.DB(t)
	for _, c := range []leader.Config{
		{Candidate: leader.Candidate{InstanceID: uuid.New()}},
		{Name: "x"},
		{Name: "x", Candidate: leader.Candidate{InstanceID: uuid.New()}, TTL: 500 * time.Millisecond},
		{Name: "x", Candidate: leader.Candidate{InstanceID: uuid.New()}, TTL: time.Second, RenewInterval: time.Second},
	} {
		_, err := leader.New(c, db, instance.Leases{}, nil, nil)
		require.Error(t, err, "%+v", c)
	}
}
