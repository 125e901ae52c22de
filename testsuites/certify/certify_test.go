package certify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
	in, err := e2e.Start(ctx, e2e.Options{Bin: bin, DSN: schematest.DSN(t), Dir: dir})
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
	code := certify.Main(ctx, args, nil, &stdout, &stderr)
	took := time.Since(start)
	var rep certify.Report
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep), "--json: %s\n%s", stdout.String(), stderr.String())
	pass, fail, skip := rep.Counts()
	t.Logf("%d cases: %d passed, %d failed, %d skipped in %s", len(rep.Results), pass, fail, skip, took.Round(100*time.Millisecond))
	require.Equal(t, certify.ExitPass, code, "a case failed:\n%s", stderr.String())
	require.Zero(t, fail)
	require.Equal(t, len(certify.Cases()), len(rep.Results), "every case ran")
	for _, r := range rep.Results {
		if r.Status == certify.Skipped {
			// Only what this harness cannot offer: the quota feature, a disk server drain
			// command and an rhd drain hook.
			require.Regexp(t, `quota not configured|drains a disk server|drain a request handler`, r.Skip, r.ID)
			continue
		}
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
