package client

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/framework/adler"
	"github.com/pollux-storage/pollux/framework/filemap"
	"github.com/pollux-storage/pollux/framework/pump"
	"github.com/pollux-storage/pollux/model/wire"
	"golang.org/x/sys/unix"
)

// Moved is what one upload or download moved.
type Moved struct {
	SizeBytes       int64  `json:"size_bytes"`
	ChecksumAdler32 string `json:"checksum_adler32"`
}

var adler32Hex = regexp.MustCompile(`^[0-9a-f]{8}$`)

// Adler32 formats a checksum as Pollux stores it: eight lowercase hex digits.
func Adler32(sum uint32) string { return adler.Hex(sum) }

// localError classifies a failure on a local file: the user's to fix.
func localError(err error, what string) *Error {
	kind := wire.ErrorKindInvalid
	switch {
	case errors.Is(err, os.ErrNotExist):
		kind = wire.ErrorKindNotFound
	case errors.Is(err, os.ErrPermission):
		kind = wire.ErrorKindPermission
	}
	return errorf(kind, "%s: %v", what, err)
}

// streamFrom is the size from which an upload is streamed: sent chunked as it is read and
// hashed, its adler32 following the data as a trailer and its length declared in
// X-Pollux-Size. A smaller file is read twice, once for the checksum that goes in the
// header ahead of the data and once to send it: for a large one, that first pass alone took
// a fifth of the time of a whole upload, and the mover sat idle through it.
const streamFrom = 4 << 20

// expectFrom is the size from which an upload waits for the mover's 100 Continue before it
// sends its body, so that a refused upload (a wrong token, too large) costs no bytes. A
// smaller body goes at once: the wait is a round trip between two processes, a tenth of a
// millisecond or more on every small upload, to save fewer bytes than the headers'
// answer carries.
const expectFrom = 64 << 10

// blocks are the buffers of this process's large transfers.
var blocks = pump.NewBlocks()

