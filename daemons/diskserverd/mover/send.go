package mover

import (
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/pollux-storage/pollux/framework/adler"
	"github.com/pollux-storage/pollux/framework/filemap"
)

// segmentSize is the unit in which a download is checked and sent. The hasher reads a
// segment through a memory mapping of the copy (framework/filemap) while sendfile sends
// the one before from the page cache, so the pages hashed are the pages sent, and each
// byte is copied once (by the kernel, into the socket) instead of twice (into a buffer,
// then out of it).
const segmentSize = filemap.SegmentSize

// sendAhead is how many segments the hasher may run ahead of sending.
const sendAhead = 2

// The bytes one sendfile call hands to the socket, while a minimum rate is checked
// (policy transfer_min_bytes_per_second over transfer_min_rate_seconds): a call counts its
// bytes only when it returns, so a whole segment to a slow reader would count nothing for
// minutes and a reader above the minimum would be dropped. The step starts at
// firstSendStep, doubles while calls return within a sixteenth of the window (a fast
// reader soon sends whole segments, so sendfile is called no more often than without the
// check), and halves while they take more than an eighth, down to minSendStep (several
// steps per window for a reader at the default minimum of 1 kB/s over 60 s).
const (
	firstSendStep = 256 << 10
	minSendStep   = 16 << 10
)

// checked is a segment the hasher has read: the copy's bytes up to end, or why it could
// not read them; sum is the whole copy's adler32, set with the last segment.
type checked struct {
	end int64
	sum string
	err error
}

// send sends the size bytes of f to w and verifies them against want, the catalogue's
// adler32, on the way: the last segment goes out only once the sum of the whole copy is
// known, and only if it is want, so that a corrupt copy never reaches a client complete.
// start is called once, before the first byte (for a copy that fits one segment, once the
// whole copy checked out, so that a corrupt small copy can still be refused with a status).
// n counts the bytes sent, sum is the copy's adler32 once it was read to its end (it
// differs from want when n < size and there was no other error); readErr is a failure to
// read the copy, writeErr one to send it. moved counts the bytes sent as they go, for the
// minimum-rate check measured over window (0: none; see firstSendStep).
//
// w gets the copy as *io.LimitedReader values over f, from f's offset: http's response
// writer hands those to its connection's ReadFrom, which uses sendfile on Linux, as long as
// nothing wraps w.
func (h *Handler) send(w io.Writer, f *os.File, size int64, want string, start func(), moved *atomic.Int64,
	window time.Duration) (n int64, sum string, readErr, writeErr error) {
	if size == 0 {
		if sum = adler.Hex(adler.Checksum(nil)); sum == want {
			start()
		}
		return 0, sum, nil, nil
	}
	segments := make(chan checked, sendAhead)
	stop := make(chan struct{})
	buf := h.bufs.Get()
	defer h.bufs.Put(buf)
	fd := int(f.Fd()) // here, not in the hasher: f is the sender's
	go func() {
		defer close(segments)
		hash := adler.New()
		for off := int64(0); off < size; {
			end := min(off+segmentSize, size)
			c := checked{end: end}
			if c.err = filemap.HashRange(hash, f, fd, off, end-off, *buf); c.err == nil && end == size {
				c.sum = adler.Hex(hash.Sum32())
			}
			select {
			case segments <- c:
			case <-stop:
				return
			}
			if c.err != nil {
				return
			}
			off = end
		}
	}()
	defer func() {
		close(stop)
		for range segments { // the hasher is done with f and buf once it closed the channel
		}
	}()
	started := false
	step := int64(firstSendStep)
	for c := range segments {
		switch {
		case c.err != nil:
			return n, "", c.err, nil
		case c.end == size:
			if sum = c.sum; sum != want {
				return n, sum, nil, nil
			}
		}
		if !started {
			start()
			started = true
		}
		for n < c.end {
			ask := c.end - n
			if window > 0 {
				ask = min(ask, step)
			}
			began := time.Now()
			k, err := io.Copy(w, &io.LimitedReader{R: f, N: ask})
			n += k
			moved.Add(k)
			switch {
			case err != nil:
				return n, sum, nil, err
			case k < ask:
				// The hasher read these bytes a moment ago: the copy shrank under the mover.
				return n, sum, fmt.Errorf("the copy ended after %d bytes", n), nil
			}
			switch took := time.Since(began); {
			case window == 0:
			case took < window/16 && step < segmentSize:
				step *= 2
			case took > window/8 && step > minSendStep:
				step /= 2
			}
		}
	}
	return n, sum, nil, nil
}
