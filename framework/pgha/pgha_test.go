package pgha

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
)

func TestTimingValidate(t *testing.T) {
	t.Parallel()
	require.NoError(t, FastTiming().Validate())
	require.NoError(t, DefaultTiming().Validate())
	for _, tc := range []struct {
		name   string
		change func(*Timing)
		want   string
	}{
		{"zero period", func(t *Timing) { t.HealthCheckPeriod = 0 }, "health check period is 0s"},
		{"negative retries", func(t *Timing) { t.HealthCheckMaxRetries = -1 }, "cannot be negative"},
		{"fractional partition timeout", func(t *Timing) { t.NetworkPartitionTimeout = 1500 * time.Millisecond }, "whole seconds"},
		{"split brain", func(t *Timing) { t.NetworkPartitionTimeout = 6 * time.Second },
			"a cut-off primary would still take writes when its standby is promoted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tm := FastTiming()
			tc.change(&tm)
			require.ErrorContains(t, tm.Validate(), tc.want)
		})
	}
	lines := strings.Join(FastTiming().monitorSettings(), "\n")
	require.Contains(t, lines, "pgautofailover.node_considered_unhealthy_timeout = 2000")
	require.Contains(t, lines, "pgautofailover.primary_demote_timeout = 4000")
}

// The multi-host DSN is what libpq and pgx take: every node, the primary chosen by
// target_session_attrs.
func TestDSN(t *testing.T) {
	t.Parallel()
	f := &Formation{User: "postgres", Nodes: []Member{{"node1", "127.9.8.2", 5432}, {"node2", "127.9.8.3", 5432}}}
	dsn := f.DSN("pollux")
	require.Equal(t, "postgres://postgres@127.9.8.2:5432,127.9.8.3:5432/pollux?connect_timeout=2&sslmode=disable&target_session_attrs=read-write", dsn)
	cfg, err := pgconn.ParseConfig(dsn)
	require.NoError(t, err)
	require.Equal(t, "127.9.8.2", cfg.Host)
	require.Equal(t, "pollux", cfg.Database)
	require.Len(t, cfg.Fallbacks, 1) // the hosts after the first
	require.Equal(t, "127.9.8.3", cfg.Fallbacks[0].Host)
	require.NotNil(t, cfg.ValidateConnect, "target_session_attrs=read-write checks each connection")
	require.NotContains(t, f.NodeDSN(f.Nodes[1], "postgres"), "127.9.8.2")
}

// killTree takes a whole tree, however deep, and a process outside it named as extra.
func TestKillTree(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// A shell whose grandchildren leave its process group (setsid), as PostgreSQL's do.
	root := exec.Command("sh", "-c", "setsid sleep 300 & (sleep 300 & sleep 300) & wait")
	require.NoError(t, root.Start())
	outside := exec.Command("sleep", "300")
	require.NoError(t, outside.Start())
	go func() { _ = root.Wait() }()
	go func() { _ = outside.Wait() }()
	var pids []int
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		pids, err = tree(root.Process.Pid)
		require.NoError(t, err)
		if len(pids) >= 4 { // sh, the setsid sleep, and the subshell's two (the last one exec'd)
			break
		}
		require.True(t, time.Now().Before(deadline), "the tree never grew: %v", pids)
		time.Sleep(10 * time.Millisecond)
	}
	killed, err := killTree(ctx, root.Process.Pid, outside.Process.Pid)
	require.NoError(t, err)
	require.Subset(t, killed, append(pids, outside.Process.Pid))
	for _, p := range killed {
		require.False(t, alive(p), "pid %d", p)
	}
}

