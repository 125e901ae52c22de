package diskserver_test

import (
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/model"
)

// TestMoverBandwidth compares transfers of POLLUX_MOVER_BENCH_MIB MiB through a mover
// with a plain local copy of the same file (read, write, fsync in 1 MiB blocks): a PUT
// from the file, a GET into a file, and a GET whose client keeps nothing (the mover's
// side alone). Client and mover share the machine, so on a small one they compete for
// its cores. It takes a while and loads the disk, so it runs only when asked; the data
// directory is under TMPDIR.
func TestMoverBandwidth(t *testing.T) {
	mib, _ := strconv.Atoi(os.Getenv("POLLUX_MOVER_BENCH_MIB"))
	if mib <= 0 {
		t.Skip("set POLLUX_MOVER_BENCH_MIB to the file size in MiB to measure the mover's bandwidth")
	}
	size := int64(mib) << 20
	e := newEnv(t)
	d := e.start("ds-bench", "")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	writeRandom(t, src, size)
	plainCopy := func() time.Duration {
		defer os.Remove(filepath.Join(dir, "plain"))
		return timed(func() { copyFile(t, src, filepath.Join(dir, "plain")) })
	}
	plain := plainCopy()

	req, s := e.ready(model.RequestTypePut, "/pollux/bench")
	put := timed(func() {
		f, err := os.Open(src)
		require.NoError(t, err)
		defer f.Close()
		resp, body := call(t, http.MethodPut, *s.MoverURL, *s.Token, f, nil)
		require.Equal(t, http.StatusCreated, resp.StatusCode, string(body))
	})
	e.wait(req, model.SubrequestStatusFinished)

	get := func(keep bool) time.Duration {
		_, g := e.ready(model.RequestTypeGet, "/pollux/bench")
		return timed(func() {
			r, err := http.NewRequest(http.MethodGet, *g.MoverURL, nil)
			require.NoError(t, err)
			r.Header.Set("Authorization", "Bearer "+*g.Token)
			resp, err := http.DefaultClient.Do(r)
			require.NoError(t, err)
			defer resp.Body.Close()
			if !keep {
				_, err = io.CopyBuffer(io.Discard, resp.Body, make([]byte, 1<<20))
				require.NoError(t, err)
				return
			}
			out, err := os.Create(filepath.Join(dir, "got"))
			require.NoError(t, err)
			defer os.Remove(out.Name())
			defer out.Close()
			// Whole 1 MiB writes, as a client should make them: a read from the network
			// returns far less.
			buf := make([]byte, 1<<20)
			for {
				n, err := io.ReadFull(resp.Body, buf)
				_, werr := out.Write(buf[:n])
				require.NoError(t, werr)
				if err == io.EOF || err == io.ErrUnexpectedEOF {
					break
				}
				require.NoError(t, err)
			}
			require.NoError(t, out.Sync())
			require.NotEmpty(t, resp.Header.Get(api.HeaderAdler32))
		})
	}
	getFile := get(true)
	// On a shared machine the rates are noise; the CPU a download costs (this process
	// runs the mover, the client and the disk server's database calls) is what a change
	// of the send path moves.
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(0, &ru0)
	getDiscard := get(false)
	_ = syscall.Getrusage(0, &ru1)
	t.Logf("CPU of the GET whose client keeps nothing (mover + client + database): user %v sys %v",
		time.Duration(ru1.Utime.Nano()-ru0.Utime.Nano()), time.Duration(ru1.Stime.Nano()-ru0.Stime.Nano()))
	// Once more, now that the page cache and dirty memory are as the transfers found them.
	plain = min(plain, plainCopy())

	rate := func(d time.Duration) string {
		return strconv.Itoa(int(float64(mib)/d.Seconds())) + " MiB/s (" + strconv.Itoa(int(100*plain.Seconds()/d.Seconds())) + " %)"
	}
	t.Logf("%d MiB: plain copy %d MiB/s; PUT %s; GET into a file %s; GET, client keeps nothing %s",
		mib, int(float64(mib)/plain.Seconds()), rate(put), rate(getFile), rate(getDiscard))
	d.shutdown(t)
}

func timed(fn func()) time.Duration {
	start := time.Now()
	fn()
	return time.Since(start)
}

func writeRandom(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	rng := rand.NewChaCha8([32]byte{1})
	buf := make([]byte, 1<<20)
	for n := int64(0); n < size; n += int64(len(buf)) {
		_, _ = rng.Read(buf)
		_, err := f.Write(buf)
		require.NoError(t, err)
	}
	require.NoError(t, f.Sync())
}

// copyFile is the plain local copy the mover is measured against.
func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	require.NoError(t, err)
	defer in.Close()
	out, err := os.Create(to)
	require.NoError(t, err)
	defer out.Close()
	buf := make([]byte, 1<<20)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			_, werr := out.Write(buf[:n])
			require.NoError(t, werr)
		}
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
	}
	require.NoError(t, out.Sync())
}
