package filemap

import (
	"crypto/rand"
	"hash/adler32"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func fileWith(t *testing.T, data []byte) *os.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(p, data, 0o600))
	f, err := os.Open(p)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return f
}

// Mapped and read, every range hashes as the standard library hashes its bytes.
func TestHashRangeMatchesReadRange(t *testing.T) {
	t.Parallel()
	data := make([]byte, 2*SegmentSize+11)
	_, err := rand.Read(data)
	require.NoError(t, err)
	f := fileWith(t, data)
	buf := make([]byte, 1<<20)
	for _, r := range [][2]int64{{0, int64(len(data))}, {SegmentSize / 4, 1<<20 + 1}, {SegmentSize, 0}, {SegmentSize, SegmentSize + 11}} {
		mapped, read := adler32.New(), adler32.New()
		require.NoError(t, HashRange(mapped, f, int(f.Fd()), r[0], r[1], buf))
		require.NoError(t, ReadRange(read, f, r[0], r[1], buf))
		require.Equal(t, adler32.Checksum(data[r[0]:r[0]+r[1]]), read.Sum32(), "%v", r)
		require.Equal(t, read.Sum32(), mapped.Sum32(), "%v", r)
	}
	require.ErrorContains(t, ReadRange(adler32.New(), f, 0, int64(len(data))+1, buf), "the file ended at byte")
}

// A mapping past the file's end faults when it is read (SIGBUS): Hash returns that as an
// error naming the bytes, and the process goes on.
func TestHashOfAFaultingMappingIsAnError(t *testing.T) {
	t.Parallel()
	f := fileWith(t, make([]byte, 1000))
	m, err := Map(int(f.Fd()), 0, 64<<10)
	require.NoError(t, err)
	defer Unmap(m)
	require.ErrorContains(t, Hash(adler32.New(), m, 0), "reading bytes 0 to 65536 of the file")
	require.NoError(t, Hash(adler32.New(), m[:1000], 0), "the file's own pages read")
}

// An offset that is not a multiple of the page size cannot be mapped: the error says which
// bytes, and HashRange falls back to reads.
func TestMapRefusesAnUnalignedOffset(t *testing.T) {
	t.Parallel()
	data := make([]byte, 10000)
	_, err := rand.Read(data)
	require.NoError(t, err)
	f := fileWith(t, data)
	_, err = Map(int(f.Fd()), 3, 100)
	require.ErrorContains(t, err, "map bytes 3 to 103 of the file")
	h := adler32.New()
	require.NoError(t, HashRange(h, f, int(f.Fd()), 3, 100, make([]byte, 64)))
	require.Equal(t, adler32.Checksum(data[3:103]), h.Sum32())
}
