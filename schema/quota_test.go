package schema_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/model"
)

// Quotas (schema/logic/quota.sql): files counted at a put's decision, bytes at its
// upload's end, both refused under the usage rows' locks, released when the file or copy
// goes. Every test ends by recounting the usage from the catalogue.

func (l *life) setQuota(user string, maxBytes, maxFiles *int64) {
	l.t.Helper()
	_, err := model.QuotaSet(l.ctx, l.db.Pool(), user, "default", maxBytes, maxFiles, "test")
	require.NoError(l.t, err)
}

// usage is what quota_list says alice holds in the default service class.
func (l *life) usage(user string) model.QuotaListRow {
	l.t.Helper()
	rows, err := model.QuotaList(l.ctx, l.db.Pool(), &user)
	require.NoError(l.t, err)
	if len(rows) == 0 {
		return model.QuotaListRow{UserName: user, ServiceClass: "default"}
	}
	require.Len(l.t, rows, 1)
	return rows[0]
}

// recount checks quota_usage against the catalogue: each user's files, and the sizes of
// the copies kept for them (STAGED, and STAGEOUT once their upload ended).
func (l *life) recount() {
	l.t.Helper()
	var wrong []string
	rows, err := l.db.Pool().Query(l.ctx, `
		with truth as (
			select f.owner as user_name, f.service_class_id, count(*) as files,
			       coalesce(sum((select sum(dc.size_bytes) from disk_copy dc
			                      where dc.file_id = f.id and dc.status in ('STAGED', 'STAGEOUT'))), 0) as bytes
			from file f group by 1, 2)
		select format('%s: counted %s bytes %s files, catalogue %s bytes %s files',
		              coalesce(u.user_name, t.user_name), coalesce(u.bytes, 0), coalesce(u.files, 0),
		              coalesce(t.bytes, 0), coalesce(t.files, 0))
		from (select user_name, service_class_id, sum(bytes) as bytes, sum(files) as files
		      from quota_usage group by 1, 2) u
		full join truth t using (user_name, service_class_id)
		where coalesce(u.bytes, 0) <> coalesce(t.bytes, 0) or coalesce(u.files, 0) <> coalesce(t.files, 0)`)
	require.NoError(l.t, err)
	for rows.Next() {
		var s string
		require.NoError(l.t, rows.Scan(&s))
		wrong = append(wrong, s)
	}
	require.NoError(l.t, rows.Err())
	require.Empty(l.t, wrong, "quota_usage agrees with the catalogue")
}

// upload has the put's transfer claimed and ended with size bytes.
func (l *life) upload(s model.Subrequest, size int64) error {
	l.t.Helper()
	l.transfer(s)
	sum := fmt.Sprintf("%08x", size)
	return model.TransferPutEnded(l.ctx, l.db.Pool(), s.ID, l.token(s.ID), size, sum, &sum)
}

