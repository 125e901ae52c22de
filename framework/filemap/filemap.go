// Package filemap reads a file through read-only memory mappings, a segment at a time, so
// that a process that hashes a file and then hands it on (to a socket, by write or by
// sendfile) touches the page cache's own pages instead of copying them into a buffer first.
// The disk server's mover checks a copy it sends this way, and the client sends a large
// upload this way.
//
// A mapped page that cannot be read (a bad disk, a file cut short under the mapping) faults
// with SIGBUS instead of returning an error; Hash turns that fault into an error for its
// caller alone, so that a bad file fails one transfer, not the process.
package filemap

import (
	"fmt"
	"hash"
	"io"
	"os"
	"runtime/debug"
	"syscall"
)

// SegmentSize is the unit a file is mapped in: large enough that mappings are few per
// gigabyte, small enough that a segment being hashed and one being sent fit in a few
// megabytes of address space. A multiple of the page size, as mapping offsets must be.
const SegmentSize = 4 << 20

// Map maps n bytes of the file open as fd from off (a multiple of the page size)
// read-only, and asks the kernel to read them ahead: for a file not in the page cache, one
// large read rather than a fault per page. It fails where the file system allows no
// mapping; callers then read with ReadAt. A mapping of zero bytes is nil. Unmap releases it.
// (The descriptor, not the *os.File: the goroutine that maps need not be the file's owner.)
func Map(fd int, off, n int64) ([]byte, error) {
	if n == 0 {
		return nil, nil
	}
	m, err := syscall.Mmap(fd, off, int(n), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map bytes %d to %d of the file: %w", off, off+n, err)
	}
	_ = syscall.Madvise(m, syscall.MADV_WILLNEED)
	return m, nil
}

// Unmap releases a mapping Map returned.
func Unmap(m []byte) {
	if m != nil {
		_ = syscall.Munmap(m)
	}
}

// Hash adds m, a mapping of a file's bytes from off, to h. A page that faults is returned
// as an error naming the bytes, not a crash.
func Hash(h hash.Hash32, m []byte, off int64) error {
	return Use(m, off, func() { h.Write(m) })
}

// Use runs fn, which reads m, a mapping of a file's bytes from off (directly, or by handing
// it to code that copies from it). A page that faults while fn runs ends fn and is returned
// as an error naming the bytes. fn runs on the calling goroutine, which alone is affected.
func Use(m []byte, off int64, fn func()) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if _, fault := r.(interface{ Addr() uintptr }); !fault {
				panic(r)
			}
			err = fmt.Errorf("reading bytes %d to %d of the file: %v", off, off+int64(len(m)), r)
		}
	}()
	fn()
	return nil
}

// HashRange adds n bytes of f (open as fd) from off to h: through a mapping where the
// file system allows one, with ReadAt into buf otherwise.
func HashRange(h hash.Hash32, f *os.File, fd int, off, n int64, buf []byte) error {
	m, err := Map(fd, off, n)
	if err != nil {
		return ReadRange(h, f, off, n, buf)
	}
	defer Unmap(m)
	return Hash(h, m, off)
}

// ReadRange adds n bytes of f from off to h, read with ReadAt into buf.
func ReadRange(h hash.Hash32, f *os.File, off, n int64, buf []byte) error {
	for n > 0 {
		k, err := f.ReadAt(buf[:min(int64(len(buf)), n)], off)
		h.Write(buf[:k])
		off, n = off+int64(k), n-int64(k)
		if err != nil && n > 0 {
			if err == io.EOF {
				return fmt.Errorf("the file ended at byte %d", off)
			}
			return err
		}
	}
	return nil
}
