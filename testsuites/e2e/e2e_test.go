package e2e_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"hash/adler32"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/pgcluster"
	"github.com/pollux-storage/pollux/schema/schematest"
	"github.com/pollux-storage/pollux/testsuites/e2e"
)

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pollux-e2e-bin")
	if err != nil {
		panic(err)
	}
	bin = dir
	root, err := pgcluster.RepoRoot()
	if err == nil {
		err = e2e.Build(root, dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	closeHosts()
	os.RemoveAll(dir)
	os.Exit(code)
}

func start(t *testing.T, o e2e.Options) (*e2e.Instance, context.Context) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end suite starts a whole instance as processes; -short leaves it out")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	o.Bin, o.DSN, o.Dir = bin, schematest.DSN(t), t.TempDir()
	in, err := e2e.Start(ctx, o)
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(in.Logs(40))
		}
		in.Stop()
	})
	return in, ctx
}

func randomFile(t *testing.T, dir, name string, size int) (string, []byte) {
	t.Helper()
	b := make([]byte, size)
	_, _ = rand.Read(b)
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, b, 0o644))
	return p, b
}

func ok(t *testing.T, r e2e.Result) e2e.Result {
	t.Helper()
	require.Equal(t, 0, r.Code, "stdout: %s\nstderr: %s", r.Stdout, r.Stderr)
	return r
}

func TestEveryRequestTypeWithRealFiles(t *testing.T) {
	t.Parallel()
	in, ctx := start(t, e2e.Options{})
	dir := t.TempDir()

	// pollux cp both ways: put + upload + close, then get + download.
	src, data := randomFile(t, dir, "big", 3<<20+17)
	ok(t, in.Run(ctx, nil, "pollux", "cp", src, "/pollux/e2e/big"))
	sum := fmt.Sprintf("%08x", adler32.Checksum(data))
	q := ok(t, in.Run(ctx, nil, "stager_qry", "-M", "/pollux/e2e/big"))
	require.Equal(t, fmt.Sprintf("/pollux/e2e/big STAGED %d %s", len(data), sum), strings.TrimSpace(q.Stdout))
	back := filepath.Join(dir, "big.back")
	ok(t, in.Run(ctx, nil, "pollux", "cp", "/pollux/e2e/big", back))
	got, err := os.ReadFile(back)
	require.NoError(t, err)
	require.True(t, bytes.Equal(data, got), "downloaded bytes differ")

	// stager_put --file writes but leaves the file open until stager_putdone.
	small, sdata := randomFile(t, dir, "small", 1000)
	ok(t, in.Run(ctx, nil, "stager_put", "-M", "/pollux/e2e/small", "--file", small))
	q = ok(t, in.Run(ctx, nil, "stager_qry", "-M", "/pollux/e2e/small"))
	require.Contains(t, q.Stdout, "STAGEOUT")
	ok(t, in.Run(ctx, nil, "stager_putdone", "-M", "/pollux/e2e/small"))
	q = ok(t, in.Run(ctx, nil, "stager_qry", "-M", "/pollux/e2e/small"))
	require.Contains(t, q.Stdout, "STAGED")
	ok(t, in.Run(ctx, nil, "stager_prepareToGet", "-M", "/pollux/e2e/small"))
	ok(t, in.Run(ctx, nil, "stager_get", "-M", "/pollux/e2e/small", "--file", filepath.Join(dir, "small.back")))
	got, err = os.ReadFile(filepath.Join(dir, "small.back"))
	require.NoError(t, err)
	require.Equal(t, sdata, got)

	// rm, then qry and get say "no such file" with the user-error exit code.
	ok(t, in.Run(ctx, nil, "stager_rm", "-M", "/pollux/e2e/small"))
	r := in.Run(ctx, nil, "stager_qry", "-M", "/pollux/e2e/small")
	require.Equal(t, 1, r.Code, r.Stderr)
	require.Contains(t, r.Stderr+r.Stdout, "no such file")
	r = in.Run(ctx, nil, "pollux", "cp", "/pollux/e2e/small", filepath.Join(dir, "x"))
	require.Equal(t, 1, r.Code, r.Stderr)
	require.Contains(t, r.Stderr+r.Stdout, "no such file")

	// A bad path is refused with its reason and the user-error code.
	r = in.Run(ctx, nil, "stager_put", "-M", "/etc/passwd")
	require.Equal(t, 1, r.Code)
	require.Contains(t, r.Stderr, "outside the namespace")
}

func TestManyInstancesConcurrentClients(t *testing.T) {
	t.Parallel()
	in, ctx := start(t, e2e.Options{RHDs: 2, Stagers: 2, JobManagers: 2, Schedulers: 2, DiskServers: 2})
	dir := t.TempDir()
	const clients = 12
	var wg sync.WaitGroup
	errs := make(chan string, clients)
	for i := range clients {
		// On the test's goroutine: randomFile stops the test when it fails.
		src, data := randomFile(t, dir, fmt.Sprintf("f%d", i), 64<<10+i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			remote := fmt.Sprintf("/pollux/many/f%d", i)
			if r := in.Run(ctx, nil, "pollux", "cp", src, remote); r.Code != 0 {
				errs <- fmt.Sprintf("put %s: %d %s", remote, r.Code, r.Stderr)
				return
			}
			back := src + ".back"
			if r := in.Run(ctx, nil, "pollux", "cp", remote, back); r.Code != 0 {
				errs <- fmt.Sprintf("get %s: %d %s", remote, r.Code, r.Stderr)
				return
			}
			if got, _ := os.ReadFile(back); !bytes.Equal(got, data) {
				errs <- "content differs for " + remote
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestNoDiskServerQueuesThenServes(t *testing.T) {
	t.Parallel()
	in, ctx := start(t, e2e.Options{DiskServers: -1})
	dir := t.TempDir()
	src, data := randomFile(t, dir, "f", 5000)

	put := in.Go(ctx, nil, "pollux", "cp", src, "/pollux/queued/f")
	// The client says why it waits rather than hanging silently; the disk server comes
	// once it has said it.
	said, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	require.NoError(t, put.WaitStderr(said, "queued, no disk server of its service class is available"))
	require.NoError(t, in.AddDiskServer(ctx, "late-disk"))
	ok(t, put.Wait())
	back := filepath.Join(dir, "back")
	ok(t, in.Run(ctx, nil, "pollux", "cp", "/pollux/queued/f", back))
	got, _ := os.ReadFile(back)
	require.Equal(t, data, got)
}

func TestKill9OfDaemonsLosesNothing(t *testing.T) {
	t.Parallel()
	in, ctx := start(t, e2e.Options{Stagers: 2, JobManagers: 2, Schedulers: 2})
	dir := t.TempDir()
	put := func(i int) e2e.Result {
		src, _ := randomFile(t, dir, fmt.Sprintf("k%d", i), 10000)
		return in.Run(ctx, nil, "pollux", "cp", src, fmt.Sprintf("/pollux/kill/k%d", i))
	}
	ok(t, put(0))
	// One of each claiming daemon dies without a chance to clean up; its peers carry on.
	for _, name := range []string{"stagerd1", "jobmanagerd1", "schedulerd1"} {
		in.Kill(name, syscall.SIGKILL)
	}
	for i := 1; i <= 5; i++ {
		ok(t, put(i))
	}
	// And coming back is just starting again.
	require.NoError(t, in.Restart(ctx, "stagerd1"))
	ok(t, put(6))
}
