package schema_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/uuid"
	"github.com/pollux-storage/pollux/model"
	"github.com/pollux-storage/pollux/schema/schematest"
)

// The lease of a singleton role, as schema/logic/leader.sql decides it.

func acquire(t *testing.T, db *pg.DB, name, id, host string, ttl float64, preferred bool) model.LeaderLeaseAcquireRow {
	t.Helper()
	rows, err := model.LeaderLeaseAcquire(context.Background(), db.Pool(), name, id, host, ttl, preferred)
	require.NoError(t, err)
	require.Len(t, rows, 1)
	return rows[0]
}

func TestLeaseElectsOneLeaderAndRenews(t *testing.T) {
	t.Parallel()
	db := schematest.DB(t)
	a, b := uuid.New(), uuid.New()

	first := acquire(t, db, "jobmanagerd.expire", a, "hostA", 5, false)
	require.True(t, first.Leader)
	require.EqualValues(t, 1, first.Epoch)

	other := acquire(t, db, "jobmanagerd.expire", b, "hostB", 5, false)
	require.False(t, other.Leader, "a live lease is not taken")
	require.Equal(t, a, *other.HolderID)
	require.EqualValues(t, 1, other.Epoch)
	require.Greater(t, *other.ExpiresInSeconds, 3.0)

	again := acquire(t, db, "jobmanagerd.expire", a, "hostA", 5, false)
	require.True(t, again.Leader)
	require.EqualValues(t, 1, again.Epoch, "renewal keeps the epoch")

	list, err := model.LeaderLeaseList(context.Background(), db.Pool(), 30)
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, "hostA", list[0].HolderHost)
	require.Len(t, list[0].Backups, 1)
	require.Contains(t, list[0].Backups[0], "hostB")

	ev := events(t, db, "leader_change")
	require.Len(t, ev, 1)
	require.Contains(t, ev[0].Message, "first leader")
}

func TestLeaseIsTakenWhenExpiredOrResignedAndFencesTheOldEpoch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := schematest.DB(t)
	a, b := uuid.New(), uuid.New()
	require.True(t, acquire(t, db, "l", a, "hostA", 1, false).Leader)

	// The fence lets the leader's transaction go on while the lease lives.
	require.NoError(t, model.LeaderLeaseFence(ctx, db.Pool(), "l", 1))
	// ... and refuses once it expired, whoever holds it.
	expire(t, db, "l")
	err := model.LeaderLeaseFence(ctx, db.Pool(), "l", 1)
	require.Equal(t, model.SQLStateFenced, pg.SQLState(err), "%v", err)
	require.Contains(t, err.Error(), "expired")

	took := acquire(t, db, "l", b, "hostB", 5, false)
	require.True(t, took.Leader)
	require.EqualValues(t, 2, took.Epoch, "a change of holder raises the epoch")
	ev := events(t, db, "leader_change")
	require.Contains(t, ev[0].Message, "expired")
	require.Contains(t, ev[0].Message, "previous leader "+a)

	// The old leader's epoch is refused although the lease is live again.
	err = model.LeaderLeaseFence(ctx, db.Pool(), "l", 1)
	require.Equal(t, model.SQLStateFenced, pg.SQLState(err))
	require.Contains(t, err.Error(), "no longer leads")
	require.NoError(t, model.LeaderLeaseFence(ctx, db.Pool(), "l", 2))

	// The old leader's round finds it a backup.
	old := acquire(t, db, "l", a, "hostA", 5, false)
	require.False(t, old.Leader)

	// A resignation hands over at once; a second one, or one of a stale epoch, is ignored.
	require.NoError(t, model.LeaderLeaseResign(ctx, db.Pool(), "l", a, 2))
	require.NoError(t, model.LeaderLeaseResign(ctx, db.Pool(), "l", b, 1))
	require.True(t, acquire(t, db, "l", b, "hostB", 5, false).Leader, "a stale resignation changes nothing")
	require.NoError(t, model.LeaderLeaseResign(ctx, db.Pool(), "l", b, 2))
	require.NoError(t, model.LeaderLeaseResign(ctx, db.Pool(), "l", b, 2))
	require.Len(t, events(t, db, "leader_resign"), 1)
	next := acquire(t, db, "l", a, "hostA", 5, false)
	require.True(t, next.Leader)
	require.EqualValues(t, 3, next.Epoch)
	require.Contains(t, events(t, db, "leader_change")[0].Message, "resigned")
}

