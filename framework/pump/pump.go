// Package pump moves a stream into a writer in large blocks and computes its adler32 on the
// way, reading and hashing a block ahead of writing, so that receiving from the network
// overlaps with writing to disk; and it starts the kernel's writeback of a file as the file
// is written (Writeback), so that the fsync at the end waits for the last stretch only. The
// disk server's mover receives uploads through it and the client receives downloads
// through it (and sends large uploads through it where the file cannot be mapped: see
// framework/filemap).
package pump

import (
	"io"
	"sync"

	"github.com/pollux-storage/pollux/framework/adler"
)

// BlockSize is the unit of every read and write: large enough that system calls and
// hashing calls are few per gigabyte.
const BlockSize = 1 << 20

// depth is how many blocks a copy holds: one being read while the others are written.
const depth = 2

// Blocks is a pool of BlockSize buffers, shared by the copies of one process.
type Blocks struct{ p sync.Pool }

// NewBlocks returns an empty pool.
func NewBlocks() *Blocks {
	b := &Blocks{}
	b.p.New = func() any { buf := make([]byte, BlockSize); return &buf }
	return b
}

// Get returns a block of BlockSize bytes.
func (b *Blocks) Get() *[]byte { return b.p.Get().(*[]byte) }

// Put returns a block to the pool.
func (b *Blocks) Put(buf *[]byte) { b.p.Put(buf) }

type block struct {
	b   []byte
	err error
}

// Copy moves exactly size bytes from src to dst (size < 0: all of src, up to its io.EOF) in
// blocks of BlockSize and computes their adler32. Reading and hashing run in a goroutine of
// their own, a block ahead of writing. n counts the bytes written; sum (8 lowercase hex
// digits) is set only when all of them were (size bytes, or src ended with io.EOF). When a
// write fails, unblock (when not nil) must make a src.Read in progress return; Copy returns
// only once its reader has stopped, so src is not used after it.
func Copy(dst io.Writer, src io.Reader, size int64, blocks *Blocks, unblock func()) (n int64, sum string, readErr, writeErr error) {
	free := make(chan []byte, depth)
	for range depth {
		b := blocks.Get()
		defer blocks.Put(b)
		free <- *b
	}
	full := make(chan block, depth)
	stop := make(chan struct{})
	var checksum uint32
	complete := false
	go func() {
		defer close(full)
		hash := adler.New()
		for read := int64(0); size < 0 || read < size; {
			var b []byte
			select {
			case <-stop:
				return
			case b = <-free:
			}
			if size >= 0 {
				b = b[:min(int64(cap(b)), size-read)]
			}
			// Whole blocks keep the writes large, whatever sizes the network delivers in.
			m, err := fill(src, b)
			hash.Write(b[:m])
			read += int64(m)
			switch {
			case err != nil && size >= 0 && read == size:
				err = nil // everything asked for arrived; what src says next does not matter
			case err == io.EOF && size < 0:
				// The end of a stream of unknown length: the normal way out.
				checksum, complete = hash.Sum32(), true // published by close(full)
				full <- block{b[:m], nil}
				return
			case err == io.EOF:
				err = io.ErrUnexpectedEOF // fewer than size bytes
			}
			full <- block{b[:m], err}
			if err != nil {
				return
			}
		}
		checksum, complete = hash.Sum32(), true
	}()
	for blk := range full {
		if writeErr == nil && len(blk.b) > 0 {
			if _, err := dst.Write(blk.b); err != nil {
				writeErr = err
				close(stop)
				if unblock != nil {
					unblock()
				}
			} else {
				n += int64(len(blk.b))
			}
		}
		if blk.err != nil && readErr == nil {
			readErr = blk.err
		}
		free <- blk.b[:cap(blk.b)] // never blocks: free holds every block there is
	}
	if complete && readErr == nil && writeErr == nil {
		sum = adler.Hex(checksum)
	}
	return n, sum, readErr, writeErr
}

// fill reads into all of b unless src fails or ends first; unlike io.ReadFull it returns
// src's own error, so that a stream's clean end (io.EOF) stays apart from one cut short
// (a chunked body's io.ErrUnexpectedEOF).
func fill(src io.Reader, b []byte) (int, error) {
	m := 0
	for m < len(b) {
		k, err := src.Read(b[m:])
		m += k
		if err != nil {
			return m, err
		}
	}
	return m, nil
}
