package schema_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/uuid"
	"github.com/pollux-storage/pollux/model"
	"github.com/pollux-storage/pollux/schema/schematest"
)

// The request life cycle, decided entirely by the logic in schema/logic, driven through the
// generated wrappers in the order the daemons call them. Each test has its own database.

type life struct {
	t   *testing.T
	db  *pg.DB
	ctx context.Context
	// tokens are what the last claim of each subrequest gave its disk server, which its
	// reports carry.
	tokens map[int64]string
}

func newLife(t *testing.T) *life {
	t.Helper()
	return &life{t: t, db: schematest.DB(t), ctx: context.Background(), tokens: map[int64]string{}}
}

func (l *life) submit(typ model.RequestType, autoClose bool, paths ...string) string {
	l.t.Helper()
	id := uuid.New()
	rows, err := model.RequestSubmit(l.ctx, l.db.Pool(), id, typ, "default", "alice", "", "test", paths, autoClose, nil, nil)
	require.NoError(l.t, err)
	require.True(l.t, rows[0].Created)
	return id
}

func (l *life) subs(request string) []model.Subrequest {
	l.t.Helper()
	s, err := model.SubrequestList(l.ctx, l.db.Pool(), request)
	require.NoError(l.t, err)
	return s
}

func (l *life) sub(request string) model.Subrequest {
	l.t.Helper()
	s := l.subs(request)
	require.Len(l.t, s, 1)
	return s[0]
}

// stage runs every stager pool once.
func (l *life) stage() {
	l.t.Helper()
	for _, family := range model.Families() {
		require.NoError(l.t, l.db.Tx(l.ctx, "stage", func(q pg.Querier) error {
			_, err := model.SubrequestClaim(l.ctx, q, string(family), 100)
			return err
		}))
	}
}

// schedule runs the scheduler once (what waits for a resource); it returns the placements.
func (l *life) schedule() []model.SubrequestClaimWaitschedRow {
	l.t.Helper()
	rows, err := model.SubrequestClaimWaitsched(l.ctx, l.db.Pool(), 100)
	require.NoError(l.t, err)
	return rows
}

func (l *life) diskServer(name string) (int64, int64) {
	l.t.Helper()
	id, err := model.DiskServerRegister(l.ctx, l.db.Pool(), name, "http://"+name+":9000", 0.1)
	require.NoError(l.t, err)
	fs, err := model.FileSystemRegister(l.ctx, l.db.Pool(), id, "/data/"+name, "default", 1<<40, 1<<39)
	require.NoError(l.t, err)
	return id, fs
}

// claimOn runs a disk server's claim once with n tokens.
func (l *life) claimOn(ds int64, n int) []model.TransferClaimRow {
	l.t.Helper()
	tokens := make([]string, n)
	for i := range tokens {
		// Fresh tokens each time, as a disk server makes them: a claim is keyed by its tokens.
		tokens[i] = fmt.Sprintf("tok-%d-%s", ds, uuid.New())
	}
	rows, err := model.TransferClaim(l.ctx, l.db.Pool(), ds, "http://mover", tokens)
	require.NoError(l.t, err)
	for _, r := range rows {
		l.tokens[r.SubrequestID] = r.Token
	}
	return rows
}

// token is the token a disk server reports subrequest id's transfer with: the one its last
// claim gave.
func (l *life) token(id int64) string {
	l.t.Helper()
	tok, ok := l.tokens[id]
	require.True(l.t, ok, "subrequest %d was never claimed by a disk server", id)
	return tok
}

// transfer has the subrequest's disk server claim it (its oldest placed transfer).
func (l *life) transfer(s model.Subrequest) model.TransferClaimRow {
	l.t.Helper()
	require.Equal(l.t, model.SubrequestStatusScheduled, s.Status, "not placed: %s", s.Info)
	require.NotNil(l.t, s.DiskServerID)
	rows := l.claimOn(*s.DiskServerID, 1)
	require.Len(l.t, rows, 1)
	require.Equal(l.t, s.ID, rows[0].SubrequestID, "the disk server claimed another transfer first")
	return rows[0]
}

func (l *life) query(path string) (model.FileQueryRow, error) {
	rows, err := model.FileQuery(l.ctx, l.db.Pool(), path, "alice")
	if err != nil {
		return model.FileQueryRow{}, err
	}
	return rows[0], nil
}

func (l *life) requestStatus(id string) model.RequestStatus {
	l.t.Helper()
	r, err := model.RequestGet(l.ctx, l.db.Pool(), id)
	require.NoError(l.t, err)
	return r[0].Status
}

func sqlstate(err error) string { return pg.SQLState(err) }

// waitForOneLockWaiter waits until one session of the test's database waits for a lock: the
// second of two transactions has reached the first's row.
func (l *life) waitForOneLockWaiter(msg string) {
	l.t.Helper()
	require.Eventually(l.t, func() bool {
		var waiting int
		err := l.db.Pool().QueryRow(l.ctx, `select count(*) from pg_stat_activity
			where datname = current_database() and wait_event_type = 'Lock'`).Scan(&waiting)
		return err == nil && waiting == 1
	}, 10*time.Second, 5*time.Millisecond, msg)
}

