package client

import (
	"bytes"
	"crypto/rand"
	"hash/adler32"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/filemap"
)

// sendMapped sends every byte once, in order, with the sum of them all, across segment
// boundaries and for a file of less than one segment.
func TestSendMappedSendsTheFileWithItsSum(t *testing.T) {
	t.Parallel()
	for _, size := range []int{1, filemap.SegmentSize, 2*filemap.SegmentSize + 5} {
		data := make([]byte, size)
		_, err := rand.Read(data)
		require.NoError(t, err)
		f := fileWith(t, data)
		var out bytes.Buffer
		n, sum, readErr, writeErr := sendMapped(&out, f, int64(size))
		require.NoError(t, readErr)
		require.NoError(t, writeErr)
		require.EqualValues(t, size, n)
		require.Equal(t, Adler32(adler32.Checksum(data)), sum)
		require.True(t, bytes.Equal(data, out.Bytes()), "%d bytes", size)
	}
}

// A file cut short after its pages were hashed faults when the transport copies from its
// mapping: a read error naming the bytes, not a crash of the command.
func TestWriteMappedOfAShrunkFileIsAReadError(t *testing.T) {
	t.Parallel()
	f := fileWith(t, make([]byte, 1000))
	m, err := filemap.Map(int(f.Fd()), 0, 64<<10)
	require.NoError(t, err)
	defer filemap.Unmap(m)
	var out bytes.Buffer // copies what it is given, and so reads the mapping
	_, readErr, writeErr := writeMapped(&out, mappedSegment{m: m, off: 0})
	require.NoError(t, writeErr)
	require.ErrorContains(t, readErr, "the file shrank while it was sent (bytes 0 to 65536 no longer readable: reading bytes 0 to 65536 of the file")
}

// Over a socket, most of a segment goes to write(2) straight from the mapping, and a page
// past the file's new end fails there with EFAULT instead of faulting: the same read error.
func TestWriteMappedOfAShrunkFileToASocketIsAReadError(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, _ = io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	f := fileWith(t, make([]byte, 1000))
	m, err := filemap.Map(int(f.Fd()), 0, 64<<10)
	require.NoError(t, err)
	defer filemap.Unmap(m)
	_, readErr, writeErr := writeMapped(conn, mappedSegment{m: m, off: 0})
	require.NoError(t, writeErr)
	require.ErrorContains(t, readErr, "the file shrank while it was sent (bytes 0 to 65536 no longer readable")
}

func fileWith(t *testing.T, data []byte) *os.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(p, data, 0o600))
	f, err := os.Open(p)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return f
}