func TestQuotaCountsAndReleases(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	l.diskServer("ds1")
	l.setQuota("alice", new(int64(1000)), new(int64(2)))
	require.Equal(t, model.QuotaListRow{UserName: "alice", ServiceClass: "default", MaxBytes: new(int64(1000)), MaxFiles: new(int64(2))},
		l.usage("alice"), "a quota with nothing held yet is listed")

	l.put("/pollux/a", 600, "00000258")
	u := l.usage("alice")
	require.EqualValues(t, 600, u.Bytes)
	require.EqualValues(t, 1, u.Files)

	// A second file whose upload would pass the byte limit: refused at its end, with the
	// numbers, and the write given up (the mover reports the refusal: transfer_fail).
	req := l.submit(model.RequestTypePut, false, "/pollux/b")
	l.stage()
	b := l.sub(req)
	require.Equal(t, model.SubrequestStatusScheduled, b.Status, "room is left: decided")
	require.EqualValues(t, 2, l.usage("alice").Files, "the new file counts from its decision")
	err := l.upload(b, 500)
	require.Equal(t, model.SQLStateQuotaExceeded, sqlstate(err))
	msg := "quota exceeded: user alice in service class default has 600 bytes of 1 kB, this write of 500 bytes needs 100 bytes more"
	require.Contains(t, err.Error(), msg)
	require.NoError(t, model.TransferFail(l.ctx, l.db.Pool(), b.ID, l.token(b.ID), model.SQLStateQuotaExceeded, msg))
	b = l.sub(req)
	require.Equal(t, model.SubrequestStatusFailed, b.Status)
	require.Equal(t, model.SQLStateQuotaExceeded, *b.ErrorCode)
	require.Equal(t, msg, *b.ErrorMessage, "stager_qry -r shows the reason")
	kind, ok := model.KindOfSQLState(*b.ErrorCode)
	require.True(t, ok)
	require.Equal(t, model.ErrorKindQuota, kind)
	require.Equal(t, 1, kind.ExitCode(), "the user's to fix")
	u = l.usage("alice")
	require.EqualValues(t, 600, u.Bytes, "the refused bytes were never counted")
	require.EqualValues(t, 1, u.Files, "the file whose only write was given up is released")

	// One that fits, then a third file: past the file limit at its decision.
	l.put("/pollux/b", 400, "00000190")
	req = l.submit(model.RequestTypePut, false, "/pollux/c")
	l.stage()
	c := l.sub(req)
	require.Equal(t, model.SubrequestStatusFailed, c.Status)
	require.Equal(t, model.SQLStateQuotaExceeded, *c.ErrorCode)
	require.Equal(t, "quota exceeded: user alice in service class default has 2 of 2 files, this put needs 1 more", *c.ErrorMessage)
	_, err = l.query("/pollux/c")
	require.Equal(t, model.SQLStateNotFound, sqlstate(err), "a refused put creates nothing")

	// At the byte limit exactly: even a rewrite is refused at its decision (no room).
	req = l.submit(model.RequestTypePut, false, "/pollux/a")
	l.stage()
	a := l.sub(req)
	require.Equal(t, model.SubrequestStatusFailed, a.Status)
	require.Equal(t, "quota exceeded: user alice in service class default has 1 kB of 1 kB, no room for another write: remove files (stager_rm) or ask the operator for more",
		*a.ErrorMessage)

	// rm releases the file and its bytes; a rewrite holds both copies until its close.
	rm := l.submit(model.RequestTypeRm, false, "/pollux/b")
	l.stage()
	require.Equal(t, model.SubrequestStatusFinished, l.sub(rm).Status)
	u = l.usage("alice")
	require.EqualValues(t, 600, u.Bytes)
	require.EqualValues(t, 1, u.Files)
	req = l.submit(model.RequestTypePut, false, "/pollux/a")
	l.stage()
	require.NoError(t, l.upload(l.sub(req), 300))
	require.EqualValues(t, 900, l.usage("alice").Bytes, "old content and unclosed rewrite both occupy disk")
	l.recount()
	done := l.submit(model.RequestTypePutdone, false, "/pollux/a")
	l.stage()
	require.Equal(t, model.SubrequestStatusFinished, l.sub(done).Status)
	u = l.usage("alice")
	require.EqualValues(t, 300, u.Bytes, "closing the rewrite releases the old content")
	require.EqualValues(t, 1, u.Files, "a rewrite is no new file")

	// A file given away takes its share along.
	_, err = model.NamespaceEntrySet(l.ctx, l.db.Pool(), "/pollux/a", new("bob"), nil, nil, "test")
	require.NoError(t, err)
	require.Zero(t, l.usage("alice").Bytes)
	u = l.usage("bob")
	require.EqualValues(t, 300, u.Bytes)
	require.EqualValues(t, 1, u.Files)
	require.Nil(t, u.MaxBytes, "bob has no quota: unlimited")
	l.recount()
}

func TestQuotaAdministration(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	for _, c := range []struct {
		user, class      string
		maxBytes, maxFil *int64
		code             string
	}{
		{"alice", "default", new(int64(-1)), nil, model.SQLStateInvalidArgument},
		{"alice", "default", nil, new(int64(-5)), model.SQLStateInvalidArgument},
		{"al ice", "default", nil, nil, model.SQLStateInvalidArgument},
		{"alice", "nosuch", nil, nil, model.SQLStateNotFound},
	} {
		_, err := model.QuotaSet(l.ctx, l.db.Pool(), c.user, c.class, c.maxBytes, c.maxFil, "op")
		require.Equal(t, c.code, sqlstate(err), "%+v", c)
	}
	rows, err := model.QuotaList(l.ctx, l.db.Pool(), nil)
	require.NoError(t, err)
	require.Empty(t, rows, "refused settings change nothing")

	set, err := model.QuotaSet(l.ctx, l.db.Pool(), "alice", "default", new(int64(10_000_000_000)), nil, "op")
	require.NoError(t, err)
	require.Len(t, set, 1)
	require.EqualValues(t, 10_000_000_000, *set[0].MaxBytes)
	require.Nil(t, set[0].MaxFiles, "no file limit")
	events, err := model.SystemEventList(l.ctx, l.db.Pool(), 1)
	require.NoError(t, err)
	require.Equal(t, "quota_set", events[0].Kind)
	require.Equal(t, "op", events[0].Daemon)
	require.Equal(t, "quota of alice in default: 10 GB, unlimited files (was unlimited, unlimited files)", events[0].Message)

	require.NoError(t, model.QuotaRemove(l.ctx, l.db.Pool(), "alice", "default", "op"))
	require.Equal(t, model.SQLStateNotFound, sqlstate(model.QuotaRemove(l.ctx, l.db.Pool(), "alice", "default", "op")))
	rows, err = model.QuotaList(l.ctx, l.db.Pool(), nil)
	require.NoError(t, err)
	require.Empty(t, rows, "no quota and nothing held: not listed")

	for in, want := range map[int64]string{0: "0 bytes", 1: "1 byte", 999: "999 bytes", 1000: "1 kB", 9_800_000_000: "9.8 GB",
		500_000_000: "500 MB", 123_456_789_012: "123 GB"} {
		got, err := model.QuotaSizeText(l.ctx, l.db.Pool(), &in)
		require.NoError(t, err)
		require.Equal(t, want, got, "%d", in)
	}
}

