package schema_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/uuid"
	"github.com/pollux-storage/pollux/model"
)

// Every report a daemon makes may reach the database twice: framework/pg runs idempotent
// work again when its commit's reply was lost. The same report again is the same success
// and changes nothing; a different outcome for a transfer that ended is a conflict.

// copies returns the statuses of the file's copies by copy id, and of the copies the
// file no longer names.
func (l *life) copies(path string) map[int64]model.DiskCopyStatus {
	l.t.Helper()
	rows, err := l.db.Pool().Query(l.ctx, `select dc.id, dc.status from disk_copy dc
		where dc.file_id = (select id from file where path = $1) order by dc.id`, path)
	require.NoError(l.t, err)
	defer rows.Close()
	out := map[int64]model.DiskCopyStatus{}
	for rows.Next() {
		var id int64
		var st model.DiskCopyStatus
		require.NoError(l.t, rows.Scan(&id, &st))
		out[id] = st
	}
	require.NoError(l.t, rows.Err())
	return out
}

func (l *life) events(kind string) int {
	l.t.Helper()
	var n int
	require.NoError(l.t, l.db.Pool().QueryRow(l.ctx, "select count(*) from system_event where kind = $1", kind).Scan(&n))
	return n
}

// A `pollux cp` over an existing file whose end is reported twice: the second report
// succeeds, the new version stays the file's content, and nothing else moves.
func TestPutEndedTwiceOverAnExistingFile(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	l.diskServer("ds1")
	l.put("/pollux/f", 10, "00000001")
	before := l.copies("/pollux/f")
	require.Len(t, before, 1)

	req := l.submit(model.RequestTypePut, true, "/pollux/f")
	l.stage()
	s := l.sub(req)
	l.transfer(s)
	require.NoError(t, model.TransferPutEnded(l.ctx, l.db.Pool(), s.ID, l.token(s.ID), 20, "00000002", new("00000002")))
	after := l.copies("/pollux/f")
	finished := l.sub(req)

	require.NoError(t, model.TransferPutEnded(l.ctx, l.db.Pool(), s.ID, l.token(s.ID), 20, "00000002", new("00000002")), "the same report again")
	require.Equal(t, after, l.copies("/pollux/f"), "the second report changed no copy")
	require.Equal(t, finished, l.sub(req), "nor the subrequest")
	q, err := l.query("/pollux/f")
	require.NoError(t, err)
	require.Equal(t, "STAGED", q.Status)
	require.EqualValues(t, 20, *q.SizeBytes, "the new version is the file's content")
	require.Equal(t, model.DiskCopyStatusStaged, after[*s.DiskCopyID])
	for id := range before {
		require.Equal(t, model.DiskCopyStatusInvalid, after[id], "the old version was superseded once")
	}

	// Another outcome for the ended write is a conflict, and changes nothing either.
	err = model.TransferPutEnded(l.ctx, l.db.Pool(), s.ID, l.token(s.ID), 21, "00000002", new("00000002"))
	require.Equal(t, model.SQLStateConflict, sqlstate(err))
	err = model.TransferFail(l.ctx, l.db.Pool(), s.ID, l.token(s.ID), model.SQLStateTransferFailed, "the disk server could not record the end")
	require.Equal(t, model.SQLStateConflict, sqlstate(err), "a finished write is not failed afterwards")
	require.ErrorContains(t, err, "finished successfully")
	require.Equal(t, after, l.copies("/pollux/f"))
	require.Equal(t, finished, l.sub(req))
}

func TestGetEndedTwice(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	l.diskServer("ds1")
	l.put("/pollux/f", 10, "00000001")
	get := l.submit(model.RequestTypeGet, false, "/pollux/f")
	l.stage()
	g := l.sub(get)
	l.transfer(g)
	require.NoError(t, model.TransferGetEnded(l.ctx, l.db.Pool(), g.ID, l.token(g.ID), 10))
	ended := l.sub(get)
	require.NoError(t, model.TransferGetEnded(l.ctx, l.db.Pool(), g.ID, l.token(g.ID), 10), "the same report again")
	require.Equal(t, ended, l.sub(get))
	err := model.TransferGetEnded(l.ctx, l.db.Pool(), g.ID, l.token(g.ID), 9)
	require.Equal(t, model.SQLStateConflict, sqlstate(err), "another size for an ended read")
}

