package pump

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/adler32"
	"io"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"
)

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

func TestCopyCopiesAndHashes(t *testing.T) {
	t.Parallel()
	blocks := NewBlocks()
	for _, size := range []int{0, 1, BlockSize - 1, BlockSize, 3*BlockSize + 5} {
		data := randomBytes(t, size)
		var out bytes.Buffer
		n, sum, readErr, writeErr := Copy(&out, bytes.NewReader(data), int64(size), blocks, nil)
		require.NoError(t, readErr)
		require.NoError(t, writeErr)
		require.EqualValues(t, size, n)
		require.Equal(t, fmt.Sprintf("%08x", adler32.Checksum(data)), sum)
		require.True(t, bytes.Equal(data, out.Bytes()))
	}
}

func TestCopyShortSource(t *testing.T) {
	t.Parallel()
	data := randomBytes(t, BlockSize+10)
	var out bytes.Buffer
	n, sum, readErr, writeErr := Copy(&out, bytes.NewReader(data), 2*BlockSize, NewBlocks(), nil)
	require.ErrorIs(t, readErr, io.ErrUnexpectedEOF)
	require.NoError(t, writeErr)
	require.EqualValues(t, len(data), n, "every byte that arrived is written")
	require.Empty(t, sum, "no checksum for a partial copy")
}

// A stream of unknown length (a chunked upload) ends at its io.EOF; any other error is
// a stream cut short, even io.ErrUnexpectedEOF after whole blocks.
func TestCopyUnknownSize(t *testing.T) {
	t.Parallel()
	blocks := NewBlocks()
	for _, size := range []int{0, 1, BlockSize, 2*BlockSize + 7} {
		data := randomBytes(t, size)
		var out bytes.Buffer
		n, sum, readErr, writeErr := Copy(&out, iotest.HalfReader(bytes.NewReader(data)), -1, blocks, nil)
		require.NoError(t, readErr)
		require.NoError(t, writeErr)
		require.EqualValues(t, size, n)
		require.Equal(t, fmt.Sprintf("%08x", adler32.Checksum(data)), sum)
		require.True(t, bytes.Equal(data, out.Bytes()))
	}
	data := randomBytes(t, BlockSize)
	var out bytes.Buffer
	cut := io.MultiReader(bytes.NewReader(data), iotest.ErrReader(io.ErrUnexpectedEOF))
	n, sum, readErr, _ := Copy(&out, cut, -1, blocks, nil)
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

func TestCopyWriteErrorUnblocksTheReader(t *testing.T) {
	t.Parallel()
	pr, pw := io.Pipe()
	go func() { _, _ = pw.Write(make([]byte, 2*BlockSize)) }() // then the "client" stalls
	unblocked := false
	n, _, _, writeErr := Copy(&failingWriter{after: 1}, pr, 10*BlockSize, NewBlocks(), func() {
		unblocked = true
		_ = pr.CloseWithError(errors.New("deadline"))
	})
	require.EqualError(t, writeErr, "disk on fire")
	require.True(t, unblocked)
	require.EqualValues(t, BlockSize, n)
}

// A file written through Writeback holds exactly what was written, across the chunks
// whose writeback it started and the rest.
func TestWritebackWritesTheFile(t *testing.T) {
	t.Parallel()
	data := randomBytes(t, 2*WritebackChunk+BlockSize+3)
	f, err := os.Create(filepath.Join(t.TempDir(), "copy"))
	require.NoError(t, err)
	defer f.Close()
	w := NewWriteback(f)
	n, sum, readErr, writeErr := Copy(w, bytes.NewReader(data), int64(len(data)), NewBlocks(), nil)
	require.NoError(t, readErr)
	require.NoError(t, writeErr)
	require.EqualValues(t, len(data), n)
	require.Equal(t, fmt.Sprintf("%08x", adler32.Checksum(data)), sum)
	require.EqualValues(t, 2*WritebackChunk, w.started, "the writeback of each whole chunk was started")
	require.NoError(t, f.Sync())
	got, err := os.ReadFile(f.Name())
	require.NoError(t, err)
	require.True(t, bytes.Equal(data, got))
}