// put writes path all the way: put, transfer, end, putdone.
func (l *life) put(path string, size int64, sum string) {
	l.t.Helper()
	req := l.submit(model.RequestTypePut, false, path)
	l.stage()
	s := l.sub(req)
	l.transfer(s)
	require.NoError(l.t, model.TransferPutEnded(l.ctx, l.db.Pool(), s.ID, l.token(s.ID), size, sum, new(sum)))
	done := l.submit(model.RequestTypePutdone, false, path)
	l.stage()
	require.Equal(l.t, model.SubrequestStatusFinished, l.sub(done).Status, l.sub(done).ErrorMessage)
}

func TestPutLifeCycle(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	req := l.submit(model.RequestTypePut, false, "/pollux/u/alice/f")
	require.Equal(t, model.SubrequestStatusStart, l.sub(req).Status)

	l.stage()
	s := l.sub(req)
	require.Equal(t, model.SubrequestStatusWaitsched, s.Status)
	require.NotNil(t, s.DiskCopyID)
	// No disk server yet: the put waits in the database and says so.
	require.Equal(t, "queued, no disk server of its service class is available", s.Info)

	// Nothing changed since: the scheduler does not even look at it again.
	require.Empty(t, l.schedule())
	require.Equal(t, s.UpdatedAt, l.sub(req).UpdatedAt, "a try with no new capacity writes nothing")

	ds, _ := l.diskServer("ds1") // capacity: the epoch moves on
	placed := l.schedule()
	require.Len(t, placed, 1)
	require.Equal(t, ds, placed[0].DiskServerID)
	require.Equal(t, "http://ds1:9000", placed[0].DiskServerURL, "the URL the wake-up hint goes to")

	s = l.sub(req)
	require.Equal(t, model.SubrequestStatusScheduled, s.Status)
	open := l.transfer(s)
	require.Equal(t, model.RequestTypePut, open.Type)
	require.Equal(t, "/data/ds1", open.MountPoint)
	require.NotEmpty(t, open.DiskPath)
	require.EqualValues(t, 300, open.OpenSeconds, "the policy's time limits")
	require.EqualValues(t, 3600, open.TransferSeconds)
	ready := l.sub(req)
	require.Equal(t, model.SubrequestStatusReady, ready.Status)
	require.Equal(t, open.Token, *ready.Token, "the client's long poll returns the token")
	require.Equal(t, fmt.Sprintf("http://mover/v1/transfers/%d", s.ID), *ready.MoverURL)
	require.Empty(t, l.claimOn(ds, 4), "a READY transfer is nobody's to claim again")

	require.NoError(t, model.TransferPutEnded(l.ctx, l.db.Pool(), s.ID, l.token(s.ID), 1024, "0a0b0c0d", new("0a0b0c0d")))
	require.Equal(t, model.SubrequestStatusFinished, l.sub(req).Status)
	require.Equal(t, model.RequestStatusFinished, l.requestStatus(req))
	q, err := l.query("/pollux/u/alice/f")
	require.NoError(t, err)
	require.Equal(t, "STAGEOUT", q.Status, "written but not closed until putdone")

	done := l.submit(model.RequestTypePutdone, false, "/pollux/u/alice/f")
	l.stage()
	require.Equal(t, model.SubrequestStatusFinished, l.sub(done).Status)
	q, err = l.query("/pollux/u/alice/f")
	require.NoError(t, err)
	require.Equal(t, "STAGED", q.Status)
	require.EqualValues(t, 1024, *q.SizeBytes)
	require.Equal(t, "0a0b0c0d", *q.ChecksumAdler32)

	// A second putdone has nothing to close.
	again := l.submit(model.RequestTypePutdone, false, "/pollux/u/alice/f")
	l.stage()
	require.Equal(t, model.SubrequestStatusFailed, l.sub(again).Status)
	require.Contains(t, *l.sub(again).ErrorMessage, "nothing to close")
}

func TestAutoCloseAndGet(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	l.diskServer("ds1")
	req := l.submit(model.RequestTypePut, true, "/pollux/f")
	l.stage()
	s := l.sub(req)
	require.Equal(t, model.SubrequestStatusScheduled, s.Status, "a disk server is up: placed by the stager at once")
	l.transfer(s)
	require.NoError(t, model.TransferPutEnded(l.ctx, l.db.Pool(), s.ID, l.token(s.ID), 5, "00000001", new("00000001")))
	q, err := l.query("/pollux/f")
	require.NoError(t, err)
	require.Equal(t, "STAGED", q.Status, "pollux cp closes at the end of the upload")

	get := l.submit(model.RequestTypeGet, false, "/pollux/f")
	l.stage()
	g := l.sub(get)
	open := l.transfer(g)
	require.Equal(t, model.RequestTypeGet, open.Type)
	require.EqualValues(t, 5, *open.SizeBytes)
	require.Equal(t, "00000001", *open.ChecksumAdler32, "a read carries the catalogue's checksum")
	require.NoError(t, model.TransferGetEnded(l.ctx, l.db.Pool(), g.ID, l.token(g.ID), 5))
	require.Equal(t, model.RequestStatusFinished, l.requestStatus(get))

	ptg := l.submit(model.RequestTypePrepareToGet, false, "/pollux/f")
	l.stage()
	require.Equal(t, model.SubrequestStatusFinished, l.sub(ptg).Status, "already on disk")
}

