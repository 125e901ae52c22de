package client

import (
	"context"
	"errors"
	"fmt"
	"hash/adler32"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/model/wire"
)

// Moved is what one upload or download moved.
type Moved struct {
	SizeBytes       int64  `json:"size_bytes"`
	ChecksumAdler32 string `json:"checksum_adler32"`
}

var adler32Hex = regexp.MustCompile(`^[0-9a-f]{8}$`)

// Adler32 formats a checksum as Pollux stores it: eight lowercase hex digits.
func Adler32(sum uint32) string { return fmt.Sprintf("%08x", sum) }

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

// Upload sends a local file to a mover (PUT, Authorization: Bearer with the one-time token,
// Content-Length, and X-Pollux-Adler32) and checks that the mover wrote what was sent.
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
	// The checksum goes in a header, ahead of the data: read the file twice rather than
	// hold it in memory.
	h := adler32.New()
	if _, err := io.Copy(h, f); err != nil {
		return Moved{}, localError(err, "read the file to upload")
	}
	sum := Adler32(h.Sum32())
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Moved{}, localError(err, "read the file to upload")
	}
	var body io.Reader = &progressReader{r: f, total: st.Size(), report: progress}
	if st.Size() == 0 {
		body = http.NoBody
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, moverURL, body)
	if err != nil {
		return Moved{}, errorf(wire.ErrorKindInternal, "the mover's address %q is not a URL: %v", moverURL, err)
	}
	req.ContentLength = st.Size()
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set(api.HeaderAdler32, sum)
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Expect", "100-continue")
	resp, err := c.data.Do(req)
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

// Download fetches a file from a mover into local, through a temporary file in the same
// directory renamed into place only once its length (Content-Length) and adler32 (the
// X-Pollux-Adler32 header: the catalogue's, which the mover checked the copy against as it
// sent it) check out: an interrupted or corrupt download never leaves a partial file under
// local's name. The mover cuts the connection when the copy fails its check, so that a
// corrupt download arrives short.
// progress, when not nil, is called with the bytes received so far and the total.
func (c *Client) Download(ctx context.Context, moverURL, token, local string, progress func(done, total int64)) (Moved, error) {
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
	h := adler32.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), &progressReader{r: resp.Body, total: size, report: progress})
	switch {
	case ctx.Err() != nil:
		return Moved{}, ctx.Err()
	case err != nil:
		var pe *os.PathError
		if errors.As(err, &pe) {
			return Moved{}, localError(err, "write "+local)
		}
		return Moved{}, errorf(wire.ErrorKindUnavailable, "download from %s broke off after %d bytes (%v): run the command again", moverURL, n, err)
	case n != size:
		return Moved{}, errorf(wire.ErrorKindUnavailable, "download from %s is truncated: %d of %d bytes: run the command again", moverURL, n, size)
	}
	got := Adler32(h.Sum32())
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

// progressReader reports the bytes read so far after every read.
type progressReader struct {
	r      io.Reader
	n      int64
	total  int64
	report func(done, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if p.report != nil && n > 0 {
		p.report(p.n, p.total)
	}
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