func TestLeasePreferredInstanceTakesItBack(t *testing.T) {
	t.Parallel()
	db := schematest.DB(t)
	primary, backup, other := uuid.New(), uuid.New(), uuid.New()
	require.True(t, acquire(t, db, "l", backup, "hostB", 5, false).Leader)
	back := acquire(t, db, "l", primary, "hostA", 5, true)
	require.True(t, back.Leader, "the preferred instance takes a live lease from one that is not")
	require.EqualValues(t, 2, back.Epoch)
	require.Contains(t, events(t, db, "leader_change")[0].Message, "preferred instance returned")
	// Nobody takes a live lease from the preferred holder, preferred or not.
	require.False(t, acquire(t, db, "l", backup, "hostB", 5, false).Leader)
	require.False(t, acquire(t, db, "l", other, "hostC", 5, true).Leader)
}

func TestLeaseRejectsBadInput(t *testing.T) {
	t.Parallel()
	db := schematest.DB(t)
	_, err := model.LeaderLeaseAcquire(context.Background(), db.Pool(), "", uuid.New(), "h", 5, false)
	require.Equal(t, model.SQLStateInvalidArgument, pg.SQLState(err))
	_, err = model.LeaderLeaseAcquire(context.Background(), db.Pool(), "l", uuid.New(), "h", 0.5, false)
	require.Equal(t, model.SQLStateInvalidArgument, pg.SQLState(err))
	require.Contains(t, err.Error(), "at least 1 second")
	err = model.LeaderLeaseFence(context.Background(), db.Pool(), "nothing", 1)
	require.Equal(t, model.SQLStateFenced, pg.SQLState(err))
}

// A takeover waits for the fenced transaction in flight instead of overlapping it, and the
// fence bounds how long that transaction may sit idle, so a leader stopped in the middle of
// one cannot hold the lease row.
func TestLeaseTakeoverWaitsForTheFencedWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := schematest.DB(t)
	a, b := uuid.New(), uuid.New()
	require.True(t, acquire(t, db, "l", a, "hostA", 6, false).Leader)

	tx, err := db.Pool().Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck // ended below; a second rollback is a no-op
	var pid int
	require.NoError(t, tx.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid))
	require.NoError(t, model.LeaderLeaseFence(ctx, tx, "l", 1))
	var idle string
	require.NoError(t, tx.QueryRow(ctx, "show idle_in_transaction_session_timeout").Scan(&idle))
	require.Equal(t, "2s", idle, "a third of the 6 s ttl")

	// The fenced transaction holds the row: a round fails with lock_not_available after its
	// 1 s lock_timeout rather than waiting on.
	_, err = model.LeaderLeaseAcquire(ctx, db.Pool(), "l", b, "hostB", 5, false)
	require.Equal(t, "55P03", pg.SQLState(err), "%v", err)

	// Left idle (its leader stopped), the transaction is ended by the server...
	require.Eventually(t, func() bool {
		var n int
		err := db.Pool().QueryRow(ctx, "select count(*) from pg_stat_activity where pid = $1", pid).Scan(&n)
		return err == nil && n == 0
	}, 10*time.Second, 50*time.Millisecond)
	require.Error(t, tx.Commit(ctx), "the server ended the idle fenced transaction")
	// ... and the lease can change hands once it expires.
	expire(t, db, "l")
	require.True(t, acquire(t, db, "l", b, "hostB", 5, false).Leader)
}

func TestLeaderWorkJournal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := schematest.DB(t)
	a := uuid.New()
	require.NoError(t, model.LeaderWorkRecord(ctx, db.Pool(), "l", 4, a, 17))
	_, err := db.Pool().Exec(ctx, "update leader_work set at = now() - interval '30 days'")
	require.NoError(t, err)
	require.NoError(t, model.LeaderWorkRecord(ctx, db.Pool(), "l", 4, a, 3))
	n, err := model.LeaderWorkPurge(ctx, db.Pool(), 100)
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "only records older than the archive retention go")
}

func events(t *testing.T, db *pg.DB, kind string) []model.SystemEvent {
	t.Helper()
	all, err := model.SystemEventList(context.Background(), db.Pool(), 1000)
	require.NoError(t, err)
	var out []model.SystemEvent
	for _, e := range all {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// expire ends a lease's life now, as time passing would.
func expire(t *testing.T, db *pg.DB, name string) {
	t.Helper()
	_, err := db.Pool().Exec(context.Background(),
		"update leader_lease set expires_at = clock_timestamp() - interval '1 second' where name = $1", name)
	require.NoError(t, err)
}
