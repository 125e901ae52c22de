package schema_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/model"
)

// Disk servers that fall silent, stop, and come back, as the logic sees them: the job
// manager's sweep (disk_server_expire), a clean stop (disk_server_stop), the heartbeat
// that brings a server back, and what clients and operators are told meanwhile.

// silence makes a disk server's last heartbeat older than the liveness window, as a
// server that died or was cut off a minute ago.
func (l *life) silence(ds int64) time.Time {
	l.t.Helper()
	var at time.Time
	require.NoError(l.t, l.db.Pool().QueryRow(l.ctx,
		"update disk_server set heartbeat_at = date_trunc('second', now()) - interval '1 minute' where id = $1 returning heartbeat_at", ds).Scan(&at))
	return at
}

// setStatus sets a disk server's operator status.
func (l *life) setStatus(ds int64, status model.DiskServerStatus) {
	l.t.Helper()
	_, err := l.db.Pool().Exec(l.ctx, "update disk_server set status = $1 where id = $2", status, ds)
	require.NoError(l.t, err)
}

// expire runs the liveness sweep as a job manager that has swept without a gap for an hour
// (its clock says so), so that silence is judged at once.
func (l *life) expire() []model.DiskServerExpireRow {
	l.t.Helper()
	_, err := l.db.Pool().Exec(l.ctx, "update sweep_clock set last_sweep_at = now(), available_since = now() - interval '1 hour'")
	require.NoError(l.t, err)
	return l.sweep()
}

// sweep runs the liveness sweep as it comes, on the clock it finds.
func (l *life) sweep() []model.DiskServerExpireRow {
	l.t.Helper()
	rows, err := model.DiskServerExpire(l.ctx, l.db.Pool(), 100)
	require.NoError(l.t, err)
	return rows
}

// After the database was away (no sweep for longer than half the window), every server's
// heartbeat is stale, through no fault of its own: none is judged silent, and nothing it
// moves fails, until the database has been available for a whole window.
func TestNoServerIsSilentRightAfterTheDatabaseWasAway(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	ds, _ := l.diskServer("ds1")
	req := l.submit(model.RequestTypePut, false, "/pollux/moving")
	l.stage()
	l.transfer(l.sub(req))
	_, err := l.db.Pool().Exec(l.ctx, "update disk_server set heartbeat_at = now() - interval '20 seconds' where id = $1", ds)
	require.NoError(t, err)
	// The last sweep ran before a 20 s outage.
	_, err = l.db.Pool().Exec(l.ctx, "update sweep_clock set last_sweep_at = now() - interval '20 seconds', available_since = now() - interval '1 hour'")
	require.NoError(t, err)

	require.Empty(t, l.sweep(), "the first sweep after the outage judges nobody")
	require.Equal(t, model.DiskServerAvailabilityAvailable, l.serverRow(ds).Availability)
	require.Equal(t, model.SubrequestStatusReady, l.sub(req).Status, "its transfer goes on")
	require.Empty(t, l.sweep(), "nor does the next, within the window")

	// A window of availability later, a server that still has not heartbeated is silent.
	_, err = l.db.Pool().Exec(l.ctx, "update sweep_clock set available_since = now() - interval '7 seconds'")
	require.NoError(t, err)
	rows := l.sweep()
	require.NotEmpty(t, rows)
	require.Equal(t, model.DiskServerAvailabilitySilent, l.serverRow(ds).Availability)
	require.Equal(t, model.SubrequestStatusFailed, l.sub(req).Status)
}

func (l *life) serverRow(ds int64) model.DiskServerListRow {
	l.t.Helper()
	list, err := model.DiskServerList(l.ctx, l.db.Pool())
	require.NoError(l.t, err)
	for _, d := range list {
		if d.ID == ds {
			return d
		}
	}
	l.t.Fatalf("disk server %d is not listed", ds)
	return model.DiskServerListRow{}
}

