package mover

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/adler32"
	"io"
	"testing"
	"testing/iotest"

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

func TestPumpCopiesAndHashes(t *testing.T) {
	t.Parallel()
	h := NewHandler(Config{})
	for _, size := range []int{0, 1, bufferSize - 1, bufferSize, 3*bufferSize + 5} {
		data := randomBytes(t, size)
		var out bytes.Buffer
		n, sum, readErr, writeErr := h.pump(&out, bytes.NewReader(data), int64(size), nil)
		require.NoError(t, readErr)
		require.NoError(t, writeErr)
		require.EqualValues(t, size, n)
		require.Equal(t, fmt.Sprintf("%08x", adler32.Checksum(data)), sum)
		require.True(t, bytes.Equal(data, out.Bytes()))
	}
}

func TestPumpShortSource(t *testing.T) {
	t.Parallel()
	h := NewHandler(Config{})
	data := randomBytes(t, bufferSize+10)
	var out bytes.Buffer
	n, sum, readErr, writeErr := h.pump(&out, bytes.NewReader(data), 2*bufferSize, nil)
	require.ErrorIs(t, readErr, io.ErrUnexpectedEOF)
	require.NoError(t, writeErr)
	require.EqualValues(t, len(data), n, "every byte that arrived is written")
	require.Empty(t, sum, "no checksum for a partial copy")
}

// A stream of unknown length (a chunked upload) ends at its io.EOF; any other error is
// a stream cut short, even io.ErrUnexpectedEOF after whole blocks.
func TestPumpUnknownSize(t *testing.T) {
	t.Parallel()
	h := NewHandler(Config{})
	for _, size := range []int{0, 1, bufferSize, 2*bufferSize + 7} {
		data := randomBytes(t, size)
		var out bytes.Buffer
		n, sum, readErr, writeErr := h.pump(&out, iotest.HalfReader(bytes.NewReader(data)), -1, nil)
		require.NoError(t, readErr)
		require.NoError(t, writeErr)
		require.EqualValues(t, size, n)
		require.Equal(t, fmt.Sprintf("%08x", adler32.Checksum(data)), sum)
		require.True(t, bytes.Equal(data, out.Bytes()))
	}
	data := randomBytes(t, bufferSize)
	var out bytes.Buffer
	cut := io.MultiReader(bytes.NewReader(data), iotest.ErrReader(io.ErrUnexpectedEOF))
	n, sum, readErr, _ := h.pump(&out, cut, -1, nil)
	require.ErrorIs(t, readErr, io.ErrUnexpectedEOF)
	require.EqualValues(t, len(data), n)
	require.Empty(t, sum)
}

type failingWriter struct{ after int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.after <= 0 {
		return 0, errors.New("disk on fire")
	}
	w.after--
	return len(p), nil
}

func TestPumpWriteErrorUnblocksTheReader(t *testing.T) {
	t.Parallel()
	h := NewHandler(Config{})
	pr, pw := io.Pipe()
	go func() { _, _ = pw.Write(make([]byte, 2*bufferSize)) }() // then the "client" stalls
	unblocked := false
	n, _, _, writeErr := h.pump(&failingWriter{after: 1}, pr, 10*bufferSize, func() {
		unblocked = true
		_ = pr.CloseWithError(errors.New("deadline"))
	})
	require.EqualError(t, writeErr, "disk on fire")
	require.True(t, unblocked)
	require.EqualValues(t, bufferSize, n)
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