// Two stagers decide two puts of one path at the same moment, in two transactions: the
// second waits on the first's file row and, once the first commits, sees its unclosed write
// and fails; the first is placed.
func TestConcurrentPutsOfOnePath(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	l.diskServer("ds1")
	first := l.submit(model.RequestTypePut, false, "/pollux/same")
	second := l.submit(model.RequestTypePut, false, "/pollux/same")

	one, err := l.db.Pool().Begin(l.ctx)
	require.NoError(t, err)
	defer one.Rollback(l.ctx)
	decided, err := model.SubrequestClaim(l.ctx, one, "put", 1)
	require.NoError(t, err)
	require.Len(t, decided, 1)
	require.Equal(t, l.sub(first).ID, decided[0].ID, "the older put is claimed first")
	other := make(chan []model.SubrequestClaimRow, 1)
	otherErr := make(chan error, 1)
	go func() {
		var rows []model.SubrequestClaimRow
		otherErr <- pgx.BeginFunc(l.ctx, l.db.Pool(), func(tx pgx.Tx) (err error) {
			rows, err = model.SubrequestClaim(l.ctx, tx, "put", 1) // skips the row the first holds
			return err
		})
		other <- rows
	}()
	l.waitForOneLockWaiter("the second stager never waited for the first on the file")
	require.NoError(t, one.Commit(l.ctx))
	require.NoError(t, <-otherErr)
	rows := <-other
	require.Len(t, rows, 1)
	require.Equal(t, l.sub(second).ID, rows[0].ID)

	require.Equal(t, model.SubrequestStatusScheduled, l.sub(first).Status)
	s := l.sub(second)
	require.Equal(t, model.SubrequestStatusFailed, s.Status)
	require.Equal(t, model.SQLStateConflict, *s.ErrorCode)
	require.Contains(t, *s.ErrorMessage, "is being written by another request")
	require.Equal(t, model.RequestStatusFailed, l.requestStatus(second))
	var copies int
	require.NoError(t, l.db.Pool().QueryRow(l.ctx, "select count(*) from disk_copy").Scan(&copies))
	require.Equal(t, 1, copies, "the refused put made no copy")
}

// A read placed on a copy waits while its server is down; if the copy is invalidated
// meanwhile (a newer version closed), the scheduler hands it back to the stager, which
// reads the new content: it never loops.
func TestWaitingReadOfAReplacedCopyIsDecidedAgain(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	ds1, _ := l.diskServer("ds1")
	l.put("/pollux/f", 10, "0000000a")
	_, err := l.db.Pool().Exec(l.ctx, "update disk_server set heartbeat_at = now() - interval '1 hour' where id = $1", ds1)
	require.NoError(t, err)
	get := l.submit(model.RequestTypeGet, false, "/pollux/f")
	l.stage()
	g := l.sub(get)
	require.Equal(t, model.SubrequestStatusWaitsched, g.Status)
	require.True(t, strings.HasPrefix(g.Info, "queued, its only copy is on ds1, unavailable since "), g.Info)

	// A new version is written on another server and closed: the old copy is INVALID.
	ds2, _ := l.diskServer("ds2")
	l.put("/pollux/f", 20, "00000014")
	placed := l.schedule()
	require.Empty(t, placed, "the read's copy is gone: not placed on it")
	g = l.sub(get)
	require.Equal(t, model.SubrequestStatusRestart, g.Status, g.Info)
	l.stage()
	g = l.sub(get)
	require.Equal(t, model.SubrequestStatusScheduled, g.Status, g.Info)
	require.Equal(t, ds2, *g.DiskServerID, "it reads the new content, where it is")
}

// The two ways a write is given up agree: a failed upload and a write out of retries both
// leave no valid copy and no namespace entry for a file that never had content, and wake the
// readers waiting on it.
func TestAbandonedWritesAgree(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	ds, _ := l.diskServer("ds1")
	_, err := model.PolicySet(l.ctx, l.db.Pool(), "transfer_max_retries", 0, "test")
	require.NoError(t, err)
	for _, how := range []string{"transfer failed", "retries exhausted"} {
		path := "/pollux/" + strings.ReplaceAll(how, " ", "-")
		req := l.submit(model.RequestTypePut, false, path)
		l.stage()
		w := l.sub(req)
		get := l.submit(model.RequestTypeGet, false, path)
		l.stage()
		require.Equal(t, model.SubrequestStatusWaitsubreq, l.sub(get).Status, how)
		l.transfer(w)
		if how == "transfer failed" {
			require.NoError(t, model.TransferFail(l.ctx, l.db.Pool(), w.ID, l.token(w.ID), model.SQLStateTransferFailed, "disk error"))
		} else {
			n, err := model.DiskServerRecover(l.ctx, l.db.Pool(), ds)
			require.NoError(t, err)
			require.EqualValues(t, 1, n)
		}
		require.Equal(t, model.SubrequestStatusFailed, l.sub(req).Status, how)
		_, err := l.query(path)
		require.Equal(t, model.SQLStateNotFound, sqlstate(err), "%s: a file whose only write was given up does not exist", how)
		require.Equal(t, model.SubrequestStatusRestart, l.sub(get).Status, "%s: the waiting read starts again", how)
		var valid int
		require.NoError(t, l.db.Pool().QueryRow(l.ctx, "select count(*) from disk_copy where id = $1 and status <> 'INVALID'", *w.DiskCopyID).Scan(&valid))
		require.Zero(t, valid, how)
	}
}