// Many puts at the file limit, decided at once by as many stagers in as many
// transactions: exactly the limit's worth pass.
func TestQuotaFilesUnderConcurrentPuts(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	l.diskServer("ds1")
	const puts, limit = 16, 5
	l.setQuota("alice", nil, new(int64(limit)))
	var reqs []string
	for i := range puts {
		reqs = append(reqs, l.submit(model.RequestTypePut, false, fmt.Sprintf("/pollux/q/f%d", i)))
	}
	start := make(chan struct{})
	errs := make(chan error, puts)
	var wg sync.WaitGroup
	for range puts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			tx, err := l.db.Pool().Begin(l.ctx)
			if err != nil {
				errs <- err
				return
			}
			defer func() { _ = tx.Rollback(l.ctx) }()
			if _, err := model.SubrequestClaim(l.ctx, tx, "put", 1); err != nil {
				errs <- err
				return
			}
			errs <- tx.Commit(l.ctx)
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	var passed, refused int
	for _, r := range reqs {
		s := l.sub(r)
		switch {
		case s.Status == model.SubrequestStatusFailed:
			require.Equal(t, model.SQLStateQuotaExceeded, *s.ErrorCode, *s.ErrorMessage)
			refused++
		default:
			require.Contains(t, []model.SubrequestStatus{model.SubrequestStatusScheduled, model.SubrequestStatusWaitsched}, s.Status)
			passed++
		}
	}
	require.Equal(t, limit, passed, "no over-commit")
	require.Equal(t, puts-limit, refused)
	require.EqualValues(t, limit, l.usage("alice").Files)
	l.recount()
}

// Many uploads ending at once at the byte limit, each in its own transaction: exactly as
// many as fit are taken.
func TestQuotaBytesUnderConcurrentUploadEnds(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	l.diskServer("ds1")
	const puts, size, limit = 12, 300, 1000
	l.setQuota("alice", new(int64(limit)), nil)
	var subs []model.Subrequest
	for i := range puts {
		r := l.submit(model.RequestTypePut, false, fmt.Sprintf("/pollux/b%d", i))
		l.stage()
		s := l.sub(r)
		l.transfer(s)
		subs = append(subs, s)
	}
	start := make(chan struct{})
	results := make(chan error, puts)
	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			sum := fmt.Sprintf("%08x", size)
			// Each in a transaction of its own that commits only after the call, as the
			// movers' reports do, so that the ends overlap.
			tx, err := l.db.Pool().Begin(l.ctx)
			if err != nil {
				results <- err
				return
			}
			defer func() { _ = tx.Rollback(l.ctx) }()
			if err := model.TransferPutEnded(l.ctx, tx, s.ID, l.tokens[s.ID], size, sum, &sum); err != nil {
				results <- err
				return
			}
			results <- tx.Commit(l.ctx)
		}()
	}
	close(start)
	wg.Wait()
	close(results)
	var taken, refused int
	for err := range results {
		switch sqlstate(err) {
		case "":
			require.NoError(t, err)
			taken++
		case model.SQLStateQuotaExceeded:
			refused++
		default:
			require.NoError(t, err)
		}
	}
	require.Equal(t, limit/size, taken, "no over-commit")
	require.Equal(t, puts-limit/size, refused)
	require.EqualValues(t, limit/size*size, l.usage("alice").Bytes)
	l.recount()
}

