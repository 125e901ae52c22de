package diskserver_test

import (
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/model"
)

// TestMoverBandwidth compares a PUT and a GET of POLLUX_MOVER_BENCH_MIB MiB (1024 when
// set to 1) through a mover with a plain local copy of the same file (read, write, fsync
// in 1 MiB blocks). It takes a while and loads the disk, so it runs only when asked.
func TestMoverBandwidth(t *testing.T) {
	mib, _ := strconv.Atoi(os.Getenv("POLLUX_MOVER_BENCH_MIB"))
	if mib <= 0 {
		t.Skip("set POLLUX_MOVER_BENCH_MIB to the file size in MiB to measure the mover's bandwidth")
	}
	e := newEnv(t)
	d := e.start("ds-bench", "")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	writeRandom(t, src, int64(mib)<<20)

	plain := timed(t, func() { copyFile(t, src, filepath.Join(dir, "plain")) })
	require.NoError(t, os.Remove(filepath.Join(dir, "plain")))

	req, s := e.ready(model.RequestTypePut, "/pollux/bench")
	put := timed(t, func() {
		f, err := os.Open(src)
		require.NoError(t, err)
		defer f.Close()
		r, err := http.NewRequest(http.MethodPut, *s.MoverURL, f)
		require.NoError(t, err)
		r.ContentLength = int64(mib) << 20
		r.Header.Set("Authorization", "Bearer "+*s.Token)
		resp, err := http.DefaultClient.Do(r)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		require.Equal(t, http.StatusCreated, resp.StatusCode, string(b))
	})
	e.wait(req, model.SubrequestStatusFinished)

	_, g := e.ready(model.RequestTypeGet, "/pollux/bench")
	var sum string
	get := timed(t, func() {
		r, err := http.NewRequest(http.MethodGet, *g.MoverURL, nil)
		require.NoError(t, err)
		r.Header.Set("Authorization", "Bearer "+*g.Token)
		resp, err := http.DefaultClient.Do(r)
		require.NoError(t, err)
		defer resp.Body.Close()
		out, err := os.Create(filepath.Join(dir, "got"))
		require.NoError(t, err)
		defer out.Close()
		// Whole 1 MiB writes, as a client should do: the network hands over much less per read.
		buf := make([]byte, 1<<20)
		var inRead, inWrite time.Duration
		defer func() { t.Logf("GET client: %s reading, %s writing", inRead, inWrite) }()
		for {
			t0 := time.Now()
			n, err := io.ReadFull(resp.Body, buf)
			t1 := time.Now()
			_, werr := out.Write(buf[:n])
			inRead += t1.Sub(t0)
			inWrite += time.Since(t1)
			require.NoError(t, werr)
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			require.NoError(t, err)
		}
		require.NoError(t, out.Sync())
		sum = resp.Trailer.Get(api.HeaderAdler32)
	})
	require.NotEmpty(t, sum)
	require.NoError(t, os.Remove(filepath.Join(dir, "got")))
	// Once more, in the same conditions as the transfers (page cache, dirty memory).
	plain = min(plain, timed(t, func() { copyFile(t, src, filepath.Join(dir, "plain")) }))
	// The mover alone: a client that keeps nothing.
	_, g2 := e.ready(model.RequestTypeGet, "/pollux/bench")
	discard := timed(t, func() {
		r, err := http.NewRequest(http.MethodGet, *g2.MoverURL, nil)
		require.NoError(t, err)
		r.Header.Set("Authorization", "Bearer "+*g2.Token)
		resp, err := http.DefaultClient.Do(r)
		require.NoError(t, err)
		defer resp.Body.Close()
		_, err = io.CopyBuffer(io.Discard, resp.Body, make([]byte, 1<<20))
		require.NoError(t, err)
	})
	rate := func(d time.Duration) float64 { return float64(mib) / d.Seconds() }
	t.Logf("GET to a client that keeps nothing: %.0f MiB/s", rate(discard))
	t.Logf("%d MiB: plain copy %.0f MiB/s, PUT %.0f MiB/s (%.0f %%), GET %.0f MiB/s (%.0f %%)", mib,
		rate(plain), rate(put), 100*plain.Seconds()/put.Seconds(), rate(get), 100*plain.Seconds()/get.Seconds())
	d.shutdown(t)
}

func timed(t *testing.T, fn func()) time.Duration {
	t.Helper()
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