// A finished request leaves the hot tables after the retention and is still answered from
// the archive, until the archive's own retention; a late retry of its submission changes
// nothing.
func TestFinishedRequestsAreArchived(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	l.diskServer("ds1")
	l.put("/pollux/kept", 10, "0000000a")
	pending := l.submit(model.RequestTypePut, false, "/pollux/pending")
	l.stage()
	var finished []string
	rows, err := l.db.Pool().Query(l.ctx, "select id::text from request where status = 'FINISHED'")
	require.NoError(t, err)
	finished, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Len(t, finished, 2)
	before, err := model.RequestView(l.ctx, l.db.Pool(), finished[0])
	require.NoError(t, err)

	n, err := model.RequestArchiveFinished(l.ctx, l.db.Pool(), 100)
	require.NoError(t, err)
	require.Zero(t, n, "within the retention nothing moves")
	_, err = model.PolicySet(l.ctx, l.db.Pool(), "request_retention_seconds", 0, "test")
	require.NoError(t, err)
	n, err = model.RequestArchiveFinished(l.ctx, l.db.Pool(), 1)
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "a batch at a time")
	n, err = model.RequestArchiveFinished(l.ctx, l.db.Pool(), 100)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	var hot int
	require.NoError(t, l.db.Pool().QueryRow(l.ctx, "select count(*) from subrequest").Scan(&hot))
	require.Equal(t, 1, hot, "only the pending request's file is left in the hot tables")
	require.Equal(t, model.RequestStatusPending, l.requestStatus(pending))

	after, err := model.RequestView(l.ctx, l.db.Pool(), finished[0])
	require.NoError(t, err)
	require.JSONEq(t, string(before), string(after), "the archive answers as the request did")
	retry, err := model.RequestSubmit(l.ctx, l.db.Pool(), finished[0], model.RequestTypePut, "default", "alice", "", "", []string{"/pollux/kept"}, false, nil, nil)
	if err != nil {
		// The first of the two finished requests may be the putdone.
		retry, err = model.RequestSubmit(l.ctx, l.db.Pool(), finished[0], model.RequestTypePutdone, "default", "alice", "", "", []string{"/pollux/kept"}, false, nil, nil)
	}
	require.NoError(t, err)
	require.False(t, retry[0].Created, "a late retry of an archived request stores nothing")

	_, err = model.PolicySet(l.ctx, l.db.Pool(), "request_archive_seconds", 0, "test")
	require.NoError(t, err)
	purged, err := model.RequestArchivePurge(l.ctx, l.db.Pool(), 100)
	require.NoError(t, err)
	require.EqualValues(t, 2, purged)
	gone, err := model.RequestView(l.ctx, l.db.Pool(), finished[0])
	require.NoError(t, err)
	require.Nil(t, gone)
}

func TestPolicyIsCheckedAndJournaled(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	old, err := model.PolicySet(l.ctx, l.db.Pool(), "transfer_open_seconds", 60, "alice")
	require.NoError(t, err)
	require.EqualValues(t, 300, old)
	v, err := model.PolicyValue(l.ctx, l.db.Pool(), "transfer_open_seconds")
	require.NoError(t, err)
	require.EqualValues(t, 60, v)
	_, err = model.PolicySet(l.ctx, l.db.Pool(), "transfer_open_secs", 60, "alice")
	require.Equal(t, model.SQLStateNotFound, sqlstate(err))
	require.ErrorContains(t, err, "the settings are disk_server_live_seconds")
	_, err = model.PolicySet(l.ctx, l.db.Pool(), "transfer_open_seconds", -1, "alice")
	require.Equal(t, model.SQLStateInvalidArgument, sqlstate(err))
	v, err = model.PolicyValue(l.ctx, l.db.Pool(), "transfer_open_seconds")
	require.NoError(t, err)
	require.EqualValues(t, 60, v, "a refused change changes nothing")
	events, err := model.SystemEventList(l.ctx, l.db.Pool(), 10)
	require.NoError(t, err)
	require.Equal(t, "policy_set", events[0].Kind)
	require.Equal(t, "policy transfer_open_seconds: 300 -> 60", events[0].Message)
}

// A rewrite in progress does not hold up readers: a get decided while the new copy is
// unclosed reads the previous content at once (the write may stay unclosed until its
// lease ends), and a get decided after the close reads the new one. Only a file's first
// write is waited for (TestFailedUploadLeavesNoValidCopy).
func TestGetDuringRewriteReadsPreviousContent(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	l.diskServer("ds1")
	l.put("/pollux/f", 10, "00000010")

	rewrite := l.submit(model.RequestTypePut, false, "/pollux/f")
	l.stage()
	w := l.sub(rewrite)
	q, err := l.query("/pollux/f")
	require.NoError(t, err)
	require.EqualValues(t, 10, *q.SizeBytes, "the old content stays until the new one is closed")

	get := l.submit(model.RequestTypeGet, false, "/pollux/f")
	l.stage()
	g := l.sub(get)
	require.Equal(t, model.SubrequestStatusScheduled, g.Status, "not held up by the unclosed rewrite: %s", g.Info)
	require.NotEqual(t, w.DiskCopyID, g.DiskCopyID, "it reads the previous copy")
	l.transfer(w) // placed first, claimed first
	open := l.transfer(g)
	require.EqualValues(t, 10, *open.SizeBytes, "the previous content's size")
	require.Equal(t, "00000010", *open.ChecksumAdler32, "and its checksum")

	require.NoError(t, model.TransferPutEnded(l.ctx, l.db.Pool(), w.ID, l.token(w.ID), 20, "00000020", new("00000020")))
	// Written, not closed: a read now still gets the previous content.
	again := l.submit(model.RequestTypeGet, false, "/pollux/f")
	l.stage()
	require.NotEqual(t, w.DiskCopyID, l.sub(again).DiskCopyID, "written but not closed: the previous copy is read")
	require.NoError(t, model.TransferGetEnded(l.ctx, l.db.Pool(), g.ID, l.token(g.ID), 10))
	require.Equal(t, model.RequestStatusFinished, l.requestStatus(get), "the read of the previous content ended well")

	l.submit(model.RequestTypePutdone, false, "/pollux/f")
	l.stage()
	after := l.submit(model.RequestTypeGet, false, "/pollux/f")
	l.stage()
	a := l.sub(after)
	require.Equal(t, model.SubrequestStatusScheduled, a.Status, a.Info)
	require.Equal(t, w.DiskCopyID, a.DiskCopyID, "after the close, a get reads the new copy")
	var invalid int
	require.NoError(t, l.db.Pool().QueryRow(l.ctx, "select count(*) from disk_copy where status = 'INVALID'").Scan(&invalid))
	require.Equal(t, 1, invalid, "the old copy is invalidated")
}