func (l *life) lastEvent(kind string) model.SystemEvent {
	l.t.Helper()
	events, err := model.SystemEventList(l.ctx, l.db.Pool(), 50)
	require.NoError(l.t, err)
	for _, e := range events {
		if e.Kind == kind {
			return e
		}
	}
	l.t.Fatalf("no %s event", kind)
	return model.SystemEvent{}
}

func utc(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") + " UTC" }

func TestSilentDiskServerIsMarkedAndItsWorkMovesOn(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	ds1, _ := l.diskServer("ds1")
	ds2, _ := l.diskServer("ds2")
	// A file whose only copy is on ds1 (the emptier-first rule picks ds1 while ds2 is
	// disabled), a write moving data to ds1, one only placed there, a read placed there.
	l.setStatus(ds2, model.DiskServerStatusDisabled)
	l.put("/pollux/only", 5, "00000005")
	moving := l.submit(model.RequestTypePut, true, "/pollux/moving")
	queued := l.submit(model.RequestTypePut, true, "/pollux/queued")
	l.stage()
	open := l.transfer(l.sub(moving))
	require.Equal(t, ds1, *l.sub(queued).DiskServerID)
	read := l.submit(model.RequestTypeGet, false, "/pollux/only")
	l.stage()
	require.Equal(t, model.SubrequestStatusScheduled, l.sub(read).Status)
	l.setStatus(ds2, model.DiskServerStatusProduction)
	require.Nil(t, l.serverRow(ds1).Why, "ds1 serves")

	last := l.silence(ds1)
	rows := l.expire()
	require.Len(t, rows, 4, "%+v", rows)
	require.Nil(t, rows[0].SubrequestID, "first the server")
	require.Contains(t, rows[0].Message, "disk server ds1 stopped answering: no heartbeat since "+utc(last))
	byID := map[int64]model.DiskServerExpireRow{}
	for _, r := range rows[1:] {
		byID[*r.SubrequestID] = r
	}

	// Marked, since its last heartbeat, and journaled.
	row := l.serverRow(ds1)
	require.Equal(t, model.DiskServerAvailabilitySilent, row.Availability)
	require.True(t, last.Equal(*row.UnavailableSince))
	since := "unavailable since " + utc(last) + " (it stopped answering)"
	require.Equal(t, since, *row.Why)
	require.Contains(t, l.lastEvent("disk_server_silent").Message, "ds1 stopped answering")

	// Only placed there: placed again on ds2, no retry used.
	q := l.sub(queued)
	require.Equal(t, model.SubrequestStatusScheduled, q.Status)
	require.Equal(t, ds2, *q.DiskServerID)
	require.Zero(t, q.Retries)
	require.Equal(t, "http://ds2:9000", *byID[q.ID].WakeURL, "for the wake-up hint")
	// Moving data there: failed with the reason; a late end from ds1 is refused.
	m := l.sub(moving)
	require.Equal(t, model.SubrequestStatusFailed, m.Status)
	require.Equal(t, model.SQLStateUnavailable, *m.ErrorCode)
	require.Contains(t, *m.ErrorMessage, "disk server ds1 stopped answering during the transfer")
	require.Equal(t, model.SQLStateUnavailable, sqlstate(model.TransferPutEnded(l.ctx, l.db.Pool(), open.SubrequestID, open.Token, 3, "00000003", new("00000003"))),
		"given up by the service: the client is told to run it again (exit 2), not that it erred")
	_, err := l.query("/pollux/moving")
	require.Equal(t, model.SQLStateNotFound, sqlstate(err), "a write that never got content leaves no entry")
	// The read of a file whose only copy is there waits, saying so; so does stager_qry.
	r := l.sub(read)
	require.Equal(t, model.SubrequestStatusWaitsched, r.Status)
	require.Equal(t, "queued, its only copy is on ds1, "+since, r.Info)
	f, err := l.query("/pollux/only")
	require.NoError(t, err)
	require.Equal(t, "STAGED", f.Status)
	require.Equal(t, "only copy is on ds1, "+since, *f.Info)

	require.Empty(t, l.expire(), "a server is marked once, its work moved on once")
	// New work avoids it, though it holds fewer transfers than ds2.
	again := l.submit(model.RequestTypePut, true, "/pollux/new")
	l.stage()
	require.Equal(t, ds2, *l.sub(again).DiskServerID)

	// It comes back: available, journaled, capacity; the waiting read is placed on it.
	hb, err := model.DiskServerHeartbeat(l.ctx, l.db.Pool(), ds1, 0.1)
	require.NoError(t, err)
	require.True(t, hb[0].Returned)
	require.Equal(t, 1.5, hb[0].IntervalSeconds, "a quarter of the 6 s window")
	require.Equal(t, model.DiskServerAvailabilityAvailable, l.serverRow(ds1).Availability)
	require.Nil(t, l.serverRow(ds1).UnavailableSince)
	require.Contains(t, l.lastEvent("disk_server_back").Message, "disk server ds1 answers again")
	placed := l.schedule()
	require.Len(t, placed, 1)
	require.Equal(t, ds1, placed[0].DiskServerID)
	f, err = l.query("/pollux/only")
	require.NoError(t, err)
	require.Nil(t, f.Info)
	hb, err = model.DiskServerHeartbeat(l.ctx, l.db.Pool(), ds1, 0.1)
	require.NoError(t, err)
	require.False(t, hb[0].Returned, "an ordinary heartbeat")
}

func TestHeartbeatPaceFollowsThePolicy(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	ds, _ := l.diskServer("ds1")
	_, err := model.PolicySet(l.ctx, l.db.Pool(), "disk_server_live_seconds", 20, "test")
	require.NoError(t, err)
	hb, err := model.DiskServerHeartbeat(l.ctx, l.db.Pool(), ds, 0)
	require.NoError(t, err)
	require.Equal(t, 5.0, hb[0].IntervalSeconds)
	// A server silent past the window but not yet marked is back too (capacity).
	l.silence(ds)
	hb, err = model.DiskServerHeartbeat(l.ctx, l.db.Pool(), ds, 0)
	require.NoError(t, err)
	require.True(t, hb[0].Returned)
}

func TestStoppedDiskServerLeavesPlacementAtOnce(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	ds1, _ := l.diskServer("ds1")
	ds2, _ := l.diskServer("ds2")
	l.setStatus(ds2, model.DiskServerStatusDisabled)
	moving := l.submit(model.RequestTypePut, true, "/pollux/moving")
	queued := l.submit(model.RequestTypePut, true, "/pollux/queued")
	l.stage()
	open := l.transfer(l.sub(moving))
	require.Equal(t, ds1, *l.sub(queued).DiskServerID)
	l.setStatus(ds2, model.DiskServerStatusProduction)

	rows, err := model.DiskServerStop(l.ctx, l.db.Pool(), ds1)
	require.NoError(t, err)
	require.Len(t, rows, 1, "only what was placed and not started")
	require.Equal(t, l.sub(queued).ID, rows[0].SubrequestID)
	require.Equal(t, model.SubrequestStatusScheduled, rows[0].Status)
	require.Equal(t, "http://ds2:9000", *rows[0].WakeURL)
	q := l.sub(queued)
	require.Equal(t, ds2, *q.DiskServerID)
	require.Zero(t, q.Retries, "no retry used up")
	row := l.serverRow(ds1)
	require.Equal(t, model.DiskServerAvailabilityStopped, row.Availability)
	require.Contains(t, *row.Why, "(its diskserverd was stopped)")
	require.Contains(t, l.lastEvent("disk_server_stopped").Message, "disk server ds1 is stopping: out of placement, 1 queued transfers placed again")

	// While it drains it heartbeats, and stays out; new work goes elsewhere although ds1
	// holds no more transfers than ds2 and comes first.
	hb, err := model.DiskServerHeartbeat(l.ctx, l.db.Pool(), ds1, 0)
	require.NoError(t, err)
	require.False(t, hb[0].Returned)
	require.Equal(t, model.DiskServerAvailabilityStopped, l.serverRow(ds1).Availability)
	next := l.submit(model.RequestTypePut, true, "/pollux/next")
	l.stage()
	require.Equal(t, ds2, *l.sub(next).DiskServerID)
	// Its transfer moving data finishes there: the sweep leaves a draining server alone.
	require.Empty(t, l.expire())
	require.NoError(t, model.TransferPutEnded(l.ctx, l.db.Pool(), open.SubrequestID, open.Token, 7, "00000007", new("00000007")))
	require.Equal(t, model.SubrequestStatusFinished, l.sub(moving).Status)
	// Stopping again changes nothing; a new process registers it available.
	rows, err = model.DiskServerStop(l.ctx, l.db.Pool(), ds1)
	require.NoError(t, err)
	require.Empty(t, rows)
	_, err = model.DiskServerRegister(l.ctx, l.db.Pool(), "ds1", "http://ds1:9000", 0)
	require.NoError(t, err)
	require.Equal(t, model.DiskServerAvailabilityAvailable, l.serverRow(ds1).Availability)

	// A stopped server that dies while it drains: what it moved fails at the sweep.
	late := l.submit(model.RequestTypePut, true, "/pollux/late")
	l.stage()
	require.Equal(t, ds1, *l.sub(late).DiskServerID)
	l.transfer(l.sub(late))
	_, err = model.DiskServerStop(l.ctx, l.db.Pool(), ds1)
	require.NoError(t, err)
	l.silence(ds1)
	expired := l.expire()
	require.Len(t, expired, 1, "a stopped server is not marked silent, its transfer fails")
	require.Equal(t, model.SubrequestStatusFailed, *expired[0].Status)
	require.Equal(t, model.DiskServerAvailabilityStopped, l.serverRow(ds1).Availability)
}

// A file with a copy on a server that serves stays readable whichever other server is
// out; a file with none says where each copy is.
func TestReadUsesACopyOnAServerThatServes(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	ds1, _ := l.diskServer("ds1")
	ds2, fs2 := l.diskServer("ds2")
	l.setStatus(ds2, model.DiskServerStatusDisabled)
	l.put("/pollux/twice", 9, "00000009")
	l.setStatus(ds2, model.DiskServerStatusProduction)
	// A second copy on ds2, as a replica would be (a new copy starts STAGEOUT).
	var second int64
	require.NoError(t, l.db.Pool().QueryRow(l.ctx, `insert into disk_copy (file_id, file_system_id, status, disk_path, size_bytes, checksum_adler32)
		select file_id, $1, 'STAGEOUT', 'replica', size_bytes, checksum_adler32 from disk_copy where status = 'STAGED' returning id`, fs2).Scan(&second))
	_, err := l.db.Pool().Exec(l.ctx, "update disk_copy set status = 'STAGED' where id = $1", second)
	require.NoError(t, err)

	first := l.silence(ds1)
	l.expire()
	get := l.submit(model.RequestTypeGet, false, "/pollux/twice")
	l.stage()
	g := l.sub(get)
	require.Equal(t, model.SubrequestStatusScheduled, g.Status)
	require.Equal(t, ds2, *g.DiskServerID)
	require.Equal(t, second, *g.DiskCopyID, "it reads the copy on the server that serves")
	require.Equal(t, "replica", l.transfer(g).DiskPath)
	f, err := l.query("/pollux/twice")
	require.NoError(t, err)
	require.Nil(t, f.Info, "a readable copy remains")

	secondSilent := l.silence(ds2)
	l.expire()
	get = l.submit(model.RequestTypeGet, false, "/pollux/twice")
	l.stage()
	g = l.sub(get)
	require.Equal(t, model.SubrequestStatusWaitsched, g.Status)
	require.Equal(t, "queued, none of its copies can be read now: ds1 unavailable since "+utc(first)+" (it stopped answering); ds2 unavailable since "+
		utc(secondSilent)+" (it stopped answering)", g.Info)
	f, err = l.query("/pollux/twice")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(*f.Info, "no copy can be read now: ds1 unavailable since "), *f.Info)
}
