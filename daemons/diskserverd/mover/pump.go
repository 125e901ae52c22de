package mover

import (
	"fmt"
	"hash/adler32"
	"io"
)

// pumpDepth is how many blocks a transfer holds: one being read while the others are
// written.
const pumpDepth = 2

type block struct {
	b   []byte
	err error
}

// pump moves exactly size bytes from src to dst in blocks of bufferSize and computes
// their adler32. Reading and hashing run in a goroutine of their own, a block ahead of
// writing, so that receiving from the network overlaps with writing to disk (and reading
// from disk with sending). n counts the bytes written; sum is set only when all size
// bytes were. When a write fails, unblock must make a src.Read in progress return; pump
// returns only once its reader has stopped, so src is not used after it.
func (h *Handler) pump(dst io.Writer, src io.Reader, size int64, unblock func()) (n int64, sum string, readErr, writeErr error) {
	free := make(chan []byte, pumpDepth)
	for range pumpDepth {
		b := h.bufs.Get().(*[]byte)
		defer h.bufs.Put(b)
		free <- *b
	}
	full := make(chan block, pumpDepth)
	stop := make(chan struct{})
	var checksum uint32
	go func() {
		defer close(full)
		hash := adler32.New()
		for read := int64(0); read < size; {
			var b []byte
			select {
			case <-stop:
				return
			case b = <-free:
			}
			b = b[:min(int64(cap(b)), size-read)]
			// Whole blocks keep the writes large, whatever sizes the network delivers in.
			m, err := io.ReadFull(src, b)
			hash.Write(b[:m])
			read += int64(m)
			if err != nil && m == len(b) {
				err = nil
			}
			full <- block{b[:m], err}
			if err != nil {
				return
			}
		}
		checksum = hash.Sum32() // published by close(full)
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
		free <- blk.b[:cap(blk.b)]
	}
	if readErr == nil && writeErr == nil && n == size {
		sum = fmt.Sprintf("%08x", checksum)
	}
	return n, sum, readErr, writeErr
}