// TestFormationLifecycle drives a real formation through everything the package offers:
// create, sync, a commit that survives the primary's death (synchronous replication),
// promotion, the old primary back as a standby holding the commit, stop, start again,
// remove.
func TestFormationLifecycle(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("a pg_auto_failover formation takes half a minute; -short leaves it out")
	}
	if err := Available(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "ha")
	f, err := Create(ctx, Options{Dir: dir, Database: "lifecycle", Progress: testWriter{t}})
	require.NoError(t, err)
	removed := false
	t.Cleanup(func() {
		if !removed {
			_ = f.Remove(context.Background())
		}
	})
	_, err = Create(ctx, Options{Dir: dir})
	require.ErrorContains(t, err, "a formation already exists")

	exec1 := func(dsn, sql string, args ...any) {
		t.Helper()
		require.NoError(t, query(ctx, dsn, func(c *pgx.Conn) error { _, err := c.Exec(ctx, sql, args...); return err }))
	}
	count := func(dsn string) int {
		t.Helper()
		var n int
		require.NoError(t, query(ctx, dsn, func(c *pgx.Conn) error { return c.QueryRow(ctx, "select count(*) from t").Scan(&n) }))
		return n
	}
	old, err := f.Primary(ctx)
	require.NoError(t, err)
	exec1(f.DSN("lifecycle"), "create table t (v text)")
	exec1(f.DSN("lifecycle"), "insert into t values ('acknowledged before the kill')")

	pids, err := f.Kill(ctx, old.Name)
	require.NoError(t, err)
	require.NotEmpty(t, pids)
	_, up := f.KeeperPID(old)
	require.False(t, up)
	_, up = f.PostmasterPID(old)
	require.False(t, up)
	killed := time.Now()
	promoted, err := f.WaitPrimary(ctx, old.Name)
	require.NoError(t, err)
	require.NotEqual(t, old.Name, promoted.Name)
	t.Logf("%s takes writes %s after %s died", promoted.Name, time.Since(killed).Round(10*time.Millisecond), old.Name)
	require.Equal(t, 1, count(f.DSN("lifecycle")), "the acknowledged commit is on the promoted standby")
	exec1(f.DSN("lifecycle"), "insert into t values ('after the promotion')")

	require.NoError(t, f.StartNode(ctx, old.Name))
	p, err := f.WaitSync(ctx)
	require.NoError(t, err)
	require.Equal(t, promoted.Name, p.Name)
	require.Eventually(t, func() bool { return count(f.NodeDSN(old, "lifecycle")) == 2 }, time.Minute, 50*time.Millisecond,
		"the old primary, now a standby, replays what the new one took")
	events, err := f.Events(ctx, 50)
	require.NoError(t, err)
	require.NotEmpty(t, events)

	require.NoError(t, f.Stop(ctx))
	for _, m := range f.Members() {
		_, up := f.KeeperPID(m)
		require.False(t, up, m.Name)
	}
	again, err := Ensure(ctx, Options{Dir: dir, Progress: testWriter{t}})
	require.NoError(t, err)
	require.Equal(t, 2, count(again.DSN("lifecycle")))

	var running []int
	for _, m := range again.Members() {
		keeper, ok := again.KeeperPID(m)
		require.True(t, ok, m.Name)
		pm, ok := again.PostmasterPID(m)
		require.True(t, ok, m.Name)
		running = append(running, keeper, pm)
	}
	require.NoError(t, again.Remove(ctx))
	removed = true
	_, err = os.Stat(dir)
	require.ErrorIs(t, err, os.ErrNotExist)
	for _, pid := range running {
		require.False(t, alive(pid), "pid %d still runs", pid)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// A keeper this process started and saw end is reported with how it ended.
func TestExitLogSaysHowAKeeperEnded(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("sh", "-c", "kill -9 $$")
	require.NoError(t, cmd.Start())
	pid := cmd.Process.Pid
	keeperExits.record(pid, cmd.Wait())
	require.Regexp(t, `^: it ended with signal: killed at \d\d:\d\d:\d\d\.\d\d\d$`, keeperExits.how(pid))
	require.Empty(t, keeperExits.how(-1), "nothing is said of a process it never saw end")
}
