package certify_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"encoding/xml"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/pgcluster"
	"github.com/pollux-storage/pollux/schema/schematest"
	"github.com/pollux-storage/pollux/testsuites/certify"
	"github.com/pollux-storage/pollux/testsuites/e2e"
)

var update = flag.Bool("update", false, "rewrite docs/certification.md from the registry")

var bin string

func TestMain(m *testing.M) {
	flag.Parse()
	code := func() int {
		if testing.Short() {
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "pollux-certify-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		bin = dir
		root, err := pgcluster.RepoRoot()
		if err == nil {
			err = e2e.Build(root, dir)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// The catalogue in docs/certification.md is generated from the registry: it must not
// drift from the code (go test ./testsuites/certify -run Catalogue -update rewrites it).
func TestCatalogueUpToDate(t *testing.T) {
	t.Parallel()
	root, err := pgcluster.RepoRoot()
	require.NoError(t, err)
	path := filepath.Join(root, "docs", "certification.md")
	want := certify.Catalogue()
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(want), 0o644))
	}
	got, err := os.ReadFile(path)
	require.NoError(t, err, "docs/certification.md is generated: go test ./testsuites/certify -run Catalogue -update")
	require.Equal(t, want, string(got), "docs/certification.md is stale: go test ./testsuites/certify -run Catalogue -update")
}

// Every case has a stable, well-formed id (register panics otherwise), a purpose and a
// body, and the list printed by --list names them all.
func TestRegistry(t *testing.T) {
	t.Parallel()
	cs := certify.Cases()
	require.GreaterOrEqual(t, len(cs), 150, "the catalogue shrank")
	var out bytes.Buffer
	require.Equal(t, 0, certify.Main(context.Background(), []string{"--list"}, nil, &out, &out))
	for _, c := range cs {
		require.NotNil(t, c.Run, c.ID)
		require.Contains(t, out.String(), c.ID+" ")
	}
}

// Bad command lines exit 2 before anything runs.
func TestCommandLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"--token", "x"}, "--stage-host"},
		{[]string{"--stage-host", "127.0.0.1:1"}, "no token"},
		{[]string{"--stage-host", "127.0.0.1:1", "--token", "x", "--admin"}, "--database-url"},
		{[]string{"--stage-host", "127.0.0.1:1", "--token", "x", "--namespace", "/etc/x"}, "under /pollux/"},
		{[]string{"--stage-host", "127.0.0.1:1", "--token", "x", "--token2", "x"}, "same token"},
		{[]string{"--stage-host", "127.0.0.1:1", "--token", "x", "--run", "("}, "regular expression"},
		{[]string{"--stage-host", "127.0.0.1:1", "--token", "x", "--run", "^nothing-matches$", "--journal", filepath.Join(t.TempDir(), "j")}, "no case matches"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
		{[]string{"--tokens-file", "/nonexistent/tokens", "--stage-host", "h"}, "--tokens-file"},
	} {
		var stdout, stderr bytes.Buffer
		code := certify.Main(context.Background(), tc.args, nil, &stdout, &stderr)
		require.Equal(t, certify.ExitUsage, code, "%v: %s", tc.args, stderr.String())
		require.Contains(t, stderr.String(), tc.says, "%v", tc.args)
	}
}

// The whole suite, the operator's cases included, against an instance of its own: the
// suite itself is tested on every change. It fails on any failed case, and checks the
// reports CI systems read.
func TestCertifyOwnInstance(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a whole instance as processes; -short leaves it out")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	// Two request handlers: one drains in service/readyz-503-while-draining while the
	// clients fail over to the other.
	in, err := e2e.Start(ctx, e2e.Options{Bin: bin, DSN: schematest.DSN(t), Dir: dir, RHDs: 2})
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(in.Logs(30))
		}
		in.Stop()
	})
	tokens := filepath.Join(dir, "tokens")
	junit := filepath.Join(dir, "report.xml")
	journal := filepath.Join(dir, "certify.journal")
	args := []string{"--stage-host", in.StageHost(), "--tokens-file", tokens, "--admin", "--database-url", in.DSN(),
		"--admin-bin", filepath.Join(bin, "pollux-admin"), "--journal", journal, "--junit", junit, "--json"}
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := certify.MainWith(ctx, args, nil, &stdout, &stderr, func(cfg *certify.Config) {
		cfg.DrainRHD = drainHook(t, in, "rhd2")
		cfg.StopDiskServer = diskHook(in)
		cfg.KillDiskServer = killHook(in)
	})
	took := time.Since(start)
	var rep certify.Report
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep), "--json: %s\n%s", stdout.String(), stderr.String())
	pass, fail, skip := rep.Counts()
	t.Logf("%d cases: %d passed, %d failed, %d skipped in %s", len(rep.Results), pass, fail, skip, took.Round(100*time.Millisecond))
	slow := slices.SortedFunc(slices.Values(rep.Results), func(a, b certify.Result) int { return cmp.Compare(b.Duration, a.Duration) })
	for _, r := range slow[:5] {
		t.Logf("slowest: %s %s", r.ID, r.Duration.Round(time.Millisecond))
	}
	for _, r := range rep.Results {
		// What only this harness's hooks make possible, for the reader of the log.
		if strings.Contains(r.ID, "retry-limit") || strings.Contains(r.ID, "server-down") || strings.Contains(r.ID, "draining") {
			t.Logf("%s: %s", r.ID, strings.Join(r.Evidence, "; "))
		}
	}
	require.Equal(t, certify.ExitPass, code, "a case failed:\n%s", stderr.String())
	require.Zero(t, fail)
	require.Equal(t, len(certify.Cases()), len(rep.Results), "every case ran")
	for _, r := range rep.Results {
		// This instance offers everything a case may need (two users, --admin, quotas and
		// every hook): none may be skipped here.
		require.NotEqual(t, certify.Skipped, r.Status, "%s was skipped against the suite's own instance: %s", r.ID, r.Skip)
		require.NotEmpty(t, r.Evidence, "case %s reported no evidence", r.ID)
	}
	// The journal is empty after a clean run: everything created was removed.
	_, err = os.Stat(journal)
	require.True(t, os.IsNotExist(err), "journal left behind: %v", err)
	require.Contains(t, strings.Join(rep.Cleanup, "\n"), "0 could not be removed")

	b, err := os.ReadFile(junit)
	require.NoError(t, err)
	var x struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Skipped  int `xml:"skipped,attr"`
	}
	require.NoError(t, xml.Unmarshal(b, &x))
	require.Equal(t, []int{len(rep.Results), 0, skip}, []int{x.Tests, x.Failures, x.Skipped})
}