// Upload sends a local file to a mover (PUT, Authorization: Bearer with the one-time token,
// and the checksum: a file under streamFrom with Content-Length and X-Pollux-Adler32, a
// larger one streamed, see streamFrom) and checks that the mover wrote what was sent.
// progress, when not nil, is called with the bytes sent so far and the total.
func (c *Client) Upload(ctx context.Context, moverURL, token, local string, progress func(done, total int64)) (Moved, error) {
	f, err := os.Open(local)
	if err != nil {
		return Moved{}, localError(err, "open the file to upload")
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Moved{}, localError(err, "read the file to upload")
	}
	if !st.Mode().IsRegular() {
		return Moved{}, errorf(wire.ErrorKindInvalid, "%s is not a regular file: only files can be uploaded", local)
	}
	var req *http.Request
	var stream *streamBody
	sum := ""
	if st.Size() >= streamFrom {
		stream = &streamBody{f: f, size: st.Size(), moved: &moved{total: st.Size(), report: progress}}
		if req, err = http.NewRequestWithContext(ctx, http.MethodPut, moverURL, stream); err != nil {
			return Moved{}, errorf(wire.ErrorKindInternal, "the mover's address %q is not a URL: %v", moverURL, err)
		}
		stream.req = req
		req.ContentLength = -1 // chunked, so that the checksum can follow as a trailer
		req.Header.Set(api.HeaderSize, strconv.FormatInt(st.Size(), 10))
		req.Trailer = http.Header{api.HeaderAdler32: nil}
	} else {
		h := adler.New()
		if _, err := io.Copy(h, f); err != nil {
			return Moved{}, localError(err, "read the file to upload")
		}
		sum = Adler32(h.Sum32())
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return Moved{}, localError(err, "read the file to upload")
		}
		var body io.Reader = movedReader{f, &moved{total: st.Size(), report: progress}}
		if st.Size() == 0 {
			body = http.NoBody
		}
		if req, err = http.NewRequestWithContext(ctx, http.MethodPut, moverURL, body); err != nil {
			return Moved{}, errorf(wire.ErrorKindInternal, "the mover's address %q is not a URL: %v", moverURL, err)
		}
		req.ContentLength = st.Size()
		req.Header.Set(api.HeaderAdler32, sum)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/octet-stream")
	if st.Size() >= expectFrom {
		req.Header.Set("Expect", "100-continue")
	}
	resp, err := c.data.Do(req)
	if stream != nil {
		// The sum is set once the body is out, and a mover answers 201 only after reading
		// the trailer that carries it.
		var serr error
		if sum, serr = stream.outcome(); serr != nil && ctx.Err() == nil {
			if resp != nil {
				resp.Body.Close()
			}
			return Moved{}, localError(serr, "read the file to upload")
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return Moved{}, ctx.Err()
		}
		return Moved{}, errorf(wire.ErrorKindUnavailable, "upload to %s: %v: the write failed and its token is spent; run the command again", moverURL, connError(err))
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusCreated {
		return Moved{}, fromBody(resp.StatusCode, b, "the disk server's mover")
	}
	var out api.UploadResponse
	if err := decodeJSON(b, &out); err != nil {
		return Moved{}, errorf(wire.ErrorKindInternal, "the mover's answer to the upload is not readable (%v)", err)
	}
	if out.SizeBytes != st.Size() || out.ChecksumAdler32 != sum {
		return Moved{}, errorf(wire.ErrorKindUnavailable, "the disk server recorded %d bytes with adler32 %s, but %s has %d bytes with adler32 %s (did it change during the upload?): run the command again",
			out.SizeBytes, out.ChecksumAdler32, local, st.Size(), sum)
	}
	return Moved{SizeBytes: out.SizeBytes, ChecksumAdler32: sum}, nil
}

// streamBody is a large upload's body: the file's size bytes, hashed a segment ahead of
// sending (sendMapped; framework/pump's copy where the file cannot be mapped), the sum set
// in the request's trailer once the last segment is out. The transport copies a body that
// is an io.WriterTo through WriteTo, a chunk per segment (4 MiB) or per pump block (1 MiB);
// Read serves any other copy.
type streamBody struct {
	f     *os.File
	size  int64
	req   *http.Request
	moved *moved // what was sent
	hash  hash.Hash32
	// The transport's goroutine sends the body; Do may return before it is done (a mover
	// that answers early): mu guards what Upload reads of it.
	mu  sync.Mutex
	sum string // the adler32 of what was sent, once all of it was
	err error  // why the file could not be read
}

// outcome is what the send of the body came to.
func (b *streamBody) outcome() (sum string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sum, b.err
}

func (b *streamBody) failed(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.err = err
}

func (b *streamBody) WriteTo(w io.Writer) (int64, error) {
	n, sum, readErr, writeErr := sendMapped(movedWriter{w, b.moved}, b.f, b.size)
	if errors.Is(readErr, errNoMapping) {
		n, sum, readErr, writeErr = pump.Copy(movedWriter{w, b.moved}, b.f, b.size, blocks, nil)
	}
	switch {
	case readErr != nil:
		b.failed(readErr)
		return n, readErr
	case writeErr != nil:
		return n, writeErr
	}
	if err := b.changed(); err != nil {
		return n, err
	}
	b.finish(sum)
	return n, nil
}

// changed fails the upload of a file whose size is no longer the one it was stat'ed with:
// the size bytes sent check out against their own sum, and without this the mover would
// store as good a cut-short copy (a file that grew) or one ending in zeros (a file that
// shrank within its last page, which a mapping reads as zeros without a fault). Ending the
// body with an error leaves the stream without its last chunk, which the mover takes for a
// truncated upload.
func (b *streamBody) changed() error {
	st, err := b.f.Stat()
	switch {
	case err != nil:
		err = fmt.Errorf("the file cannot be checked after it was sent: %v", err)
	case st.Size() > b.size:
		err = fmt.Errorf("the file grew from %d bytes while it was sent", b.size)
	case st.Size() < b.size:
		err = fmt.Errorf("the file changed from %d to %d bytes while it was sent", b.size, st.Size())
	default:
		return nil
	}
	b.failed(err)
	return err
}

// errNoMapping is sendMapped's answer when the file system allows no mapping of the file,
// before anything was sent.
var errNoMapping = errors.New("the file cannot be mapped")

// mappedSegment is a segment of the file the hasher mapped and hashed (err: why it could
// not), with the whole file's sum once it is the last.
type mappedSegment struct {
	m   []byte
	off int64
	sum string
	err error
}

// sendMapped writes the size bytes of f to w through read-only mappings of the file
// (framework/filemap), a goroutine hashing a segment while the one before is written: each
// byte is read once from the page cache for the sum and copied once, into the socket,
// where a copy through a buffer reads it into the buffer first (one copy more of every
// byte; about a tenth of a gigabyte upload's CPU on the development machine). Bytes the
// file changes between its hash and its send go out with the sum of what it held before;
// the mover, which sums what it receives, then refuses the upload. n counts the bytes
// written; sum is set once all size bytes were.
func sendMapped(w io.Writer, f *os.File, size int64) (n int64, sum string, readErr, writeErr error) {
	// A descriptor of its own: the transport may still be sending when Upload returns (a
	// mover that answers early) and closes f, and the number of a closed descriptor may
	// by then name another file. It is duplicated under f's own hold (Control fails once f
	// is closing, and f's close waits for it). (A mapping made stays valid without it.)
	fd := -1
	rc, err := f.SyscallConn()
	if err == nil {
		err = rc.Control(func(s uintptr) {
			var derr error
			if fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0); derr != nil {
				fd = -1
			}
		})
	}
	if err != nil || fd < 0 {
		return 0, "", errNoMapping, nil
	}
	defer unix.Close(fd) // after the drain below: the hasher maps through fd
	first, err := filemap.Map(fd, 0, min(filemap.SegmentSize, size))
	if err != nil {
		return 0, "", errNoMapping, nil
	}
	segments := make(chan mappedSegment, 1)
	stop := make(chan struct{})
	go func() {
		defer close(segments)
		h := adler.New()
		m := first
		for off := int64(0); off < size; {
			end := min(off+filemap.SegmentSize, size)
			var err error
			if m == nil {
				select {
				case <-stop: // the sender gave up: map and hash nothing more
					return
				default:
				}
				m, err = filemap.Map(fd, off, end-off)
			}
			if err == nil {
				err = filemap.Hash(h, m, off)
			}
			seg := mappedSegment{m: m, off: off, err: err}
			if err == nil && end == size {
				seg.sum = Adler32(h.Sum32())
			}
			select {
			case segments <- seg:
			case <-stop:
				filemap.Unmap(m)
				return
			}
			if err != nil {
				return
			}
			m, off = nil, end
		}
	}()
	defer func() {
		close(stop)
		for seg := range segments { // the hasher has stopped once it closed the channel
			filemap.Unmap(seg.m)
		}
	}()
	for seg := range segments {
		if seg.err != nil {
			filemap.Unmap(seg.m)
			return n, "", seg.err, nil
		}
		k, rerr, werr := writeMapped(w, seg)
		filemap.Unmap(seg.m)
		n += int64(k)
		if rerr != nil || werr != nil {
			return n, "", rerr, werr
		}
		if seg.sum != "" {
			sum = seg.sum
		}
	}
	return n, sum, nil, nil
}