func TestFailAndCorruptReportedTwice(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	l.diskServer("ds1")
	req := l.submit(model.RequestTypePut, false, "/pollux/broken")
	l.stage()
	s := l.sub(req)
	l.transfer(s)
	require.NoError(t, model.TransferFail(l.ctx, l.db.Pool(), s.ID, l.token(s.ID), model.SQLStateBadData, "upload truncated"))
	failed := l.sub(req)
	require.NoError(t, model.TransferFail(l.ctx, l.db.Pool(), s.ID, l.token(s.ID), model.SQLStateBadData, "upload truncated"), "the same report again")
	require.NoError(t, model.TransferFail(l.ctx, l.db.Pool(), s.ID, l.token(s.ID), model.SQLStateTransferFailed, "the watcher's reason"), "failed is failed")
	require.Equal(t, failed, l.sub(req), "the first reason stays")
	err := model.TransferPutEnded(l.ctx, l.db.Pool(), s.ID, l.token(s.ID), 1, "00000001", new("00000001"))
	require.Equal(t, model.SQLStateConflict, sqlstate(err), "a failed write cannot end well afterwards")

	l.put("/pollux/f", 10, "00000001")
	get := l.submit(model.RequestTypeGet, false, "/pollux/f")
	l.stage()
	g := l.sub(get)
	l.transfer(g)
	sum := "0000ffff"
	first, err := model.TransferGetCorrupt(l.ctx, l.db.Pool(), g.ID, l.token(g.ID), 10, &sum)
	require.NoError(t, err)
	corrupt := l.sub(get)
	again, err := model.TransferGetCorrupt(l.ctx, l.db.Pool(), g.ID, l.token(g.ID), 10, &sum)
	require.NoError(t, err, "the same report again")
	require.Equal(t, first, again)
	require.Equal(t, corrupt, l.sub(get))
	require.Equal(t, 1, l.events("disk_copy_corrupt"), "journaled once")
}

func TestRegistrationsAndCollectionRepeated(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	id := uuid.New()
	for range 2 {
		require.NoError(t, model.DaemonInstanceRegister(l.ctx, l.db.Pool(), id, "stagerd", "h1", 42, "v", []byte(`{}`), "http://h1:1"))
		require.NoError(t, model.DaemonInstanceHeartbeat(l.ctx, l.db.Pool(), id))
	}
	require.Equal(t, 1, l.events("daemon_start"), "one start, however often its registration is repeated")
	for range 2 {
		require.NoError(t, model.DaemonInstanceStop(l.ctx, l.db.Pool(), id))
	}
	require.Equal(t, 1, l.events("daemon_stop"))

	ds, fs := l.diskServer("ds1")
	again, fsAgain := l.diskServer("ds1")
	require.Equal(t, ds, again)
	require.Equal(t, fs, fsAgain)

	// A removed file's copy, collected: its deletion reported twice.
	l.put("/pollux/gone", 10, "00000001")
	rm := l.submit(model.RequestTypeRm, false, "/pollux/gone")
	l.stage()
	require.Equal(t, model.SubrequestStatusFinished, l.sub(rm).Status)
	claimed, err := model.DiskCopyClaimGc(l.ctx, l.db.Pool(), ds, 10)
	require.NoError(t, err)
	require.Len(t, claimed, 1)
	for range 2 {
		require.NoError(t, model.DiskCopyDeleted(l.ctx, l.db.Pool(), claimed[0].ID))
	}
	again2, err := model.DiskCopyClaimGc(l.ctx, l.db.Pool(), ds, 10)
	require.NoError(t, err)
	require.Empty(t, again2, "a re-run of the collection finds nothing left")
}

// A disk server whose claim's commit reply was lost claims again with the same tokens:
// it gets the same transfers back, and its next tokens claim only what is new.
func TestTransferClaimIsKeyedByItsTokens(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	ds, _ := l.diskServer("ds1")
	var reqs []string
	for _, p := range []string{"/pollux/a", "/pollux/b", "/pollux/c"} {
		reqs = append(reqs, l.submit(model.RequestTypePut, true, p))
	}
	l.stage()
	claim := func(tokens ...string) []model.TransferClaimRow {
		t.Helper()
		rows, err := model.TransferClaim(l.ctx, l.db.Pool(), ds, "http://mover", tokens)
		require.NoError(t, err)
		return rows
	}
	first := claim("t1", "t2")
	require.Len(t, first, 2)
	ready := l.sub(reqs[0])
	require.Equal(t, model.SubrequestStatusReady, ready.Status)

	require.Equal(t, first, claim("t1", "t2"), "the same claim again returns the same transfers")
	require.Equal(t, ready, l.sub(reqs[0]), "and changes nothing")
	require.Equal(t, model.SubrequestStatusScheduled, l.sub(reqs[2]).Status, "the third is still to claim")

	// The tokens of a lost claim, with a fresh one: the lost claim's transfers come back,
	// and only the fresh token claims.
	rows := claim("t1", "t2", "t3")
	require.Len(t, rows, 3)
	require.Equal(t, first, rows[:2])
	require.Equal(t, l.sub(reqs[2]).ID, rows[2].SubrequestID)
	require.Equal(t, "t3", rows[2].Token)
	require.Empty(t, claim("t4"), "fresh tokens return nothing another claim made READY")
}