// drainHook drains rhd name for the suite: it holds one submission in flight (its body
// half sent), so that the drain lasts, and sends SIGTERM. The suite then reads the admin
// listener's /readyz, which stays up through the drain (rhd's own port closes at once).
// restore ends the held submission, waits for the process to exit and starts it again.
func drainHook(t *testing.T, in *e2e.Instance, name string) func(context.Context) (string, func(context.Context) error, error) {
	return func(ctx context.Context) (string, func(context.Context) error, error) {
		p := in.Procs()[name]
		conn, err := net.Dial("tcp", p.Addr())
		if err != nil {
			return "", nil, err
		}
		const body = `{"id":"00000000-0000-4000-8000-000000000000","type":"GET","paths":["/pollux/certify/held"]}`
		fmt.Fprintf(conn, "POST /v1/requests HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
			p.Addr(), in.Token, len(body), body[:10])
		if err := in.Signal(name, syscall.SIGTERM); err != nil {
			conn.Close()
			return "", nil, err
		}
		restore := func(ctx context.Context) error {
			conn.Close()
			select {
			case <-p.Exited():
			case <-ctx.Done():
				return ctx.Err()
			}
			return in.Restart(ctx, name)
		}
		return "http://" + p.Admin() + "/readyz", restore, nil
	}
}

// diskHook stops the disk server whose mover serves a URL (SIGTERM: it leaves placement
// at once) and starts it again on restore.
func diskHook(in *e2e.Instance) func(context.Context, string) (func(context.Context) error, error) {
	return func(ctx context.Context, moverURL string) (func(context.Context) error, error) {
		for name, p := range in.Procs() {
			if !strings.HasPrefix(name, "disk") || !strings.Contains(moverURL, "//"+p.Addr()+"/") {
				continue
			}
			if err := in.Signal(name, syscall.SIGTERM); err != nil {
				return nil, err
			}
			select {
			case <-p.Exited():
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return func(ctx context.Context) error { return in.Restart(ctx, name) }, nil
		}
		return nil, fmt.Errorf("no disk server of this instance serves %s", moverURL)
	}
}

// killHook kills the disk server whose mover serves a URL (SIGKILL) and starts it again.
func killHook(in *e2e.Instance) func(context.Context, string) error {
	return func(ctx context.Context, moverURL string) error {
		for name, p := range in.Procs() {
			if strings.HasPrefix(name, "disk") && strings.Contains(moverURL, "//"+p.Addr()+"/") {
				in.Kill(name, syscall.SIGKILL)
				return in.Restart(ctx, name)
			}
		}
		return fmt.Errorf("no disk server of this instance serves %s", moverURL)
	}
}

// A run that was interrupted leaves its journal; the next run removes what it names
// before it starts, and a path that is already gone counts as removed.
func TestInterruptedRunCleanedUp(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a whole instance as processes; -short leaves it out")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	in, err := e2e.Start(ctx, e2e.Options{Bin: bin, DSN: schematest.DSN(t), Dir: dir, DiskServers: 1})
	require.NoError(t, err)
	t.Cleanup(in.Stop)
	src := filepath.Join(dir, "src")
	require.NoError(t, os.WriteFile(src, []byte("left behind"), 0o644))
	left := "/pollux/certify/interrupted/f"
	r := in.Run(ctx, nil, "pollux", "cp", src, left)
	require.Equal(t, 0, r.Code, "%s %s", r.Stdout, r.Stderr)
	journal := filepath.Join(dir, "certify.journal")
	require.NoError(t, os.WriteFile(journal, []byte("1\t"+left+"\n1\t/pollux/certify/interrupted/never-made\n1\t/pollux/cut-off-li"), 0o600))

	var stdout, stderr bytes.Buffer
	code := certify.Main(ctx, []string{"--stage-host", in.StageHost(), "--token", in.Token, "--journal", journal,
		"--run", "^qry/missing-file$", "--verbose"}, nil, &stdout, &stderr)
	require.Equal(t, certify.ExitPass, code, "%s\n%s", stdout.String(), stderr.String())
	require.Contains(t, stdout.String(), "cleanup of a previous interrupted run: removed 1 files, 1 were already gone, 0 could not be removed")
	r = in.Run(ctx, nil, "stager_qry", "-M", left)
	require.Equal(t, 1, r.Code, "the interrupted run's file is still there: %s", r.Stdout)
	_, err = os.Stat(journal)
	require.True(t, os.IsNotExist(err), "journal left behind")
}