// writeMapped writes a mapped segment to w. A page the file lost since it was hashed (the
// file cut short under the upload) fails where it is read: where the transport copies from
// the mapping in this process (its buffer, TLS), as a fault, caught here; where it hands
// the mapping to write(2), as EFAULT from the kernel. Either is a read error of this
// upload, not a crash of the command nor a failure of the connection.
func writeMapped(w io.Writer, seg mappedSegment) (k int, readErr, writeErr error) {
	shrank := func(err error) error {
		return fmt.Errorf("the file shrank while it was sent (bytes %d to %d no longer readable: %v)", seg.off, seg.off+int64(len(seg.m)), err)
	}
	if err := filemap.Use(seg.m, seg.off, func() { k, writeErr = w.Write(seg.m) }); err != nil {
		return k, shrank(err), nil
	}
	if errors.Is(writeErr, unix.EFAULT) {
		return k, shrank(writeErr), nil
	}
	return k, nil, writeErr
}

func (b *streamBody) Read(p []byte) (int, error) {
	if b.hash == nil {
		b.hash = adler.New()
	}
	p = p[:min(int64(len(p)), b.size-b.moved.n)]
	if len(p) == 0 {
		if err := b.changed(); err != nil {
			return 0, err
		}
		b.finish(Adler32(b.hash.Sum32()))
		return 0, io.EOF
	}
	k, err := b.f.Read(p)
	b.hash.Write(p[:k])
	b.moved.add(k)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF // the file shrank while it was sent
	}
	if err != nil {
		b.failed(err)
	}
	return k, err
}

// finish publishes the sum: in the trailer, which the transport writes once the body has
// ended.
func (b *streamBody) finish(sum string) {
	b.mu.Lock()
	b.sum = sum
	b.mu.Unlock()
	b.req.Trailer.Set(api.HeaderAdler32, sum)
}