// A first write taken back from its disk server (RETRY) and refused by the quota when it
// is decided again leaves no entry behind: its file is released with it.
func TestQuotaRefusalOfARetriedFirstWrite(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	ds, _ := l.diskServer("ds1")
	req := l.submit(model.RequestTypePut, false, "/pollux/retried")
	l.stage()
	l.transfer(l.sub(req))
	n, err := model.DiskServerRecover(l.ctx, l.db.Pool(), ds)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	require.Equal(t, model.SubrequestStatusRetry, l.sub(req).Status)
	require.EqualValues(t, 1, l.usage("alice").Files, "the entry waits for its write")

	l.setQuota("alice", new(int64(0)), nil)
	l.stage()
	s := l.sub(req)
	require.Equal(t, model.SubrequestStatusFailed, s.Status)
	require.Equal(t, model.SQLStateQuotaExceeded, *s.ErrorCode)
	_, err = l.query("/pollux/retried")
	require.Equal(t, model.SQLStateNotFound, sqlstate(err), "no entry without content is left")
	require.Zero(t, l.usage("alice").Files)
	l.recount()
}

// One user's counting does not queue on one row: two sessions in different stripes add to
// the same user and class at once, neither waiting for the other (lock_timeout would fail
// the second). A quota check still holds every stripe: with a quota set, an add from the
// other session waits until the check's transaction ends, and the sum counts both.
func TestQuotaCountingOfOneUserDoesNotQueue(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	var sc int64
	require.NoError(t, l.db.Pool().QueryRow(l.ctx, "select id from service_class where name = 'default'").Scan(&sc))
	// Two sessions whose backends count in different stripes: new connections until one
	// is in another stripe than the first (each new backend has a new pid).
	connect := func() *pgx.Conn {
		c, err := pgx.ConnectConfig(l.ctx, l.db.Pool().Config().ConnConfig.Copy())
		require.NoError(t, err)
		return c
	}
	stripe := func(c *pgx.Conn) int {
		var s int
		require.NoError(t, c.QueryRow(l.ctx, "select pg_backend_pid() % 8").Scan(&s))
		return s
	}
	a := connect()
	defer a.Close(l.ctx)
	b := connect()
	for tries := 0; stripe(b) == stripe(a); tries++ {
		require.NoError(t, b.Close(l.ctx))
		require.Less(t, tries, 100, "no new session in another stripe")
		b = connect()
	}
	defer func() { _ = b.Close(l.ctx) }()
	add := func(tx pgx.Tx, bytes int64) error {
		return model.QuotaUsageAdd(l.ctx, tx, "bob", sc, bytes, 1)
	}

	ta, err := a.Begin(l.ctx)
	require.NoError(t, err)
	require.NoError(t, add(ta, 10))
	tb, err := b.Begin(l.ctx)
	require.NoError(t, err)
	_, err = tb.Exec(l.ctx, "set local lock_timeout = '10s'")
	require.NoError(t, err)
	require.NoError(t, add(tb, 20), "the second session's add does not wait for the first's")
	require.NoError(t, tb.Commit(l.ctx))
	require.NoError(t, ta.Commit(l.ctx))
	require.EqualValues(t, 30, l.usage("bob").Bytes)
	require.EqualValues(t, 2, l.usage("bob").Files)

	l.setQuota("bob", nil, new(int64(100)))
	ta, err = a.Begin(l.ctx)
	require.NoError(t, err)
	defer func() { _ = ta.Rollback(l.ctx) }()
	problem, err := model.QuotaRoom(l.ctx, ta, "bob", sc, nil, 1)
	require.NoError(t, err)
	require.Nil(t, problem)
	done := make(chan error, 1)
	go func() {
		tb, err := b.Begin(l.ctx)
		if err == nil {
			if err = add(tb, 5); err == nil {
				err = tb.Commit(l.ctx)
			} else {
				_ = tb.Rollback(l.ctx)
			}
		}
		done <- err
	}()
	l.waitForOneLockWaiter("the other session's add waits for the quota check's transaction")
	require.NoError(t, add(ta, 7))
	require.NoError(t, ta.Commit(l.ctx))
	require.NoError(t, <-done)
	require.EqualValues(t, 42, l.usage("bob").Bytes)
	require.EqualValues(t, 4, l.usage("bob").Files)
	var stripes int
	require.NoError(t, l.db.Pool().QueryRow(l.ctx, "select count(*) from quota_usage where user_name = 'bob'").Scan(&stripes))
	require.Equal(t, 8, stripes, "a quota check makes every stripe before it locks them")
}
