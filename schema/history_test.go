package schema_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/codegen/desc"
	"github.com/pollux-storage/pollux/framework/daemon"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/uuid"
	"github.com/pollux-storage/pollux/model"
	"github.com/pollux-storage/pollux/schema/schematest"
)

// story is one request's transitions as "FROM>TO daemon host" lines, oldest first.
func story(t *testing.T, db model.DBTX, id string) []string {
	t.Helper()
	rows, err := model.RequestHistory(context.Background(), db, id)
	require.NoError(t, err)
	var out []string
	for _, r := range rows {
		from := "-"
		if r.FromStatus != nil {
			from = *r.FromStatus
		}
		out = append(out, from+">"+r.ToStatus+" "+r.Daemon+" "+r.Host)
	}
	return out
}

func TestSessionSettingsAgreeWithTheDescription(t *testing.T) {
	t.Parallel()
	// The framework sets them on each connection; the generated trigger reads them.
	require.Equal(t, desc.SettingDaemon, daemon.SettingDaemon)
	require.Equal(t, desc.SettingInstance, daemon.SettingInstance)
	require.Equal(t, desc.SettingHost, daemon.SettingHost)
}

func TestEveryTransitionIsLoggedWithWhoMadeItAndWhy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := schematest.DSN(t)
	// Each "daemon" has its own pool whose connections say who they are, as
	// framework/daemon's do.
	open := func(role string) *pg.DB {
		db, err := pg.Open(ctx, pg.Config{DSN: dsn, Settings: daemon.SessionSettings(daemon.Instance{
			ID: uuid.New(), Role: role, Host: role + "-host"})})
		require.NoError(t, err)
		t.Cleanup(db.Close)
		return db
	}
	rhd, stager, ds := open("rhd"), open("stagerd"), open("diskserverd")
	l := &life{t: t, db: stager, ctx: ctx, tokens: map[int64]string{}}
	dsID, _ := l.diskServer("ds1")

	id := uuid.New()
	_, err := model.RequestSubmit(ctx, rhd.Pool(), id, model.RequestTypePut, "default", "alice", "", "test", []string{"/pollux/h"}, false, nil, nil)
	require.NoError(t, err)
	l.stage()
	waits, err := model.RequestWaits(ctx, stager.Pool(), id)
	require.NoError(t, err)
	require.Len(t, waits, 1)
	require.Equal(t, "SCHEDULED", waits[0].Status)
	require.Contains(t, waits[0].WaitingFor, "disk server ds1 to start a mover")
	require.EqualValues(t, 1, *waits[0].QueuePosition, "first in its disk server's queue")

	l.db = ds
	l.claimOn(dsID, 1)
	s := l.sub(id)
	require.NoError(t, model.TransferPutEnded(ctx, ds.Pool(), s.ID, l.token(s.ID), 10, "0000000a", nil))
	require.Equal(t, []string{
		"->START rhd rhd-host",
		"START>SCHEDULED stagerd stagerd-host",
		"SCHEDULED>READY diskserverd diskserverd-host",
		"READY>FINISHED diskserverd diskserverd-host",
	}, story(t, rhd.Pool(), id))
	rows, err := model.RequestHistory(ctx, rhd.Pool(), id)
	require.NoError(t, err)
	require.NotNil(t, rows[0].InstanceID, "the instance is recorded")
	for i := 1; i < len(rows); i++ {
		require.False(t, rows[i].At.Before(rows[i-1].At), "in order")
	}
	waits, err = model.RequestWaits(ctx, stager.Pool(), id)
	require.NoError(t, err)
	require.Empty(t, waits[0].WaitingFor, "over: it waits for nothing")

	// A failure's reason is its error message; a session without the settings (psql)
	// is named by its application_name; a malformed instance id is not an error.
	plain, err := pg.Open(ctx, pg.Config{DSN: dsn, ApplicationName: "psql",
		Settings: map[string]string{daemon.SettingInstance: "not-a-uuid"}})
	require.NoError(t, err)
	t.Cleanup(plain.Close)
	other := uuid.New()
	_, err = model.RequestSubmit(ctx, plain.Pool(), other, model.RequestTypeGet, "default", "alice", "", "test", []string{"/pollux/none"}, false, nil, nil)
	require.NoError(t, err)
	l.db = stager
	l.stage()
	rows, err = model.RequestHistory(ctx, rhd.Pool(), other)
	require.NoError(t, err)
	require.Len(t, rows, 2)
	require.Equal(t, "psql", rows[0].Daemon)
	require.Nil(t, rows[0].InstanceID)
	require.Equal(t, "FAILED", rows[1].ToStatus)
	require.Contains(t, rows[1].Reason, "/pollux/none", "the failure's message is its reason")
}

