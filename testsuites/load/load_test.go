package load_test

import (
	"context"
	"flag"
	"fmt"
	"hash/adler32"
	"io/fs"
	"os"
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
