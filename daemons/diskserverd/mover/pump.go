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

// pump moves exactly size bytes from src to dst (size < 0: all of src, up to its io.EOF) in
// blocks of bufferSize and computes their adler32. Reading and hashing run in a goroutine
// of their own, a block ahead of writing, so that receiving from the network overlaps with
// writing to disk. n counts the bytes written; sum is set only when all of them were (size
// bytes, or src ended with io.EOF). When a write fails, unblock must make a src.Read in
// progress return; pump returns only once its reader has stopped, so src is not used
// after it.
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
	complete := false
	go func() {
		defer close(full)
		hash := adler32.New()
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
		free <- blk.b[:cap(blk.b)]
	}
	if complete && readErr == nil && writeErr == nil {
		sum = fmt.Sprintf("%08x", checksum)
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