func TestRmOfFileBeingWritten(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	l.diskServer("ds1")
	req := l.submit(model.RequestTypePut, false, "/pollux/f")
	l.stage()
	w := l.sub(req)
	l.transfer(w)

	rm := l.submit(model.RequestTypeRm, false, "/pollux/f")
	l.stage()
	require.Equal(t, model.SubrequestStatusFinished, l.sub(rm).Status)
	w = l.sub(req)
	require.Equal(t, model.SubrequestStatusFailed, w.Status)
	require.Contains(t, *w.ErrorMessage, "removed (stager_rm) while being written")
	err := model.TransferPutEnded(l.ctx, l.db.Pool(), w.ID, l.token(w.ID), 3, "00000003", new("00000003"))
	require.Equal(t, model.SQLStateConflict, sqlstate(err), "the mover learns the write is no longer wanted")
	_, err = l.query("/pollux/f")
	require.Equal(t, model.SQLStateNotFound, sqlstate(err))

	// The invalidated copy is the disk server's to delete.
	gc, err := model.DiskCopyClaimGc(l.ctx, l.db.Pool(), *w.DiskServerID, 10)
	require.NoError(t, err)
	require.Len(t, gc, 1)
	require.NoError(t, model.DiskCopyDeleted(l.ctx, l.db.Pool(), gc[0].ID))
}

func TestRmOfFileBeingReadLetsTheReadFinish(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	ds, _ := l.diskServer("ds1")
	l.put("/pollux/f", 10, "00000010")
	get := l.submit(model.RequestTypeGet, false, "/pollux/f")
	l.stage()
	g := l.sub(get)
	l.transfer(g)

	rm := l.submit(model.RequestTypeRm, false, "/pollux/f")
	l.stage()
	require.Equal(t, model.SubrequestStatusFinished, l.sub(rm).Status)
	gc, err := model.DiskCopyClaimGc(l.ctx, l.db.Pool(), ds, 10)
	require.NoError(t, err)
	require.Empty(t, gc, "a copy being read is not deleted under its reader")
	require.NoError(t, model.TransferGetEnded(l.ctx, l.db.Pool(), g.ID, l.token(g.ID), 10))
	gc, err = model.DiskCopyClaimGc(l.ctx, l.db.Pool(), ds, 10)
	require.NoError(t, err)
	require.Len(t, gc, 1)

	// The unlink failed (the copy stays BEINGDELETED): it is not claimed again at once,
	// but is once ten minutes have passed.
	gc2, err := model.DiskCopyClaimGc(l.ctx, l.db.Pool(), ds, 10)
	require.NoError(t, err)
	require.Empty(t, gc2)
	_, err = l.db.Pool().Exec(l.ctx, "update disk_copy set updated_at = now() - interval '11 minutes' where id = $1", gc[0].ID)
	require.NoError(t, err)
	gc2, err = model.DiskCopyClaimGc(l.ctx, l.db.Pool(), ds, 10)
	require.NoError(t, err)
	require.Len(t, gc2, 1)
	require.Equal(t, gc[0].ID, gc2[0].ID, "a copy whose unlink failed is retried")
}

func TestMissingFiles(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	_, err := l.query("/pollux/nope")
	require.Equal(t, model.SQLStateNotFound, sqlstate(err))
	require.ErrorContains(t, err, "no such file: /pollux/nope")
	kind, ok := model.KindOfSQLState(sqlstate(err))
	require.True(t, ok)
	require.Equal(t, 1, kind.ExitCode(), "a user error")

	for _, typ := range []model.RequestType{model.RequestTypeGet, model.RequestTypePrepareToGet, model.RequestTypePutdone, model.RequestTypeRm} {
		req := l.submit(typ, false, "/pollux/nope")
		l.stage()
		s := l.sub(req)
		require.Equal(t, model.SubrequestStatusFailed, s.Status, typ)
		require.Equal(t, model.SQLStateNotFound, *s.ErrorCode, typ)
		require.Contains(t, *s.ErrorMessage, "no such file: /pollux/nope")
	}
}