func TestHistoryGoesWithItsRequestIntoTheArchive(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	l.diskServer("ds1")
	id := l.submit(model.RequestTypeGet, false, "/pollux/missing")
	l.stage()
	before := story(t, l.db.Pool(), id)
	require.Len(t, before, 2)

	_, err := model.PolicySet(l.ctx, l.db.Pool(), "request_retention_seconds", 0, "test")
	require.NoError(t, err)
	n, err := model.RequestArchiveFinished(l.ctx, l.db.Pool(), 100)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	var hot int
	require.NoError(t, l.db.Pool().QueryRow(l.ctx, "select count(*) from subrequest_transition").Scan(&hot))
	require.Zero(t, hot, "the hot table keeps no story of an archived request")
	require.Equal(t, before, story(t, l.db.Pool(), id), "the archive tells the same story")

	_, err = model.PolicySet(l.ctx, l.db.Pool(), "request_archive_seconds", 0, "test")
	require.NoError(t, err)
	_, err = model.RequestArchivePurge(l.ctx, l.db.Pool(), 100)
	require.NoError(t, err)
	require.Empty(t, story(t, l.db.Pool(), id), "purged with its request")
	require.Empty(t, story(t, l.db.Pool(), uuid.New()), "no such request: no story")
}

func TestWaitsSayForWhatAndBehindWhom(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	waits := func(id string) model.RequestWaitsRow {
		t.Helper()
		w, err := model.RequestWaits(l.ctx, l.db.Pool(), id)
		require.NoError(t, err)
		require.Len(t, w, 1)
		return w[0]
	}
	// No disk server: both puts wait for one, the second behind the first.
	first := l.submit(model.RequestTypePut, false, "/pollux/w1")
	second := l.submit(model.RequestTypePut, false, "/pollux/w2")
	w := waits(second)
	require.Equal(t, "START", w.Status)
	require.Equal(t, "a stager of the put family to decide it", w.WaitingFor)
	require.EqualValues(t, 2, *w.QueuePosition)
	l.stage()
	w = waits(first)
	require.Equal(t, "WAITSCHED", w.Status)
	require.Contains(t, w.WaitingFor, "a disk server and file system to take it (")
	require.EqualValues(t, 1, *w.QueuePosition)
	require.Empty(t, w.Behind)
	w = waits(second)
	require.EqualValues(t, 2, *w.QueuePosition)
	require.Equal(t, "1 other", w.Behind)
	require.False(t, w.Since.IsZero())

	// A read of a file whose first write is unclosed waits behind the write (a rewrite
	// would not hold it: the reader gets the previous content).
	l.diskServer("ds1")
	writer := l.submit(model.RequestTypePut, false, "/pollux/f")
	l.stage()
	get := l.submit(model.RequestTypeGet, false, "/pollux/f")
	l.stage()
	w = waits(get)
	require.Equal(t, "WAITSUBREQ", w.Status)
	require.Nil(t, w.QueuePosition)
	require.Equal(t, "another subrequest on the same file to end", w.WaitingFor)
	require.Contains(t, w.Behind, "of request "+writer+" (SCHEDULED)")
}
