package schema_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/model"
)

// The lease of an unclosed write (disk_copy_expire_unclosed, policy put_lease_seconds):
// a write not uploaded or not closed in time fails, says why, gives its copy and quota
// up, and never held up the readers of the file's previous content.

// age makes the write of copy id older than the lease (the test moves the write's start
// back rather than waiting a lease out).
func (l *life) age(copyID *int64) {
	l.t.Helper()
	require.NotNil(l.t, copyID)
	_, err := l.db.Pool().Exec(l.ctx, "update disk_copy set created_at = now() - interval '2 days' where id = $1", *copyID)
	require.NoError(l.t, err)
}

func (l *life) expireUnclosed() []model.DiskCopyExpireUnclosedRow {
	l.t.Helper()
	rows, err := model.DiskCopyExpireUnclosed(l.ctx, l.db.Pool(), 100)
	require.NoError(l.t, err)
	return rows
}

func TestUnclosedWriteExpires(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	l.diskServer("ds1")
	l.setQuota("alice", new(int64(1000)), new(int64(10)))

	// Uploaded, never closed: a new file.
	req := l.submit(model.RequestTypePut, false, "/pollux/new")
	l.stage()
	w := l.sub(req)
	require.NoError(t, l.upload(w, 100))
	require.Equal(t, model.RequestStatusFinished, l.requestStatus(req))
	get := l.submit(model.RequestTypeGet, false, "/pollux/new")
	l.stage()
	require.Equal(t, model.SubrequestStatusWaitsubreq, l.sub(get).Status, "a first write is waited for")
	require.Empty(t, l.expireUnclosed(), "within its lease: nothing expires")

	l.age(w.DiskCopyID)
	_, err := model.PolicySet(l.ctx, l.db.Pool(), "put_lease_seconds", 0, "test")
	require.NoError(t, err)
	require.Empty(t, l.expireUnclosed(), "policy 0: a write is never expired")
	_, err = model.PolicySet(l.ctx, l.db.Pool(), "put_lease_seconds", 3600, "test")
	require.NoError(t, err)

	expired := l.expireUnclosed()
	require.Len(t, expired, 1)
	require.Equal(t, w.ID, *expired[0].SubrequestID)
	require.Equal(t, "/pollux/new", expired[0].Path)
	require.Contains(t, expired[0].Reason, "expired: the write of /pollux/new was not closed within policy put_lease_seconds (3600 s) of its put at ")
	w = l.sub(req)
	require.Equal(t, model.SubrequestStatusFinished, w.Status, "a final status stays: its upload did end")
	require.Equal(t, expired[0].Reason, w.Info, "the request's view says why the write is gone")
	require.Equal(t, model.RequestStatusFinished, l.requestStatus(req))
	events, err := model.SystemEventList(l.ctx, l.db.Pool(), 1)
	require.NoError(t, err)
	require.Equal(t, "write_expired", events[0].Kind)
	require.Equal(t, expired[0].Reason, events[0].Message)
	_, err = l.query("/pollux/new")
	require.Equal(t, model.SQLStateNotFound, sqlstate(err), "a file whose only write expired does not exist")
	u := l.usage("alice")
	require.Zero(t, u.Bytes, "its bytes are released")
	require.Zero(t, u.Files, "and its file")
	l.stage()
	g := l.sub(get)
	require.Equal(t, model.SubrequestStatusFailed, g.Status, "the waiting get was started again and found no file")
	require.Contains(t, *g.ErrorMessage, "no such file")
	require.Empty(t, l.expireUnclosed(), "swept once")

	done := l.submit(model.RequestTypePutdone, false, "/pollux/new")
	l.stage()
	require.Equal(t, model.SubrequestStatusFailed, l.sub(done).Status, "nothing is left to close")
	l.recount()
}

func TestExpiredRewriteLeavesThePreviousContent(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	l.diskServer("ds1")
	l.put("/pollux/f", 10, "0000000a")

	req := l.submit(model.RequestTypePut, false, "/pollux/f")
	l.stage()
	w := l.sub(req)
	require.NoError(t, l.upload(w, 20))

	// While the rewrite is open, and after it expired, a get reads the old content.
	during := l.submit(model.RequestTypeGet, false, "/pollux/f")
	l.stage()
	g := l.sub(during)
	require.Equal(t, model.SubrequestStatusScheduled, g.Status, g.Info)
	open := l.transfer(g)
	require.EqualValues(t, 10, *open.SizeBytes)

	l.age(w.DiskCopyID)
	require.Len(t, l.expireUnclosed(), 1)
	require.NoError(t, model.TransferGetEnded(l.ctx, l.db.Pool(), g.ID, l.token(g.ID), 10), "a read under way is not disturbed")
	q, err := l.query("/pollux/f")
	require.NoError(t, err)
	require.Equal(t, "STAGED", q.Status)
	require.EqualValues(t, 10, *q.SizeBytes, "the previous content stays the file's")
	require.NotNil(t, q.Info)
	require.Regexp(t, `^expired: the write of /pollux/f was not closed within policy put_lease_seconds \(86400 s\) of its put at .* UTC and was given up; write it again; the file keeps its previous content$`,
		*q.Info, "stager_qry says why")

	// The path is free for another writer at once.
	again := l.submit(model.RequestTypePut, false, "/pollux/f")
	l.stage()
	require.Equal(t, model.SubrequestStatusScheduled, l.sub(again).Status, "no conflict with the expired write")
	q, err = l.query("/pollux/f")
	require.NoError(t, err)
	require.Nil(t, q.Info, "a new write: the expiry is old news")
	l.recount()
}

func TestWritesNeverUploadedExpire(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	ds, _ := l.diskServer("ds1")

	// One claimed by its disk server whose client never came (the user's doing), one
	// placed and never claimed (the service's).
	claimedReq := l.submit(model.RequestTypePut, false, "/pollux/claimed")
	placedReq := l.submit(model.RequestTypePut, false, "/pollux/placed")
	l.stage()
	rows := l.claimOn(ds, 1)
	require.Len(t, rows, 1)
	claimed, placed := l.sub(claimedReq), l.sub(placedReq)
	require.Equal(t, claimed.ID, rows[0].SubrequestID, "oldest first")
	require.Equal(t, model.SubrequestStatusReady, claimed.Status)
	require.Equal(t, model.SubrequestStatusScheduled, placed.Status)
	l.age(claimed.DiskCopyID)
	l.age(placed.DiskCopyID)

	require.Len(t, l.expireUnclosed(), 2)
	claimed, placed = l.sub(claimedReq), l.sub(placedReq)
	require.Equal(t, model.SubrequestStatusFailed, claimed.Status)
	require.Equal(t, model.SQLStateConflict, *claimed.ErrorCode, "its mover waited for a client that never came")
	require.Equal(t, model.SubrequestStatusFailed, placed.Status)
	require.Equal(t, model.SQLStateUnavailable, *placed.ErrorCode, "it never reached a mover")
	// The mover's late end of the expired write is refused (its bytes are discarded).
	err := model.TransferPutEnded(l.ctx, l.db.Pool(), claimed.ID, l.token(claimed.ID), 5, "00000005", new("00000005"))
	require.Equal(t, model.SQLStateConflict, sqlstate(err))
	for _, p := range []string{"/pollux/claimed", "/pollux/placed"} {
		_, err := l.query(p)
		require.Equal(t, model.SQLStateNotFound, sqlstate(err), p)
	}
	l.recount()
}