// A mover may unlink the bytes of a refused report only when the catalogue has no copy
// at their place.
func TestDiskCopyDiscardable(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	ds, _ := l.diskServer("ds1")
	other, _ := l.diskServer("ds2")
	l.put("/pollux/f", 10, "00000001")
	var path string
	require.NoError(t, l.db.Pool().QueryRow(l.ctx, "select disk_path from disk_copy where file_id = (select id from file where path = '/pollux/f')").Scan(&path))
	discardable := func(server int64, mount, path string) bool {
		t.Helper()
		ok, err := model.DiskCopyDiscardable(l.ctx, l.db.Pool(), server, mount, path)
		require.NoError(t, err)
		return ok
	}
	require.False(t, discardable(ds, "/data/ds1", path), "a STAGED copy is the file's content")
	require.True(t, discardable(other, "/data/ds1", path), "another server's data directory holds no such copy")
	require.True(t, discardable(ds, "/data/ds1", path+"x"), "no copy at that place")

	rm := l.submit(model.RequestTypeRm, false, "/pollux/f")
	l.stage()
	require.Equal(t, model.SubrequestStatusFinished, l.sub(rm).Status)
	require.False(t, discardable(ds, "/data/ds1", path), "an INVALID copy is its garbage collector's")
	claimed, err := model.DiskCopyClaimGc(l.ctx, l.db.Pool(), ds, 10)
	require.NoError(t, err)
	require.Len(t, claimed, 1)
	require.False(t, discardable(ds, "/data/ds1", path), "a copy being collected is the collector's")
	require.NoError(t, model.DiskCopyDeleted(l.ctx, l.db.Pool(), claimed[0].ID))
	require.True(t, discardable(ds, "/data/ds1", path), "collected and forgotten: nobody else will unlink it")

	_, err = model.DiskCopyDiscardable(l.ctx, l.db.Pool(), ds, "/data/ds1", "")
	require.Equal(t, model.SQLStateInvalidArgument, sqlstate(err))
}

// A transfer taken back from its disk server (its diskserverd restarted, or stopped) and
// placed again while the old process still runs somewhere (a host that was cut off): the
// old process's late reports, carrying the old token, change nothing: a failure is moot,
// an end is refused, and the new placement's own end is the one recorded.
func TestLateReportsOfATakenBackTransfer(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	ds1, _ := l.diskServer("ds1")
	req := l.submit(model.RequestTypePut, true, "/pollux/f")
	l.stage()
	s := l.sub(req)
	require.Equal(t, ds1, *s.DiskServerID, "the only server")
	old := l.transfer(s).Token
	l.diskServer("ds2")

	// A new diskserverd process on ds1 takes back what the old one was moving.
	n, err := model.DiskServerRecover(l.ctx, l.db.Pool(), ds1)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	require.Equal(t, model.SubrequestStatusRetry, l.sub(req).Status)
	l.stage()
	s = l.sub(req)
	require.Equal(t, model.SubrequestStatusScheduled, s.Status, "placed again")
	fresh := l.transfer(s).Token
	require.NotEqual(t, old, fresh)
	placed := l.sub(req)

	// ds1 comes back and reports late, with the token it was given.
	require.NoError(t, model.TransferFail(l.ctx, l.db.Pool(), s.ID, old, model.SQLStateTransferFailed, "the client went away"))
	require.Equal(t, placed, l.sub(req), "a late failure changes nothing")
	err = model.TransferPutEnded(l.ctx, l.db.Pool(), s.ID, old, 7, "00000007", new("00000007"))
	require.Equal(t, model.SQLStateUnavailable, sqlstate(err), "the service's doing, not the user's: run it again")
	require.ErrorContains(t, err, "no longer this transfer's")
	require.Equal(t, placed, l.sub(req), "a late end changes nothing")
	_, err = model.TransferGetCorrupt(l.ctx, l.db.Pool(), s.ID, old, 7, nil)
	require.Equal(t, model.SQLStateConflict, sqlstate(err))

	require.NoError(t, model.TransferPutEnded(l.ctx, l.db.Pool(), s.ID, fresh, 9, "00000009", new("00000009")))
	q, err := l.query("/pollux/f")
	require.NoError(t, err)
	require.Equal(t, "STAGED", q.Status)
	require.EqualValues(t, 9, *q.SizeBytes, "the new placement's write is the content")
}
