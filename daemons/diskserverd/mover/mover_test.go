package mover

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/adler32"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/model"
)

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

func TestParseAdler32(t *testing.T) {
	t.Parallel()
	v, err := parseAdler32(" 0A0b0C0d ")
	require.NoError(t, err)
	require.Equal(t, "0a0b0c0d", v)
	for _, bad := range []string{"abc", "0a0b0c0d0", "zzzzzzzz", "-1234567"} {
		_, err := parseAdler32(bad)
		require.ErrorContains(t, err, "is not eight hex digits", bad)
	}
}

func TestTransfersCoordinateJobAndHandler(t *testing.T) {
	t.Parallel()
	ts := NewTransfers()
	tr, ok := ts.Add(7)
	require.True(t, ok)
	_, ok = ts.Add(7)
	require.False(t, ok, "one transfer per subrequest")

	tr.Describe(model.TransferClaimRow{Type: model.RequestTypePut, Path: "/pollux/f", MountPoint: "/data", DiskPath: "1.1", Token: "secret"})
	_, err := tr.open("guess")
	require.ErrorContains(t, err, "does not check", "a wrong token is refused")
	require.True(t, tr.Expire(errors.New("late")), "a refused client does not hold the transfer")
	_, err = tr.open("secret")
	require.ErrorContains(t, err, "is over: late", "once given up, clients are turned away, even with the token")

	// A client that presented the token keeps the job from giving up on it; the token is
	// good once.
	tr3, _ := NewTransfers().Add(9)
	tr3.Describe(model.TransferClaimRow{Type: model.RequestTypeGet, DiskPath: "1.2", Token: "secret"})
	loc, err := tr3.open("secret")
	require.NoError(t, err)
	require.Equal(t, "1.2", loc.DiskPath)
	require.False(t, tr3.Expire(errors.New("late")))
	_, err = tr3.open("secret")
	require.ErrorContains(t, err, "was used already")

	// An abort that comes before the handler started is handed to it.
	tr2, _ := NewTransfers().Add(8)
	tr2.Describe(model.TransferClaimRow{Type: model.RequestTypePut, DiskPath: "1.3", Token: "secret"})
	_, err = tr2.open("secret")
	require.NoError(t, err)
	tr2.Abort(ErrShutdown)
	var got error
	require.ErrorIs(t, tr2.start(func(err error) { got = err }), ErrShutdown)
	tr2.Abort(errors.New("again"))
	require.EqualError(t, got, "again", "a running handler is aborted at once")
	tr2.end(nil)
	<-tr2.Ended()
	require.NoError(t, tr2.Outcome())

	ts.Remove(tr)
	require.Zero(t, ts.Len())
}

func copyFile(t *testing.T, data []byte) *os.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "copy")
	require.NoError(t, os.WriteFile(path, data, 0o644))
	f, err := os.Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return f
}

// send checks a copy while it sends it, and holds the last segment back until the whole
// sum matched; over TCP it goes through sendfile, into a buffer through plain reads.
func TestSendVerifies(t *testing.T) {
	t.Parallel()
	h := NewHandler(Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	// window > 0 sends in steps, as for a download under a minimum rate: a minute lets the
	// steps grow, a nanosecond keeps them at their smallest. Either way every byte sent is
	// counted in moved.
	type sendFunc func(*testing.T, *os.File, int64, string, func()) ([]byte, int64, string, error, error)
	overTCP := func(window time.Duration) sendFunc {
		return func(t *testing.T, f *os.File, size int64, want string, start func()) (got []byte, n int64, sum string, readErr, writeErr error) {
			conn, err := net.Dial("tcp", ln.Addr().String())
			require.NoError(t, err)
			peer, err := ln.Accept()
			require.NoError(t, err)
			received := make(chan []byte)
			go func() { b, _ := io.ReadAll(peer); peer.Close(); received <- b }()
			var moved atomic.Int64
			n, sum, readErr, writeErr = h.send(conn, f, size, want, start, &moved, window)
			conn.Close()
			require.Equal(t, n, moved.Load(), "every byte sent is counted")
			return <-received, n, sum, readErr, writeErr
		}
	}
	inBuffer := func(window time.Duration) sendFunc {
		return func(t *testing.T, f *os.File, size int64, want string, start func()) (got []byte, n int64, sum string, readErr, writeErr error) {
			var out bytes.Buffer
			var moved atomic.Int64
			n, sum, readErr, writeErr = h.send(&out, f, size, want, start, &moved, window)
			require.Equal(t, n, moved.Load(), "every byte sent is counted")
			return out.Bytes(), n, sum, readErr, writeErr
		}
	}
	for name, send := range map[string]sendFunc{"tcp": overTCP(0), "buffer": inBuffer(0),
		"tcp stepped": overTCP(time.Minute), "buffer stepped": inBuffer(time.Minute), "buffer smallest steps": inBuffer(time.Nanosecond)} {
		for _, size := range []int{0, 1, segmentSize, 2*segmentSize + 3} {
			data := randomBytes(t, size)
			sum := fmt.Sprintf("%08x", adler32.Checksum(data))
			started := 0
			got, n, gotSum, readErr, writeErr := send(t, copyFile(t, data), int64(size), sum, func() { started++ })
			require.NoError(t, readErr, name)
			require.NoError(t, writeErr, name)
			require.EqualValues(t, size, n, name)
			require.Equal(t, sum, gotSum, name)
			require.True(t, bytes.Equal(data, got), "%s: %d bytes", name, size)
			require.Equal(t, 1, started, name)

			// Against a catalogue that says otherwise, everything but the last segment goes.
			started = 0
			got, n, gotSum, readErr, writeErr = send(t, copyFile(t, data), int64(size), "00000000", func() { started++ })
			require.NoError(t, readErr, name)
			require.NoError(t, writeErr, name)
			require.Equal(t, sum, gotSum, "%s: the sum found is returned", name)
			last := size % segmentSize
			if last == 0 {
				last = min(size, segmentSize)
			}
			require.EqualValues(t, size-last, n, "%s %d: the last segment is held back", name, size)
			require.True(t, bytes.Equal(data[:size-last], got), name)
			require.Equal(t, min(size-last, 1), started, "%s %d: a copy of one segment is refused before the header", name, size)
		}
	}
}

// A copy that shrank under the mover by more than a page faults when its mapping is read
// (SIGBUS): that is a read error for the transfer, not a crash of the daemon.
func TestSendShrunkCopy(t *testing.T) {
	t.Parallel()
	h := NewHandler(Config{})
	data := randomBytes(t, 1000)
	var out bytes.Buffer
	started := false
	n, sum, readErr, _ := h.send(&out, copyFile(t, data), 64<<10, "00000000", func() { started = true }, new(atomic.Int64), 0)
	require.ErrorContains(t, readErr, "reading bytes 0 to 65536 of the file")
	require.Empty(t, sum)
	require.Zero(t, n)
	require.False(t, started)
}
