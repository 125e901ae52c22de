package load_test

import (
	"context"
	"flag"
	"fmt"
	"hash/adler32"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/pgcluster"
	"github.com/pollux-storage/pollux/schema/schematest"
	"github.com/pollux-storage/pollux/testsuites/e2e"
	"github.com/pollux-storage/pollux/testsuites/load"
)

var bin string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "pollux-load-bin")
	if err != nil {
		panic(err)
	}
	bin = dir
	root, err := pgcluster.RepoRoot()
	if err == nil && !testing.Short() {
		err = e2e.Build(root, dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// The judge passes a healthy instance's load, and catches a stored file whose bytes
// changed behind the service's back.
func TestLoadAndJudge(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole instance as processes")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
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
	db, err := pg.Open(ctx, pg.Config{DSN: in.DSN()})
	require.NoError(t, err)
	t.Cleanup(db.Close)
	run := func(ctx context.Context, name string, args ...string) load.Result {
		r := in.Run(ctx, nil, name, args...)
		return load.Result{Code: r.Code, Stdout: r.Stdout, Stderr: r.Stderr}
	}

	local := filepath.Join(dir, "load")
	l, err := load.Start(ctx, load.Config{Run: run, Dir: local, Prefix: "/pollux/load", Clients: 3, MaxSize: 64 << 10})
	require.NoError(t, err)
	// Enough operations that every kind ran, however slow the machine.
	require.Eventually(t, func() bool {
		kinds := map[string]int{}
		for _, o := range l.Ops() {
			if o.Acked() {
				kinds[o.Kind]++
			}
		}
		return kinds["put"] >= 10 && kinds["get"] >= 3 && kinds["rm"] >= 1
	}, 3*time.Minute, 50*time.Millisecond)
	ops := l.Stop()
	rep, err := load.Verify(ctx, db, run, local, ops, time.Minute)
	require.NoError(t, err)
	t.Log(rep.String())
	require.True(t, rep.OK(), rep.String())
	require.Zero(t, rep.Failed, rep.String())
	require.Positive(t, rep.FilesVerified)
	require.GreaterOrEqual(t, rep.Requests, rep.Issued, "every operation is at least one request")

	// Change a stored file's bytes on its disk server: the judge must call it lost.
	var victim load.Op
	for _, o := range ops {
		if o.Kind == "put" && o.Acked() && !removed(ops, o.Path) {
			victim = o
			break
		}
	}
	require.NotEmpty(t, victim.Path)
	corrupted := false
	for _, disk := range []string{"disk1", "disk2"} {
		_ = filepath.WalkDir(filepath.Join(dir, disk), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || corrupted {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil || len(b) != victim.Size || !sameAdler(b, victim.Adler32) {
				return nil
			}
			b[len(b)/2] ^= 0xff
			require.NoError(t, os.WriteFile(p, b, 0o600))
			corrupted = true
			return nil
		})
	}
	require.True(t, corrupted, "no data file of %s found on the disk servers", victim.Path)
	rep, err = load.Verify(ctx, db, run, local, ops, time.Minute)
	require.NoError(t, err)
	require.False(t, rep.OK())
	require.Len(t, rep.Lost, 1, rep.String())
	require.Contains(t, rep.Lost[0], victim.Path)
}

func removed(ops []load.Op, path string) bool {
	for _, o := range ops {
		if o.Kind == "rm" && o.Path == path {
			return true
		}
	}
	return false
}

func sameAdler(b []byte, want uint32) bool { return adler32.Checksum(b) == want }

// pollux-stress, the operators' load against any instance, run as a process against a whole
// instance: it stops after its requests, prints its figures and its verdict, removes what
// it wrote, and exits 0 with nothing lost.
func TestPolluxStressCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole instance as processes")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
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
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "pollux-stress"), "--stage-host", in.StageHost(), "--token", in.Token,
		"--requests", "40", "--clients", "3", "--max-size", "16384", "--report-every", "200ms",
		"--database-url", in.DSN(), "--bin", bin, "--prefix", "/pollux/stress/test", "--work-dir", filepath.Join(dir, "work"))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	s := string(out)
	t.Logf("pollux-stress:\n%s", s)
	require.Contains(t, s, "3 clients against ")
	require.Regexp(t, `(?m)^whole run, `, s)
	require.Regexp(t, `(?m)^\s+put\s+\d+ ok\s+0 failed`, s)
	require.Contains(t, s, "requests issued 40, acknowledged 40, not acknowledged 0, lost 0, corrupt 0, stuck 0")
	require.Regexp(t, `removed the \d+ files the run left`, s)
	q := in.Run(ctx, nil, "stager_qry", "-M", "/pollux/stress/test/f000000")
	require.Equal(t, 1, q.Code, "the run's files are gone: %s", q.Stdout)

	// Paced, with a burst of 8× the rate: the report says how the burst went and drained,
	// and every operation of it was acknowledged (the service never dropped one silently).
	burst := exec.CommandContext(ctx, filepath.Join(bin, "pollux-stress"), "--stage-host", in.StageHost(), "--token", in.Token,
		"--rate", "4", "--burst-every", "2s", "--burst-for", "1s", "--burst-factor", "8", "--duration", "2500ms", "--clients", "12",
		"--mix", "put=3,get=1", "--max-size", "4096", "--report-every", "1s",
		"--database-url", in.DSN(), "--bin", bin, "--prefix", "/pollux/stress/burst", "--work-dir", filepath.Join(dir, "burst"))
	out, err = burst.CombinedOutput()
	require.NoError(t, err, "%s", out)
	s = string(out)
	t.Logf("pollux-stress with a burst:\n%s", s)
	require.Contains(t, s, "at 4/s, bursts of 8× for 1s every 2s")
	require.Regexp(t, `(?m)^  burst 1 at \S+ for 1s: \d+ operations started \([0-9.]+/s\), \d+ acknowledged.*the last of them ended \S+ after the burst$`, s)
	require.Regexp(t, `not acknowledged 0, lost 0, corrupt 0, stuck 0`, s)

	bad := exec.CommandContext(ctx, filepath.Join(bin, "pollux-stress"), "--stage-host", in.StageHost(), "--mix", "get=1")
	out, err = bad.CombinedOutput()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit)
	require.Equal(t, 2, exit.ExitCode())
	require.Contains(t, string(out), "put must have a weight above 0")
	bad = exec.CommandContext(ctx, filepath.Join(bin, "pollux-stress"), "--stage-host", in.StageHost(), "--burst-every", "10s")
	out, err = bad.CombinedOutput()
	require.ErrorAs(t, err, &exit)
	require.Equal(t, 2, exit.ExitCode())
	require.Contains(t, string(out), "--burst-every needs --rate")
}
