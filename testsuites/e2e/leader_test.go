package e2e_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
	"github.com/pollux-storage/pollux/testsuites/e2e"
)

// Two job managers: one leads each sweep, the other stands by. The leader is paused
// (SIGSTOP) in the middle of a fenced transaction until its lease has passed, killed with
// -9, and stopped cleanly; each time the other takes over, and the paused one, woken
// (SIGCONT) believing it still leads, is refused by the database.
func TestSingletonLeaderFencingAndFailover(t *testing.T) {
	t.Parallel()
	// Sweeps every 200 ms, so that the leader reaches the fence well within the lease it
	// renewed last (the lease keeps its default ttl, which part 2 measures).
	in, ctx := start(t, e2e.Options{JobManagers: 3, DiskServers: 1,
		ExtraArgs: map[string][]string{"jobmanagerd": {"--expire-interval", "200ms"}}})
	db, err := pg.Open(ctx, pg.Config{DSN: in.DSN()})
	require.NoError(t, err)
	t.Cleanup(db.Close)

	const expire, archive = "jobmanagerd.expire", "jobmanagerd.archive"
	leaderOf := func(lease string) (string, int64) {
		t.Helper()
		host, epoch, err := e2e.WaitLeader(ctx, db, lease, "", 0, 30*time.Second)
		require.NoError(t, err)
		return host, epoch
	}
	// waitNewLeader waits until someone other than old leads the lease at a higher epoch.
	waitNewLeader := func(lease, old string, oldEpoch int64, within time.Duration) (string, int64) {
		t.Helper()
		host, epoch, err := e2e.WaitLeader(ctx, db, lease, old, oldEpoch, within)
		require.NoError(t, err)
		return host, epoch
	}
	instanceOf := func(host string) string {
		t.Helper()
		var id string
		require.NoError(t, db.Pool().QueryRow(ctx,
			"select id from daemon_instance where host = $1 and stopped_at is null order by started_at desc limit 1", host).Scan(&id))
		return id
	}

	// --- 1. Paused in a fenced transaction past its lease. The test holds the lease row,
	// so the leader's next sweep blocks inside leader_lease_fence; it is stopped there.
	leader1, epoch1 := leaderOf(expire)
	inst1 := instanceOf(leader1)
	hold, err := db.Pool().Begin(ctx)
	require.NoError(t, err)
	defer hold.Rollback(ctx) //nolint:errcheck // committed below
	_, err = hold.Exec(ctx, "select 1 from leader_lease where name = $1 for update", expire)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		var n int
		err := db.Pool().QueryRow(ctx, `select count(*) from pg_stat_activity
			where application_name = $1 and wait_event_type = 'Lock' and query like '%leader_lease_fence%'`,
			"jobmanagerd "+inst1[:8]).Scan(&n)
		return err == nil && n > 0
	}, 30*time.Second, 10*time.Millisecond, "the leader's sweep never reached the fence")
	require.NoError(t, in.Signal(leader1, syscall.SIGSTOP))
	stopped := time.Now()
	t.Cleanup(func() { _ = in.Signal(leader1, syscall.SIGCONT) })
	// Let the lease pass by the database's clock, then let go of the row: the paused
	// leader's waiting statement runs now, with the epoch it believes in.
	require.Eventually(t, func() bool {
		var live bool
		err := db.Pool().QueryRow(ctx, "select expires_at > clock_timestamp() from leader_lease where name = $1", expire).Scan(&live)
		return err == nil && !live
	}, 30*time.Second, 20*time.Millisecond)
	require.NoError(t, hold.Commit(ctx))
	leader2, epoch2 := waitNewLeader(expire, leader1, epoch1, 30*time.Second)
	t.Logf("%s: %s paused; %s leads at epoch %d after %s", expire, leader1, leader2, epoch2, time.Since(stopped).Round(time.Millisecond))

	require.NoError(t, in.Signal(leader1, syscall.SIGCONT))
	p1 := in.Procs()[leader1]
	require.Eventually(t, func() bool { return strings.Contains(p1.Log(), "write refused by the fence") },
		30*time.Second, 20*time.Millisecond, "the woken leader's write was not refused:\n%s", p1.Log())
	require.Contains(t, scrape(t, p1.Admin()), fmt.Sprintf(`pollux_leader_is_leader{lease=%q} 0`, expire))
	require.Contains(t, scrape(t, p1.Admin()), fmt.Sprintf(`pollux_leader_fenced_writes_total{lease=%q} 1`, expire))
	require.Contains(t, scrape(t, in.Procs()[leader2].Admin()), fmt.Sprintf(`pollux_leader_is_leader{lease=%q} 1`, expire))
	var stale int
	require.NoError(t, db.Pool().QueryRow(ctx, "select count(*) from leader_work where name = $1 and instance_id = $2 and epoch = $3 and at > $4",
		expire, inst1, epoch1, stopped).Scan(&stale))
	require.Zero(t, stale, "the deposed leader's work was committed")
	var ev []model.SystemEvent
	ev, err = model.SystemEventList(ctx, db.Pool(), 100)
	require.NoError(t, err)
	require.True(t, hasEvent(ev, "leader_change", expire, "previous leader "+inst1), "no journalled switch from %s", leader1)

	// --- 2. kill -9 of a leader: the lease must expire first, so the takeover takes at
	// most ttl + renew interval (3 s + 1 s by default). "Working" is the new leader's first
	// sweep, which it starts when elected: a finished request the retention lets go.
	leader3, epoch3 := leaderOf(archive)
	src, _ := randomFile(t, t.TempDir(), "f", 4<<10)
	ok(t, in.Run(ctx, nil, "pollux", "cp", src, "/pollux/leader/f"))
	in.Kill(leader3, syscall.SIGKILL)
	killed := time.Now()
	_, err = model.PolicySet(ctx, db.Pool(), "request_retention_seconds", 0, "e2e")
	require.NoError(t, err)
	leader4, epoch4 := waitNewLeader(archive, leader3, epoch3, 30*time.Second)
	elected := time.Since(killed)
	require.Eventually(t, func() bool {
		var n int
		err := db.Pool().QueryRow(ctx, "select count(*) from leader_work where name = $1 and epoch = $2", archive, epoch4).Scan(&n)
		return err == nil && n > 0
	}, 30*time.Second, 10*time.Millisecond, "the new leader did no work")
	working := time.Since(killed)
	t.Logf("%s: %s killed -9; %s elected after %s, working after %s (target ≤ 5 s)", archive, leader3, leader4,
		elected.Round(time.Millisecond), working.Round(time.Millisecond))

	// --- 3. A clean stop resigns at once: the takeover waits for one renew interval, not
	// for the lease to expire.
	// The leader of expire may still be the instance killed above, its lease not yet run
	// out: wait for a live one.
	leader5, epoch5 := waitNewLeader(expire, leader3, 0, 30*time.Second)
	stopAt := time.Now()
	in.Kill(leader5, syscall.SIGTERM)
	leader6, _ := waitNewLeader(expire, leader5, epoch5, 30*time.Second)
	resigned := time.Since(stopAt)
	t.Logf("%s: %s stopped (SIGTERM); %s leads after %s", expire, leader5, leader6, resigned.Round(time.Millisecond))
	ev, err = model.SystemEventList(ctx, db.Pool(), 100)
	require.NoError(t, err)
	require.True(t, hasEvent(ev, "leader_resign", expire, leader5), "no journalled resignation by %s", leader5)
	require.True(t, hasEvent(ev, "leader_change", expire, "previous leader resigned"))

	// Epochs never go back in commit order, and each belongs to one instance: no sweep ran
	// under two leaders.
	twice, err := e2e.SingletonWorkRanTwice(ctx, db)
	require.NoError(t, err)
	require.Empty(t, twice, "singleton work ran under two leaders")

	out := ok(t, in.Run(ctx, nil, "pollux-admin", "leaders", "--database-url", in.DSN()))
	require.Contains(t, out.Stdout, expire)
	require.Contains(t, out.Stdout, leader6)
	t.Logf("pollux-admin leaders:\n%s", out.Stdout)

	// The sanity check sees a working instance once the resigned archive lease has a new
	// leader (warnings only: single instances, no
	// standby), with the leases led and every admin listener answering.
	leaderOf(archive)
	check := in.Run(ctx, nil, "pollux-admin", "check", "--database-url", in.DSN())
	t.Logf("pollux-admin check:\n%s", check.Stdout)
	require.Equal(t, 0, check.Code, "stdout: %s\nstderr: %s", check.Stdout, check.Stderr)
	require.Regexp(t, `(OK|WARN)\s+leaders\s+jobmanagerd.expire\s+`+leader6+` leads`, check.Stdout)
	require.Regexp(t, `WARN\s+daemons\s+admin listeners\s+not answering /metrics.*`+leader3, check.Stdout, "the killed one")
}

func hasEvent(ev []model.SystemEvent, kind, lease, text string) bool {
	for _, e := range ev {
		if e.Kind == kind && strings.Contains(string(e.Detail), lease) && strings.Contains(e.Message, text) {
			return true
		}
	}
	return false
}

func scrape(t *testing.T, admin string) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}