func TestBadRequestsChangeNothing(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	many := make([]string, 1001)
	for i := range many {
		many[i] = fmt.Sprintf("/pollux/f%d", i)
	}
	for _, tc := range []struct {
		name, svc string
		paths     []string
		code      string
		msg       string
	}{
		{"relative", "default", []string{"u/f"}, model.SQLStateInvalidArgument, "is relative"},
		{"dot dot", "default", []string{"/pollux/u/../f"}, model.SQLStateInvalidArgument, `".." component`},
		{"outside namespace", "default", []string{"/etc/passwd"}, model.SQLStateInvalidArgument, "outside the namespace"},
		{"empty path", "default", []string{""}, model.SQLStateInvalidArgument, "path is empty"},
		{"trailing slash", "default", []string{"/pollux/d/"}, model.SQLStateInvalidArgument, "trailing slash"},
		{"no files", "default", []string{}, model.SQLStateInvalidArgument, "names no file"},
		{"too many files", "default", many, model.SQLStateInvalidArgument, "at most 1000"},
		{"duplicate", "default", []string{"/pollux/a", "/pollux/a"}, model.SQLStateInvalidArgument, "more than once"},
		{"unknown service class", "tape", []string{"/pollux/a"}, model.SQLStateNotFound, `unknown service class "tape"`},
	} {
		_, err := model.RequestSubmit(l.ctx, l.db.Pool(), uuid.New(), model.RequestTypePut, tc.svc, "alice", "", "", tc.paths, false, nil, nil)
		require.Equal(t, tc.code, sqlstate(err), tc.name)
		require.ErrorContains(t, err, tc.msg, tc.name)
	}
	var n int
	require.NoError(t, l.db.Pool().QueryRow(l.ctx, "select (select count(*) from request) + (select count(*) from subrequest)").Scan(&n))
	require.Zero(t, n, "rejected requests leave nothing behind")
}

func TestRequestIDMakesRetriesIdempotent(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	id := uuid.New()
	rows, err := model.RequestSubmit(l.ctx, l.db.Pool(), id, model.RequestTypePut, "default", "alice", "", "", []string{"/pollux/a"}, false, nil, nil)
	require.NoError(t, err)
	require.True(t, rows[0].Created)
	rows, err = model.RequestSubmit(l.ctx, l.db.Pool(), id, model.RequestTypePut, "default", "alice", "", "", []string{"/pollux/a"}, false, nil, nil)
	require.NoError(t, err)
	require.False(t, rows[0].Created, "the same request again is recognised, not stored twice")
	require.Len(t, l.subs(id), 1)
	_, err = model.RequestSubmit(l.ctx, l.db.Pool(), id, model.RequestTypePut, "default", "alice", "", "", []string{"/pollux/b"}, false, nil, nil)
	require.Equal(t, model.SQLStateConflict, sqlstate(err))
}

func TestFailedUploadLeavesNoValidCopy(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	l.diskServer("ds1")
	req := l.submit(model.RequestTypePut, false, "/pollux/new")
	l.stage()
	w := l.sub(req)
	get := l.submit(model.RequestTypeGet, false, "/pollux/new")
	l.stage()
	require.Equal(t, model.SubrequestStatusWaitsubreq, l.sub(get).Status)

	l.transfer(w)
	require.NoError(t, model.TransferFail(l.ctx, l.db.Pool(), w.ID, l.token(w.ID), model.SQLStateBadData, "upload truncated: 10 of 20 bytes"))
	w = l.sub(req)
	require.Equal(t, model.SubrequestStatusFailed, w.Status)
	require.Equal(t, "upload truncated: 10 of 20 bytes", *w.ErrorMessage)
	_, err := l.query("/pollux/new")
	require.Equal(t, model.SQLStateNotFound, sqlstate(err), "a file whose only write failed does not exist")

	l.stage()
	g := l.sub(get)
	require.Equal(t, model.SubrequestStatusFailed, g.Status, "the waiting get was restarted and found no file")
	require.Contains(t, *g.ErrorMessage, "no such file")
}

func TestRestartedDiskServerTakesBackItsTransfers(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	ds, _ := l.diskServer("ds1")
	ready := l.submit(model.RequestTypePut, false, "/pollux/ready")
	queued := l.submit(model.RequestTypePut, false, "/pollux/queued")
	l.stage()
	l.transfer(l.sub(ready))

	n, err := model.DiskServerRecover(l.ctx, l.db.Pool(), ds)
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "only the transfer whose mover died with the old process")
	require.Equal(t, model.SubrequestStatusRetry, l.sub(ready).Status)
	require.Contains(t, l.sub(ready).Info, "disk server ds1 restarted")
	require.Equal(t, model.SubrequestStatusScheduled, l.sub(queued).Status, "still placed there: the new process claims it")
}

func TestUnknownFamilyIsRefused(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	_, err := model.SubrequestClaim(l.ctx, l.db.Pool(), "tape", 10)
	require.Equal(t, model.SQLStateInvalidArgument, sqlstate(err))
	require.ErrorContains(t, err, `unknown request family "tape"`)
}

