package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pollux-storage/pollux/framework/daemon"
	"github.com/pollux-storage/pollux/framework/daemon/internal/testdaemon"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/pgtest"
)

var testd string // path of the built test daemon

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "testd")
	if err != nil {
		panic(err)
	}
	testd = filepath.Join(dir, "testd")
	if out, err := exec.Command("go", "build", "-o", testd, "./internal/testdaemon/cmd").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build test daemon: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

var jobs = pgtest.SQLTemplate(testdaemon.Schema)

type bundle struct {
	dsn string
	db  *pg.DB
	ctx context.Context
}

func setup(t *testing.T, jobCount int) *bundle {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	dsn := pgtest.NewDatabase(t, jobs)
	db, err := pg.Open(ctx, pg.Config{DSN: dsn})
	require.NoError(t, err)
	t.Cleanup(db.Close)
	_, err = db.Pool().Exec(ctx, "insert into job (done) select false from generate_series(1, $1)", jobCount)
	require.NoError(t, err)
	return &bundle{dsn: dsn, db: db, ctx: ctx}
}

// count runs a query returning one number. t may be an EventuallyWithT's collector, so
// that a condition fails its tick, not the test, when the query does.
func (b *bundle) count(t require.TestingT, sql string) int {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
	var n int
	require.NoError(t, b.db.Pool().QueryRow(b.ctx, sql).Scan(&n))
	return n
}

// waitInStep waits until the daemon holds a job's transaction open.
func (b *bundle) waitInStep(t *testing.T) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, 1, b.count(c, "select count(*) from pg_stat_activity where datname = current_database() and query like '%pg_sleep%' and state = 'active' and pid <> pg_backend_pid()"))
	}, 30*time.Second, 10*time.Millisecond, "the daemon never started a step")
}

func start(t *testing.T, b *bundle, env []string, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(testd, args...)
	cmd.Env = append(append(os.Environ(), "POLLUX_DATABASE_URL="+b.dsn, "POLLUX_LOG_FORMAT=json"), env...)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	return cmd, &out
}

func exitCode(t *testing.T, cmd *exec.Cmd, within time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		return cmd.ProcessState.ExitCode()
	case <-time.After(within):
		t.Fatalf("daemon did not exit within %s", within)
		return -1
	}
}

func TestSIGTERMDrainsWorkInFlight(t *testing.T) {
	t.Parallel()
	b := setup(t, 5)
	cmd, out := start(t, b, nil, "--step-sleep", "1s", "--drain-timeout", "20s")
	b.waitInStep(t)
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, exitCode(t, cmd, 30*time.Second), out.String())

	require.Equal(t, 1, b.count(t, "select count(*) from job where done"), "the step in flight committed and no new step began")
	require.Equal(t, 1, b.count(t, "select count(*) from instance where stopped"), "the instance deregistered")
	require.Contains(t, out.String(), `"msg":"draining"`)
	require.Contains(t, out.String(), `"msg":"daemon stopped"`)
	require.Contains(t, out.String(), `"pool":"work"`, "pool log lines carry the pool")
	// The daemon closed its connections before it exited, but each server process
	// leaves pg_stat_activity only once it has seen the close and ended.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Zero(c, b.count(c, "select count(*) from pg_stat_activity where datname = current_database() and application_name like 'testd %'"))
	}, 10*time.Second, 10*time.Millisecond, "connections closed")
}

func TestDrainDeadlineAbortsAndSecondSignalExits(t *testing.T) {
	t.Parallel()
	b := setup(t, 5)
	cmd, out := start(t, b, nil, "--step-sleep", "60s", "--drain-timeout", "300ms")
	b.waitInStep(t)
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 1, exitCode(t, cmd, 30*time.Second), "a drain that had to abort work is a failure: %s", out.String())
	require.Zero(t, b.count(t, "select count(*) from job where done"), "the aborted step rolled back")

	cmd, out = start(t, b, nil, "--step-sleep", "60s", "--drain-timeout", "60s")
	b.waitInStep(t)
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "draining") }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	require.Equal(t, 1, exitCode(t, cmd, 10*time.Second), "a second signal exits at once")
}

