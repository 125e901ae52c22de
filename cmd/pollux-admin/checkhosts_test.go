package main

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
)

func instanceOn(role, host string) model.DaemonInstanceListRow {
	return model.DaemonInstanceListRow{ID: "0123456789abcdef", Role: role, Host: host}
}

func flags(kv ...string) map[string][]sample {
	var s []sample
	for i := 0; i < len(kv); i += 2 {
		s = append(s, sample{labels: map[string]string{"flag": kv[i], "value": kv[i+1]}, value: 1})
	}
	return map[string][]sample{"pollux_daemon_flag_info": s}
}

// Settings: a flag two instances of a role set differently is named with each value and
// host; flags that differ by design (where each listens, its name) are not.
func TestJudgeSettings(t *testing.T) {
	t.Parallel()
	same := judgeSettings([]scraped{
		{d: instanceOn("stagerd", "h1"), metrics: flags("new-workers", "4", "admin-addr", "h1:9181")},
		{d: instanceOn("stagerd", "h2"), metrics: flags("new-workers", "4", "admin-addr", "h2:9181")},
	})
	require.Equal(t, []finding{{"settings", "flags", "ok", "the instances of each of 1 role(s) with more than one run with the same settings"}}, same)

	differ := judgeSettings([]scraped{
		{d: instanceOn("stagerd", "h1"), metrics: flags("new-workers", "4", "log-level", "info")},
		{d: instanceOn("stagerd", "h2"), metrics: flags("new-workers", "8", "log-level", "info")},
		{d: instanceOn("stagerd", "h3"), metrics: flags("new-workers", "8")},
		{d: instanceOn("rhd", "h1"), metrics: flags("max-wait", "1m0s")},
	})
	require.Len(t, differ, 1, "%v", differ)
	require.Equal(t, "warn", differ[0].State)
	require.Equal(t, "stagerd", differ[0].Item)
	require.Equal(t, `instances disagree: --log-level: "info" on h1, h2; absent on 1 instance(s) | --new-workers: "4" on h1; "8" on h2, h3: make their /etc/pollux/stagerd.env agree`, differ[0].Detail)
}

// Clocks: a host off by more than the warning threshold beyond the measurement's
// uncertainty is named, ahead or behind; within it, one OK line.
func TestJudgeClocks(t *testing.T) {
	t.Parallel()
	now := time.Now()
	at := func(skew time.Duration) hostClock {
		// The Date header is truncated to the second, as net/http writes it.
		return hostClock{date: now.Add(skew).Truncate(time.Second), sent: now.Add(-time.Millisecond), received: now.Add(time.Millisecond)}
	}
	view := databaseView{offset: 0, uncertainty: time.Millisecond}
	got := judgeClocks([]scraped{{d: instanceOn("rhd", "h1"), clock: at(0)}, {d: instanceOn("stagerd", "h2"), clock: at(300 * time.Millisecond)}}, view)
	require.Len(t, got, 1)
	require.Equal(t, "ok", got[0].State, got[0].Detail)
	require.Contains(t, got[0].Detail, "3 host(s) within 2s")

	got = judgeClocks([]scraped{
		{d: instanceOn("rhd", "h1"), clock: at(0)},
		{d: instanceOn("stagerd", "h2"), clock: at(-10 * time.Second)},
		{d: instanceOn("diskserverd", "h3"), clock: at(5 * time.Minute)},
	}, view)
	require.Len(t, got, 2, "%v", got)
	require.Equal(t, "h2", got[0].Item)
	require.Equal(t, "warn", got[0].State)
	require.Contains(t, got[0].Detail, "behind the database's clock by 10s (")
	require.Equal(t, "h3", got[1].Item)
	require.Equal(t, "fail", got[1].State)
	require.Contains(t, got[1].Detail, "ahead of the database's clock by 5m0s (")

	// This host's own clock, measured against the database.
	got = judgeClocks(nil, databaseView{offset: -90 * time.Second, uncertainty: time.Millisecond})
	require.Equal(t, []string{"this host (pollux-admin)", "fail"}, []string{got[0].Item, got[0].State})
	require.Contains(t, got[0].Detail, "ahead of the database's clock by 1m30s")
}