func (b *streamBody) Close() error { return nil }

// Download fetches a file from a mover into local, through a temporary file in the same
// directory renamed into place only once its length (Content-Length) and adler32 (the
// X-Pollux-Adler32 header: the catalogue's, which the mover checked the copy against as it
// sent it) check out: an interrupted or corrupt download never leaves a partial file under
// local's name. The mover cuts the connection when the copy fails its check, so that a
// corrupt download arrives short.
// progress, when not nil, is called with the bytes received so far and the total.
func (c *Client) Download(ctx context.Context, moverURL, token, local string, progress func(done, total int64)) (Moved, error) {
	// A write to the local file that fails ends the copy's read of the body: cancelling
	// the request's context unblocks a read the mover leaves waiting.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, moverURL, nil)
	if err != nil {
		return Moved{}, errorf(wire.ErrorKindInternal, "the mover's address %q is not a URL: %v", moverURL, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.data.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return Moved{}, ctx.Err()
		}
		return Moved{}, errorf(wire.ErrorKindUnavailable, "download from %s: %v: run the command again", moverURL, connError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return Moved{}, fromBody(resp.StatusCode, b, "the disk server's mover")
	}
	// Both are known before the first byte: a mover that sends neither cannot be verified,
	// and nothing is written.
	size := resp.ContentLength
	want := strings.ToLower(resp.Header.Get(api.HeaderAdler32))
	switch {
	case size < 0:
		return Moved{}, errorf(wire.ErrorKindInternal, "the mover sent no Content-Length, so the download cannot be verified: report it to the operator")
	case !adler32Hex.MatchString(want):
		return Moved{}, errorf(wire.ErrorKindInternal, "the mover sent no valid %s (%q), so the download cannot be verified: report it to the operator", api.HeaderAdler32, want)
	}

	tmp, err := os.CreateTemp(filepath.Dir(local), "."+filepath.Base(local)+".pollux-*")
	if err != nil {
		return Moved{}, localError(err, "create the download file")
	}
	keep := false
	defer func() {
		if !keep {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// Received and hashed a block ahead of writing, the file's writeback started as it is
	// written (framework/pump), so that the fsync at the end waits for the last stretch.
	n, got, readErr, writeErr := pump.Copy(movedWriter{pump.NewWriteback(tmp), &moved{total: size, report: progress}},
		resp.Body, size, blocks, cancel)
	switch {
	case writeErr != nil:
		return Moved{}, localError(writeErr, "write "+local)
	case ctx.Err() != nil:
		return Moved{}, ctx.Err()
	case readErr != nil:
		return Moved{}, errorf(wire.ErrorKindUnavailable, "download from %s broke off after %d bytes (%v): run the command again", moverURL, n, readErr)
	case n != size:
		return Moved{}, errorf(wire.ErrorKindUnavailable, "download from %s is truncated: %d of %d bytes: run the command again", moverURL, n, size)
	}
	if got != want {
		return Moved{}, errorf(wire.ErrorKindUnavailable, "download from %s is corrupt: adler32 %s, the disk server says %s: run the command again, and tell the operator if it persists",
			moverURL, got, want)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return Moved{}, localError(err, "write "+local)
	}
	if err := tmp.Sync(); err != nil {
		return Moved{}, localError(err, "write "+local)
	}
	if err := tmp.Close(); err != nil {
		return Moved{}, localError(err, "write "+local)
	}
	if err := os.Rename(tmp.Name(), local); err != nil {
		return Moved{}, localError(err, "write "+local)
	}
	keep = true
	return Moved{SizeBytes: n, ChecksumAdler32: got}, nil
}

// moved counts the bytes a transfer moved and reports them, when asked to, after each step.
type moved struct {
	n, total int64
	report   func(done, total int64)
}

func (m *moved) add(k int) {
	m.n += int64(k)
	if m.report != nil && k > 0 {
		m.report(m.n, m.total)
	}
}

// movedReader counts what is read through it.
type movedReader struct {
	r io.Reader
	*moved
}

func (m movedReader) Read(b []byte) (int, error) {
	n, err := m.r.Read(b)
	m.add(n)
	return n, err
}

// movedWriter counts what is written through it.
type movedWriter struct {
	w io.Writer
	*moved
}

func (m movedWriter) Write(b []byte) (int, error) {
	n, err := m.w.Write(b)
	m.add(n)
	return n, err
}

// humanBytes writes a byte count for people.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