func TestHelpAndCommandLineErrors(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(testd, "--help").CombinedOutput()
	require.NoError(t, err)
	for _, want := range []string{"testd — a daemon that exercises the framework", "--database-url", "(POLLUX_DATABASE_URL)",
		"--drain-timeout", "--work-workers", "(POLLUX_WORK_WORKERS)", "--step-sleep", "(POLLUX_STEP_SLEEP)"} {
		require.Contains(t, string(out), want)
	}

	cmd := exec.Command(testd, "--no-such-flag")
	cmd.Env = []string{}
	out, _ = cmd.CombinedOutput()
	require.Equal(t, 2, cmd.ProcessState.ExitCode())
	require.Contains(t, string(out), "no-such-flag")

	cmd = exec.Command(testd)
	cmd.Env = []string{}
	out, _ = cmd.CombinedOutput()
	require.Equal(t, 2, cmd.ProcessState.ExitCode())
	require.Contains(t, string(out), "--database-url (or POLLUX_DATABASE_URL) is required")

	cmd = exec.Command(testd, "--database-url", "x")
	cmd.Env = []string{"POLLUX_WORK_WORKERS=lots"}
	out, _ = cmd.CombinedOutput()
	require.Equal(t, 2, cmd.ProcessState.ExitCode())
	require.Contains(t, string(out), `POLLUX_WORK_WORKERS="lots"`)
}

func TestInProcessAdminEndpointsAndEnvironment(t *testing.T) {
	t.Parallel()
	b := setup(t, 3)
	ctx, stop := context.WithCancel(b.ctx)
	var out syncBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- daemon.Run(ctx, []string{"--step-sleep", "1ms", "--log-format", "json", "--heartbeat-interval", "50ms"},
			[]string{"POLLUX_DATABASE_URL=" + b.dsn, "POLLUX_WORK_WORKERS=3", "POLLUX_TYPO_VARIABLE=1"},
			io.Discard, &out, testdaemon.Spec())
	}()

	var adminURL string
	var pools map[string]int
	require.Eventually(t, func() bool {
		var raw []byte
		err := b.db.Pool().QueryRow(b.ctx, "select admin_url, pools from instance where heartbeats > 0").Scan(&adminURL, &raw)
		return err == nil && json.Unmarshal(raw, &pools) == nil
	}, 30*time.Second, 10*time.Millisecond, "the instance registers and heartbeats")
	require.Equal(t, map[string]int{"work": 3}, pools, "POLLUX_WORK_WORKERS set the pool size")
	require.Contains(t, out.String(), "POLLUX_TYPO_VARIABLE", "unknown POLLUX_* variables are reported")

	get := func(path string) (int, string) {
		resp, err := http.Get(adminURL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(body)
	}
	code, _ := get("/healthz")
	require.Equal(t, http.StatusOK, code)
	code, _ = get("/readyz")
	require.Equal(t, http.StatusOK, code)
	code, _ = get("/debug/pprof/")
	require.Equal(t, http.StatusNotFound, code, "the profiler only with --debug-endpoints")
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, 3, b.count(c, "select count(*) from job where done"))
	}, 30*time.Second, 10*time.Millisecond, "every job done")
	code, body := get("/metrics")
	require.Equal(t, http.StatusOK, code)
	for _, m := range []string{`pollux_claim_rows_total{pool="work"} 3`, "pollux_claim_duration_seconds_bucket", `pollux_pool_workers{pool="work"} 3`,
		"pollux_pool_busy_workers", "pollux_db_pool_total_connections", `pollux_build_info{daemon="testd",version="test"} 1`,
		// The settings, from the command line and the environment alike, for the sanity check
		// to compare between instances.
		`pollux_daemon_flag_info{flag="work-workers",value="3"} 1`, `pollux_daemon_flag_info{flag="step-sleep",value="1ms"} 1`} {
		require.Contains(t, body, m)
	}
	require.NotContains(t, body, `flag="database-url"`, "a connection string may carry a password")
	require.NotContains(t, body, b.dsn)

	stop()
	select {
	case code := <-exited:
		require.Equal(t, 0, code, out.String())
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// TestDebugEndpointsOnlyWhenAsked: --debug-endpoints (POLLUX_DEBUG_ENDPOINTS) puts Go's
// profiler on the admin listener, and says so in the log.
func TestDebugEndpointsOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	ctx, stop := context.WithCancel(b.ctx)
	var out syncBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- daemon.Run(ctx, []string{"--log-format", "json", "--heartbeat-interval", "50ms"},
			[]string{"POLLUX_DATABASE_URL=" + b.dsn, "POLLUX_DEBUG_ENDPOINTS=true"}, io.Discard, &out, testdaemon.Spec())
	}()
	var adminURL string
	require.Eventually(t, func() bool {
		return b.db.Pool().QueryRow(b.ctx, "select admin_url from instance where heartbeats > 0").Scan(&adminURL) == nil
	}, 30*time.Second, 10*time.Millisecond, "the instance registers and heartbeats")
	resp, err := http.Get(adminURL + "/debug/pprof/goroutine?debug=1")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(body), "goroutine profile")
	require.Contains(t, out.String(), `"msg":"debug endpoints on"`)
	stop()
	select {
	case code := <-exited:
		require.Equal(t, 0, code, out.String())
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// syncBuffer is a bytes.Buffer safe for a process's stdout and stderr at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