func fsMetrics(server, mount string, present, writable, free, capacity float64) map[string][]sample {
	l := map[string]string{"disk_server": server, "mount_point": mount}
	return map[string][]sample{
		"pollux_diskserver_file_system_present":        {{labels: l, value: present}},
		"pollux_diskserver_file_system_writable":       {{labels: l, value: writable}},
		"pollux_diskserver_file_system_free_bytes":     {{labels: l, value: free}},
		"pollux_diskserver_file_system_capacity_bytes": {{labels: l, value: capacity}},
	}
}

// File systems: what the disk server sees now against what the database was told.
func TestJudgeFileSystems(t *testing.T) {
	t.Parallel()
	const gb = 1 << 30
	view := databaseView{fileSystems: []model.FileSystemCheckListRow{
		{DiskServer: "d1", MountPoint: "/a", CapacityBytes: 100 * gb, FreeBytes: 50 * gb, Available: true},
		{DiskServer: "d1", MountPoint: "/b", CapacityBytes: 100 * gb, FreeBytes: 50 * gb, Available: true},
		{DiskServer: "d2", MountPoint: "/c", CapacityBytes: 100 * gb, FreeBytes: 50 * gb, Available: true},
		{DiskServer: "d3", MountPoint: "/d", CapacityBytes: 100 * gb, FreeBytes: 50 * gb, Available: true},
		{DiskServer: "d4", MountPoint: "/e", CapacityBytes: 100 * gb, FreeBytes: 50 * gb, Available: false},
	}}
	d1 := fsMetrics("d1", "/a", 1, 1, 50*gb+10<<20, 100*gb)
	for k, v := range fsMetrics("d1", "/b", 1, 0, 50*gb, 100*gb) {
		d1[k] = append(d1[k], v...)
	}
	all := []scraped{
		{d: instanceOn("diskserverd", "h1"), metrics: d1},
		{d: instanceOn("diskserverd", "h2"), metrics: fsMetrics("d2", "/c", 1, 1, 10*gb, 100*gb)},
		{d: instanceOn("diskserverd", "h3"), err: errors.New("connection refused")},
	}
	got := judgeFileSystems(all, view)
	require.Len(t, got, 3, "%v", got)
	require.Equal(t, finding{"file systems", "d1:/b", "fail", "does not take writes (read-only, full or failing): uploads placed there fail; repair it or stop the disk server"}, got[0])
	require.Equal(t, "d2:/c", got[1].Item)
	require.Equal(t, "warn", got[1].State)
	require.Contains(t, got[1].Detail, "the database was told 50.00 GiB free")
	require.Equal(t, finding{"file systems", "unverified", "warn", "their disk server's /metrics did not answer, so presence, writes and space are unchecked: d3:/d"}, got[2])

	// A directory gone, and one the server no longer serves.
	gone := judgeFileSystems([]scraped{{d: instanceOn("diskserverd", "h1"), metrics: fsMetrics("d1", "/a", 0, 0, 0, 0)}},
		databaseView{fileSystems: view.fileSystems[:2]})
	require.Len(t, gone, 2, "%v", gone)
	require.Contains(t, gone[0].Detail, "data directory is missing")
	require.Contains(t, gone[1].Detail, "not served by its disk server any more")
}

// River: a job queued for a disk server that no longer exists is named, with what to do;
// the new checks run on a database with nothing running and say what they could not see.
func TestCheckRiverQueuesAndWhatNothingRunningShows(t *testing.T) {
	t.Parallel()
	b := setup(t)
	code, _, stderr := b.admin(t, "migrate")
	require.Equal(t, 0, code, stderr)
	code, out, _ := b.admin(t, "check")
	require.Equal(t, 1, code, out)
	require.Regexp(t, `OK\s+river\s+queues\s+no River job waiting`, out)
	require.Regexp(t, `OK\s+daemons\s+schema\s+0 instance\(s\) answering, every one built for schema \d+`, out)
	require.Regexp(t, `OK\s+clock\s+skew\s+1 host\(s\) within 2s`, out)

	db, err := pg.Open(b.ctx, pg.Config{DSN: b.dsn})
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Pool().Exec(b.ctx, `insert into river_job (args, kind, max_attempts, queue, state, finalized_at)
		values ('{}', 'unlink', 3, 'disk_server.gone', 'available', null), ('{}', 'unlink', 3, 'disk_server.gone', 'completed', now())`)
	require.NoError(t, err)
	code, out, _ = b.admin(t, "check")
	require.Equal(t, 1, code, out)
	require.Regexp(t, `WARN\s+river\s+queues\s+1 job\(s\) queued for disk servers that no longer exist \(disk_server.gone\): they never run`, out)
}