// Two transactions ending the last two files of one request at once: the later must see the
// earlier's work, or the request stays PENDING for good with every file over.
func TestRequestEndsWhenItsLastTwoFilesEndTogether(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	req := l.submit(model.RequestTypePrepareToGet, false, "/pollux/one", "/pollux/two")
	subs := l.subs(req)
	require.Len(t, subs, 2)

	first, err := l.db.Pool().Begin(l.ctx)
	require.NoError(t, err)
	defer first.Rollback(l.ctx)
	require.NoError(t, model.SubrequestFinish(l.ctx, first, subs[0].ID, "done", nil, nil, nil, nil))
	second := make(chan error, 1)
	go func() {
		second <- pgx.BeginFunc(l.ctx, l.db.Pool(), func(tx pgx.Tx) error {
			return model.SubrequestFinish(l.ctx, tx, subs[1].ID, "done", nil, nil, nil, nil)
		})
	}()
	l.waitForOneLockWaiter("the second transaction never waited for the first")
	require.NoError(t, first.Commit(l.ctx))
	require.NoError(t, <-second)
	require.Equal(t, model.RequestStatusFinished, l.requestStatus(req))
}

// The stager decides a request's files in one transaction: the last notification of it
// carries the request as it is at commit, not as it was at the first file's refresh.
func TestLastNotificationCarriesTheFinalState(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	l.diskServer("ds1")
	l.put("/pollux/present", 10, "0000000a")
	conn, err := l.db.Pool().Acquire(l.ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(l.ctx, "listen "+pgx.Identifier{model.ChannelRequestChanged}.Sanitize())
	require.NoError(t, err)

	req := l.submit(model.RequestTypeGet, false, "/pollux/missing", "/pollux/present")
	l.stage()
	var last string
	for {
		ctx, cancel := context.WithTimeout(l.ctx, 500*time.Millisecond)
		n, err := conn.Conn().WaitForNotification(ctx)
		cancel()
		if err != nil {
			break
		}
		if id, view, _ := strings.Cut(n.Payload, " "); id == req {
			last = view
		}
	}
	require.NotEmpty(t, last, "no notification carried the request")
	var view struct {
		Status      string
		Subrequests []struct{ Path, Status string }
	}
	require.NoError(t, json.Unmarshal([]byte(last), &view))
	require.Equal(t, "PENDING", view.Status)
	require.Len(t, view.Subrequests, 2)
	require.Equal(t, "FAILED", view.Subrequests[0].Status)
	require.Equal(t, "SCHEDULED", view.Subrequests[1].Status, "the notification is stale: %s", last)
}

// A transfer whose end its disk server could not record (the database was down at that
// moment) does not stay READY for good: once it is older than both time limits and a
// minute, the job manager fails it and says why; a live server's younger transfer is left
// alone.
func TestTransferPastEveryLimitFails(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	l.diskServer("ds1")
	old := l.submit(model.RequestTypePut, false, "/pollux/old")
	young := l.submit(model.RequestTypePut, false, "/pollux/young")
	l.stage()
	l.transfer(l.sub(old))
	l.transfer(l.sub(young))
	_, err := model.PolicySet(l.ctx, l.db.Pool(), "transfer_seconds", 60, "test")
	require.NoError(t, err)
	_, err = l.db.Pool().Exec(l.ctx, "update subrequest set updated_at = now() - interval '8 minutes' where id = $1", l.sub(old).ID)
	require.NoError(t, err)

	expired, err := model.SubrequestExpire(l.ctx, l.db.Pool(), 100)
	require.NoError(t, err)
	require.Len(t, expired, 1)
	require.Equal(t, l.sub(old).ID, expired[0].ID)
	s := l.sub(old)
	require.Equal(t, model.SubrequestStatusFailed, s.Status)
	require.Equal(t, model.SQLStateTransferFailed, *s.ErrorCode)
	require.Contains(t, *s.ErrorMessage, "outlived its time limit of 00:07:00 and its disk server did not report its end")
	_, err = l.query("/pollux/old")
	require.Equal(t, model.SQLStateNotFound, sqlstate(err), "the write is abandoned: no empty entry is left")
	require.Equal(t, model.SubrequestStatusReady, l.sub(young).Status)
}

// A copy a read found corrupt is marked, journaled once, never read again, and left for
// the operator by the garbage collector even once the file is removed.
func TestCorruptCopyIsKeptAndNeverReadAgain(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	ds, _ := l.diskServer("ds1")
	l.put("/pollux/f", 10, "00000010")
	q, err := l.query("/pollux/f")
	require.NoError(t, err)
	require.Equal(t, "STAGED", q.Status)

	// Two reads: one is moving the data when the other, placed before, finds the copy bad.
	first := l.submit(model.RequestTypeGet, false, "/pollux/f")
	l.stage()
	f := l.sub(first)
	l.transfer(f)
	second := l.submit(model.RequestTypeGet, false, "/pollux/f")
	l.stage()
	placed := l.sub(second)
	require.Equal(t, model.SubrequestStatusScheduled, placed.Status)

	found := "0badc0de"
	msg, err := model.TransferGetCorrupt(l.ctx, l.db.Pool(), f.ID, l.token(f.ID), 10, &found)
	require.NoError(t, err)
	copyID := *f.DiskCopyID
	want := fmt.Sprintf("copy %d of /pollux/f on ds1 (/data/ds1/", copyID)
	require.Contains(t, msg, want)
	require.Contains(t, msg, "is corrupt: it has 10 bytes with adler32 0badc0de, the catalogue 10 bytes with adler32 00000010")
	f = l.sub(first)
	require.Equal(t, model.SubrequestStatusFailed, f.Status)
	require.Equal(t, model.SQLStateTransferFailed, *f.ErrorCode)
	require.Equal(t, msg, *f.ErrorMessage)

	events := func() []model.SystemEvent {
		all, err := model.SystemEventList(l.ctx, l.db.Pool(), 100)
		require.NoError(t, err)
		var out []model.SystemEvent
		for _, e := range all {
			if e.Kind == "disk_copy_corrupt" {
				out = append(out, e)
			}
		}
		return out
	}
	ev := events()
	require.Len(t, ev, 1)
	require.Equal(t, msg, ev[0].Message)
	var detail map[string]any
	require.NoError(t, json.Unmarshal(ev[0].Detail, &detail))
	require.Equal(t, map[string]any{"disk_copy_id": float64(copyID), "path": "/pollux/f", "disk_server": "ds1",
		"mount_point": "/data/ds1", "disk_path": detail["disk_path"], "size_bytes": float64(10), "checksum_adler32": "00000010",
		"found_size_bytes": float64(10), "found_checksum_adler32": found, "subrequest_id": float64(f.ID)}, detail)

	// The read placed before the finding fails when its disk server claims it.
	require.Empty(t, l.claimOn(ds, 1))
	placed = l.sub(second)
	require.Equal(t, model.SubrequestStatusFailed, placed.Status)
	require.Equal(t, model.SQLStateTransferFailed, *placed.ErrorCode)
	noCopy := fmt.Sprintf("/pollux/f has no readable copy: its copy %d was found corrupt and is kept for the operator", copyID)
	require.Equal(t, noCopy, *placed.ErrorMessage)

	// A new read and a prepareToGet are refused at their decision; the query says so.
	for _, typ := range []model.RequestType{model.RequestTypeGet, model.RequestTypePrepareToGet} {
		r := l.submit(typ, false, "/pollux/f")
		l.stage()
		s := l.sub(r)
		require.Equal(t, model.SubrequestStatusFailed, s.Status, typ)
		require.Equal(t, model.SQLStateTransferFailed, *s.ErrorCode, "the service's fault, not the user's")
		require.Equal(t, noCopy, *s.ErrorMessage)
	}
	q, err = l.query("/pollux/f")
	require.NoError(t, err)
	require.Equal(t, "INVALID", q.Status)
	require.Zero(t, q.DiskCopies)

	// A second finding (another read that was moving the same copy) journals nothing new.
	_, err = model.TransferGetCorrupt(l.ctx, l.db.Pool(), f.ID, l.token(f.ID), 9, nil)
	require.NoError(t, err)
	require.Len(t, events(), 1)

	// Removed, the copy is INVALID; the collector takes the file's other copies and leaves it.
	l.put("/pollux/other", 3, "00000003")
	for _, p := range []string{"/pollux/f", "/pollux/other"} {
		rm := l.submit(model.RequestTypeRm, false, p)
		l.stage()
		require.Equal(t, model.SubrequestStatusFinished, l.sub(rm).Status)
	}
	gc, err := model.DiskCopyClaimGc(l.ctx, l.db.Pool(), ds, 10)
	require.NoError(t, err)
	require.Len(t, gc, 1)
	require.NotEqual(t, copyID, gc[0].ID, "the corrupt copy is kept")
	var status model.DiskCopyStatus
	var corrupt *time.Time
	require.NoError(t, l.db.Pool().QueryRow(l.ctx, "select status, corrupt_at from disk_copy where id = $1", copyID).Scan(&status, &corrupt))
	require.Equal(t, model.DiskCopyStatusInvalid, status)
	require.NotNil(t, corrupt)

	// Only a read can find its copy corrupt.
	w := l.submit(model.RequestTypePut, false, "/pollux/w")
	l.stage()
	wt := l.transfer(l.sub(w)).Token
	_, err = model.TransferGetCorrupt(l.ctx, l.db.Pool(), l.sub(w).ID, wt, 1, nil)
	require.Equal(t, model.SQLStateConflict, sqlstate(err))
}

// The same request id submitted through two rhd at once, in two transactions: the second
// waits on the first's insert and, once it commits, is told to retry (40001, a
// serialization failure framework/pg retries), and its retry finds the request stored.
func TestConcurrentSubmitsOfOneRequestID(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	id := uuid.New()
	submit := func(q model.DBTX) ([]model.RequestSubmitRow, error) {
		return model.RequestSubmit(l.ctx, q, id, model.RequestTypePut, "default", "alice", "", "test", []string{"/pollux/once"}, false, nil, nil)
	}
	one, err := l.db.Pool().Begin(l.ctx)
	require.NoError(t, err)
	defer one.Rollback(l.ctx)
	rows, err := submit(one)
	require.NoError(t, err)
	require.True(t, rows[0].Created)
	otherErr := make(chan error, 1)
	go func() {
		_, err := submit(l.db.Pool())
		otherErr <- err
	}()
	l.waitForOneLockWaiter("the second submission never waited for the first")
	require.NoError(t, one.Commit(l.ctx))
	err = <-otherErr
	require.Error(t, err)
	require.Equal(t, "40001", sqlstate(err), "the concurrent submission is told to retry: %v", err)
	rows, err = submit(l.db.Pool())
	require.NoError(t, err, "the retry")
	require.False(t, rows[0].Created, "the retry finds the request stored")
	require.Len(t, l.subs(id), 1, "one request, one subrequest")
}
