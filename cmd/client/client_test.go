package client_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"hash/adler32"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/cmd/client"
	"github.com/pollux-storage/pollux/daemons/rhd/api"
)

func writeRandom(t *testing.T, size int) (string, []byte) {
	t.Helper()
	data := make([]byte, size)
	_, _ = rand.Read(data)
	path := filepath.Join(t.TempDir(), "local.dat")
	require.NoError(t, os.WriteFile(path, data, 0o644))
	return path, data
}

func TestCopyInAndOut(t *testing.T) {
	t.Parallel()
	c := newCluster(t, true)
	src, data := writeRandom(t, 300_000)
	sum := client.Adler32(adler32.Checksum(data))

	up := c.run(client.Pollux, nil, "cp", src, "pollux:/pollux/u/alice/")
	require.Equal(t, 0, up.code, up.stderr)
	require.Contains(t, up.stdout, fmt.Sprintf("%s -> /pollux/u/alice/local.dat: 300000 bytes, adler32 %s", src, sum))
	require.NotContains(t, up.stderr, "\r", "no progress bar when stderr is not a terminal")
	bar := c.runOnTerminal(client.Pollux, "cp", src, "/pollux/u/alice/bar.dat")
	require.Equal(t, 0, bar.code, bar.stderr)
	require.Regexp(t, `\rbar\.dat  293\.0 KiB / 293\.0 KiB  100%  [0-9.]+ [KMG]?i?B/s`, bar.stderr, "a progress bar on a terminal")

	q := c.run(client.Qry, nil, "-M", "/pollux/u/alice/local.dat")
	require.Equal(t, 0, q.code, q.stderr)
	require.Equal(t, fmt.Sprintf("/pollux/u/alice/local.dat STAGED 300000 %s\n", sum), q.stdout, "closed without stager_putdone")

	dir := t.TempDir()
	down := c.run(client.Pollux, nil, "cp", "--json", "/pollux/u/alice/local.dat", dir)
	require.Equal(t, 0, down.code, down.stderr)
	var out struct {
		Destination     string `json:"destination"`
		SizeBytes       int64  `json:"size_bytes"`
		ChecksumAdler32 string `json:"checksum_adler32"`
	}
	require.NoError(t, json.Unmarshal([]byte(down.stdout), &out), down.stdout)
	require.Equal(t, filepath.Join(dir, "local.dat"), out.Destination)
	require.EqualValues(t, 300000, out.SizeBytes)
	require.Equal(t, sum, out.ChecksumAdler32)
	got, err := os.ReadFile(out.Destination)
	require.NoError(t, err)
	require.True(t, bytes.Equal(data, got))
	require.Empty(t, down.stderr, "--json keeps stderr quiet")

	// A corrupt download fails as a service error and leaves nothing under the name.
	c.corrupt.Store(true)
	bad := c.run(client.Pollux, nil, "cp", "/pollux/u/alice/local.dat", filepath.Join(dir, "again.dat"))
	require.Equal(t, 2, bad.code, bad.stderr)
	require.Contains(t, bad.stderr, "is corrupt")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no partial file is left behind")

	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"cp", src, "/tmp/x"}, "one of SRC and DST must be a Pollux path"},
		{[]string{"cp", "/pollux/a", "pollux:/pollux/b"}, "one of SRC and DST must be a Pollux path"},
		{[]string{"cp", src}, "give a source and a destination"},
		{[]string{"cp", filepath.Join(dir, "missing"), "/pollux/x"}, "no such file or directory"},
		{[]string{"cp", "/pollux/x", "/nonexistent/dir/f"}, "the directory to download into"},
		{[]string{"mv", "a", "b"}, "unknown command"},
	} {
		r := c.run(client.Pollux, nil, tc.args...)
		require.Equal(t, 1, r.code, "%v: %s", tc.args, r.stderr)
		require.Contains(t, r.stderr, tc.msg, tc.args)
	}
	require.Equal(t, 4, c.count("select count(*) from request"), "refused copies asked nothing of the service")
}

func TestStagerCommands(t *testing.T) {
	t.Parallel()
	c := newCluster(t, true)
	src, data := writeRandom(t, 5000)
	sum := client.Adler32(adler32.Checksum(data))
	const p = "/pollux/u/alice/data"

	put := c.run(client.Put, nil, "-M", p, "--file", src, "-U", "exp-1")
	require.Equal(t, 0, put.code, put.stderr)
	require.Equal(t, fmt.Sprintf("%s UPLOADED 5000 %s\n", p, sum), put.stdout)
	require.Contains(t, put.stderr, "close it with: stager_putdone -M "+p)
	q := c.run(client.Qry, nil, "-M", p)
	require.Equal(t, p+" STAGEOUT - -\n", q.stdout, "written, not yet closed: no size until stager_putdone")

	done := c.run(client.Putdone, nil, "-M", p)
	require.Equal(t, 0, done.code, done.stderr)
	require.Equal(t, p+" FINISHED closed\n", done.stdout)
	q = c.run(client.Qry, nil, "-M", p, "--json")
	require.Equal(t, 0, q.code)
	var files []struct {
		Path string    `json:"path"`
		File *api.File `json:"file"`
	}
	require.NoError(t, json.Unmarshal([]byte(q.stdout), &files))
	require.Equal(t, "STAGED", files[0].File.Status)

	// stager_get without --file prints the endpoint and its one-time credential: the
	// mover's token with the secret only this command held.
	get := c.run(client.Get, nil, "-M", p)
	require.Equal(t, 0, get.code, get.stderr)
	require.Regexp(t, `^/pollux/u/alice/data READY http://127\.0\.0\.1:\d+/v1/transfers/\d+ token=[0-9a-f]{32}\.[0-9a-f]{64}\n$`, get.stdout)
	require.NotContains(t, get.stderr, "ready: transfer", "a file done is reported on stdout only")

	target := filepath.Join(t.TempDir(), "copy")
	get = c.run(client.Get, nil, "-M", p, "-f", target)
	require.Equal(t, 0, get.code, get.stderr)
	require.Equal(t, fmt.Sprintf("%s DOWNLOADED 5000 %s %s\n", p, sum, target), get.stdout)
	got, err := os.ReadFile(target)
	require.NoError(t, err)
	require.True(t, bytes.Equal(data, got))

	ptg := c.run(client.PrepareToGet, nil, "-M", p, "--json")
	require.Equal(t, 0, ptg.code, ptg.stderr)
	var out struct {
		Request api.Request `json:"request"`
	}
	require.NoError(t, json.Unmarshal([]byte(ptg.stdout), &out))
	require.Equal(t, "FINISHED", out.Request.Status)
	require.Equal(t, "on disk", out.Request.Subrequests[0].Info)

	// Several files in one request; one of them fails: exit 1, the others still done.
	rm := c.run(client.Rm, nil, "-M", p, "-M", "/pollux/u/alice/never")
	require.Equal(t, 1, rm.code, rm.stderr)
	require.Contains(t, rm.stdout, p+" FINISHED removed\n")
	require.Contains(t, rm.stdout, "/pollux/u/alice/never FAILED PX001 no such file: /pollux/u/alice/never\n")
	require.Contains(t, rm.stderr, "1 of 2 files failed")

	q = c.run(client.Qry, nil, "-M", p)
	require.Equal(t, 1, q.code, "not found is a user error")
	require.Contains(t, q.stderr, "stager_qry: no such file: "+p)
	get = c.run(client.Get, nil, "-M", p)
	require.Equal(t, 1, get.code)
	require.Contains(t, get.stdout, p+" FAILED PX001 no such file")

	noWait := c.run(client.Put, nil, "-M", "/pollux/u/alice/later", "--no-wait")
	require.Equal(t, 0, noWait.code, noWait.stderr)
	// The request's id alone, time-ordered (version 7).
	require.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\n$`, noWait.stdout)
}

func TestWaitShowsWhyARequestWaits(t *testing.T) {
	t.Parallel()
	c := newCluster(t, false)
	res := make(chan result, 1)
	go func() { res <- c.run(client.Put, nil, "-M", "/pollux/u/alice/queued") }()
	var r result
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		assert.Equal(ct, 1, c.countFor(ct, "select count(*) from subrequest where info = 'queued, no disk server of its service class is available'"))
	}, 20*time.Second, 20*time.Millisecond)
	c.registerDiskServer()
	select {
	case r = <-res:
	case <-time.After(20 * time.Second):
		t.Fatal("stager_put did not end once a disk server appeared")
	}
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stderr, "/pollux/u/alice/queued: queued, no disk server of its service class is available\n")
	require.Contains(t, r.stdout, "/pollux/u/alice/queued READY "+c.mover.URL)
}

func TestFailover(t *testing.T) {
	t.Parallel()
	c := newCluster(t, true)
	dead := deadAddress(t)
	// Random order: enough runs that the dead address comes first in some.
	for i := range 6 {
		r := c.run(client.Put, map[string]string{client.EnvHost: dead + "," + c.rhd.Addr}, "-M", fmt.Sprintf("/pollux/f%d", i), "--no-wait")
		require.Equal(t, 0, r.code, r.stderr)
	}
	require.Equal(t, 6, c.count("select count(*) from request"))

	// A host name (a DNS alias) stands for all its addresses; the port comes from STAGE_PORT.
	_, port, _ := strings.Cut(c.rhd.Addr, ":")
	r := c.run(client.Qry, map[string]string{client.EnvHost: "localhost", client.EnvPort: port}, "-M", "/pollux/nope")
	require.Equal(t, 1, r.code, "answered (not found), not unreachable: %s", r.stderr)

	// A submission whose answer was lost is retried with the same id: one request stored.
	var calls atomic.Int32
	target, _ := url.Parse(c.rhd.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	lossy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			proxy.ServeHTTP(&discard{header: http.Header{}}, r) // stored, answer lost
			http.Error(w, "upstream timed out", http.StatusGatewayTimeout)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer lossy.Close()
	cl := client.New(client.Config{Hosts: []string{lossy.URL}, Token: token})
	cl.RoundPause = 10 * time.Millisecond
	defer cl.Close()
	before := c.count("select count(*) from request")
	sub, err := cl.Submit(context.Background(), api.SubmitRequest{ID: client.NewRequestID(), Type: "GET", Paths: []string{"/pollux/f0"}}, 0)
	require.NoError(t, err)
	require.False(t, sub.Created, "the retry found the request stored by the lost try")
	require.EqualValues(t, 2, calls.Load())
	require.Equal(t, before+1, c.count("select count(*) from request"))
}

// discard is a ResponseWriter that drops the answer.
type discard struct{ header http.Header }

func (d *discard) Header() http.Header         { return d.header }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

func TestExitCodes(t *testing.T) {
	t.Parallel()
	c := newCluster(t, true)
	dead := deadAddress(t)
	for _, tc := range []struct {
		name string
		cmd  func(context.Context, client.Env) int
		env  map[string]string
		args []string
		code int
		msg  string
	}{
		{"not found", client.Qry, nil, []string{"-M", "/pollux/nope"}, 1, "no such file: /pollux/nope"},
		{"bad path", client.Qry, nil, []string{"-M", "/etc/passwd"}, 1, "outside the namespace"},
		{"service down", client.Qry, map[string]string{client.EnvHost: dead, "POLLUX_SERVICE_TIMEOUT": "1s"}, []string{"-M", "/pollux/a"}, 2, "no request handler could serve the call"},
		{"service down for a put", client.Put, map[string]string{client.EnvHost: dead + "," + dead}, []string{"-M", "/pollux/a", "--service-timeout", "1s"}, 2, "connection refused"},
		{"bad service timeout", client.Qry, map[string]string{"POLLUX_SERVICE_TIMEOUT": "soon"}, []string{"-M", "/pollux/a"}, 1, `POLLUX_SERVICE_TIMEOUT="soon" is not a valid --service-timeout`},
		{"no service timeout", client.Rm, nil, []string{"-M", "/pollux/a", "--service-timeout", "0s"}, 1, "--service-timeout (or POLLUX_SERVICE_TIMEOUT) must be a positive duration"},
		{"the flag wins over its variable", client.Qry, map[string]string{"POLLUX_SERVICE_TIMEOUT": "soon"}, []string{"-M", "/pollux/nope", "--service-timeout", "5s"}, 1, "no such file"},
		{"no token", client.Qry, map[string]string{client.EnvToken: ""}, []string{"-M", "/pollux/a"}, 1, "POLLUX_TOKEN is not set"},
		{"no host", client.Rm, map[string]string{client.EnvHost: ""}, []string{"-M", "/pollux/a"}, 1, "STAGE_HOST is not set"},
		{"wrong token", client.Rm, map[string]string{client.EnvToken: "guess"}, []string{"-M", "/pollux/a"}, 1, "unknown token"},
		{"unknown service class", client.Put, map[string]string{client.EnvServiceClass: "tape"}, []string{"-M", "/pollux/a"}, 1, `unknown service class "tape"`},
		{"no file", client.Putdone, nil, nil, 1, "no file given"},
		{"bad flag", client.Putdone, nil, []string{"--bogus"}, 1, "flag provided but not defined"},
		{"stray argument", client.Putdone, nil, []string{"-M", "/pollux/a", "/pollux/b"}, 1, `unexpected argument "/pollux/b"`},
		{"missing local file", client.Put, nil, []string{"-M", "/pollux/a", "--file", "/nonexistent"}, 1, "no such file or directory"},
		{"two files for one local", client.Get, nil, []string{"-M", "/pollux/a", "-M", "/pollux/b", "--file", "x"}, 1, "exactly one -M"},
		{"help", client.Qry, nil, []string{"--help"}, 0, "STAGE_HOST"},
	} {
		r := c.run(tc.cmd, tc.env, tc.args...)
		require.Equal(t, tc.code, r.code, "%s: %s", tc.name, r.stderr)
		require.Contains(t, r.stderr, tc.msg, tc.name)
	}
	require.Zero(t, c.count("select count(*) from request"), "nothing was stored by a refused command")

	r := c.run(client.Qry, nil, "-M", "/pollux/nope", "--json")
	require.Equal(t, 1, r.code)
	var out []map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &out), r.stdout)
	require.Equal(t, "not_found", out[0]["error"].(map[string]any)["kind"])
}

func TestUploadIsVerified(t *testing.T) {
	t.Parallel()
	// A mover that records something else than it was sent is caught.
	requests := make(chan *http.Request, 1)
	mover := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		requests <- r
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(api.UploadResponse{SizeBytes: 9, ChecksumAdler32: "00000000"})
	}))
	defer mover.Close()
	src := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(src, []byte("0123456789"), 0o644))
	cl := client.New(client.Config{})
	defer cl.Close()
	_, err := cl.Upload(context.Background(), mover.URL, "tok", src, nil)
	require.ErrorContains(t, err, "the disk server recorded 9 bytes")
	require.Equal(t, 2, client.ExitCode(err))
	got := <-requests
	require.Equal(t, http.MethodPut, got.Method)
	require.Equal(t, "Bearer tok", got.Header.Get("Authorization"))
	require.Equal(t, client.Adler32(adler32.Checksum([]byte("0123456789"))), got.Header.Get(api.HeaderAdler32))
	require.EqualValues(t, 10, got.ContentLength)
}

// A large file is streamed: sent chunked as it is read and hashed, its length declared in
// X-Pollux-Size and its adler32 following the data as a trailer.
func TestLargeUploadIsStreamedWithItsChecksumInATrailer(t *testing.T) {
	t.Parallel()
	data := make([]byte, 5<<20+3)
	_, err := rand.Read(data)
	require.NoError(t, err)
	sum := client.Adler32(adler32.Checksum(data))
	type seen struct {
		chunked             bool
		size, header, trail string
		got                 string
	}
	requests := make(chan seen, 1)
	recorded := sum
	mover := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := adler32.New()
		n, _ := io.Copy(h, r.Body)
		answer := api.UploadResponse{SizeBytes: n, ChecksumAdler32: recorded} // read before the test moves on
		requests <- seen{chunked: len(r.TransferEncoding) == 1 && r.TransferEncoding[0] == "chunked",
			size: r.Header.Get(api.HeaderSize), header: r.Header.Get(api.HeaderAdler32),
			trail: r.Trailer.Get(api.HeaderAdler32), got: client.Adler32(h.Sum32())}
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(answer)
	}))
	defer mover.Close()
	src := filepath.Join(t.TempDir(), "big")
	require.NoError(t, os.WriteFile(src, data, 0o644))
	cl := client.New(client.Config{})
	defer cl.Close()
	var last, total int64
	moved, err := cl.Upload(context.Background(), mover.URL, "tok", src, func(done, all int64) { last, total = done, all })
	require.NoError(t, err)
	require.Equal(t, client.Moved{SizeBytes: int64(len(data)), ChecksumAdler32: sum}, moved)
	got := <-requests
	require.True(t, got.chunked, "streamed")
	require.Equal(t, strconv.Itoa(len(data)), got.size)
	require.Empty(t, got.header, "the checksum is not known ahead of the data")
	require.Equal(t, sum, got.trail)
	require.Equal(t, sum, got.got, "the bytes arrived whole")
	require.EqualValues(t, len(data), last)
	require.EqualValues(t, len(data), total)

	// A file that grows while it is sent fails: the bytes sent would check out against
	// their own sum, and the mover would keep a cut-short copy. (The mover here appends
	// before it reads the body, which the client sends only after its 100 Continue.)
	grower := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := os.OpenFile(src, os.O_APPEND|os.O_WRONLY, 0)
		if err == nil {
			_, _ = f.Write([]byte("more"))
			_ = f.Close()
		}
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusBadRequest)
	}))
	defer grower.Close()
	_, err = cl.Upload(context.Background(), grower.URL, "tok", src, nil)
	require.ErrorContains(t, err, fmt.Sprintf("the file grew from %d bytes while it was sent", len(data)))
	require.NoError(t, os.WriteFile(src, data, 0o644))

	// A file cut short before it is sent fails with a reason, and the command goes on (its
	// pages past the new end fault when they are read).
	shrinker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = os.Truncate(src, 1000)
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusBadRequest)
	}))
	defer shrinker.Close()
	_, err = cl.Upload(context.Background(), shrinker.URL, "tok", src, nil)
	require.ErrorContains(t, err, "read the file to upload: reading bytes 0 to 4194304 of the file")
	require.NoError(t, os.WriteFile(src, data, 0o644))

	// Cut short within its last page, it faults nowhere (the mapping reads zeros there),
	// and is caught by its size.
	nibbler := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = os.Truncate(src, int64(len(data)-2))
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusBadRequest)
	}))
	defer nibbler.Close()
	_, err = cl.Upload(context.Background(), nibbler.URL, "tok", src, nil)
	require.ErrorContains(t, err, fmt.Sprintf("read the file to upload: the file changed from %d to %d bytes while it was sent", len(data), len(data)-2))
	require.NoError(t, os.WriteFile(src, data, 0o644))

	// A mover that records another sum than the one streamed is caught, as with a header.
	recorded = "00000001"
	_, err = cl.Upload(context.Background(), mover.URL, "tok", src, nil)
	require.ErrorContains(t, err, "the disk server recorded")
	<-requests
}

func TestDownloadIsVerified(t *testing.T) {
	t.Parallel()
	data := []byte("some bytes of a file")
	sum := client.Adler32(adler32.Checksum(data))
	for _, tc := range []struct {
		name  string
		serve func(w http.ResponseWriter)
		err   string
	}{
		{"sum in a header", func(w http.ResponseWriter) {
			w.Header().Set(api.HeaderAdler32, sum)
			_, _ = w.Write(data)
		}, ""},
		{"no sum", func(w http.ResponseWriter) {
			_, _ = w.Write(data)
		}, "no valid X-Pollux-Adler32"},
		{"truncated", func(w http.ResponseWriter) {
			w.Header().Set(api.HeaderAdler32, sum)
			w.Header().Set("Content-Length", "1000")
			_, _ = w.Write(data)
		}, "broke off after 20 bytes"},
		{"corrupt", func(w http.ResponseWriter) {
			w.Header().Set(api.HeaderAdler32, "00000001")
			_, _ = w.Write(data)
		}, "is corrupt: adler32 " + sum + ", the disk server says 00000001"},
		{"no length", func(w http.ResponseWriter) {
			w.Header().Set(api.HeaderAdler32, sum)
			w.(http.Flusher).Flush() // chunked from here
			_, _ = w.Write(data)
		}, "no Content-Length"},
		{"refused", func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusForbidden)
			_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: api.Error{Kind: "permission", Code: "PX004", Message: "the transfer token does not check"}})
		}, "the transfer token does not check"},
	} {
		mover := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer tok" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			tc.serve(w)
		}))
		dir := t.TempDir()
		cl := client.New(client.Config{})
		moved, err := cl.Download(context.Background(), mover.URL, "tok", filepath.Join(dir, "f"), nil)
		cl.Close()
		mover.Close()
		entries, _ := os.ReadDir(dir)
		if tc.err == "" {
			require.NoError(t, err, tc.name)
			require.Equal(t, client.Moved{SizeBytes: int64(len(data)), ChecksumAdler32: sum}, moved)
			require.Len(t, entries, 1)
			continue
		}
		require.ErrorContains(t, err, tc.err, tc.name)
		require.Empty(t, entries, "%s: nothing is left behind", tc.name)
	}
}

func TestQryTellsARequestsStory(t *testing.T) {
	t.Parallel()
	c := newCluster(t, true)
	const p = "/pollux/u/alice/story"
	put := c.run(client.Put, nil, "-M", p, "--no-wait")
	require.Equal(t, 0, put.code, put.stderr)
	id := strings.TrimSpace(put.stdout)

	// Nobody uploads: the put ends up READY, waiting for its client.
	var h api.History
	require.Eventually(t, func() bool {
		q := c.run(client.Qry, nil, "-r", id, "--history", "--json")
		if q.code != 0 || json.Unmarshal([]byte(q.stdout), &h) != nil {
			return false
		}
		return len(h.Waits) == 1 && h.Waits[0].Status == "READY"
	}, 30*time.Second, 20*time.Millisecond)
	require.Equal(t, id, h.Request.ID)
	var tos []string
	for _, tr := range h.Transitions {
		tos = append(tos, tr.To)
	}
	require.Equal(t, []string{"START", "SCHEDULED", "READY"}, tos)
	// The stager and disk server here are the test's own connection, which names nobody.
	require.Equal(t, "rhd", h.Transitions[0].Daemon)

	q := c.run(client.Qry, nil, "-r", id, "--history")
	require.Equal(t, 0, q.code, q.stderr)
	require.Contains(t, q.stdout, "request "+id+" PUT PENDING")
	require.Contains(t, q.stdout, "new -> START by rhd")
	require.Contains(t, q.stdout, "SCHEDULED -> READY by")
	require.Contains(t, q.stdout, "now READY since")
	require.Contains(t, q.stdout, "waiting for the client to move the data")

	q = c.run(client.Qry, nil, "-r", id)
	require.Equal(t, 0, q.code, q.stderr)
	require.Contains(t, q.stdout, p+" READY")

	for _, bad := range [][]string{{"--history"}, {"-r", id, "-M", p}, {"-r", "nope"}} {
		q = c.run(client.Qry, nil, bad...)
		require.Equal(t, 1, q.code, "%v: %s", bad, q.stderr)
	}
	q = c.run(client.Qry, nil, "-r", "00000000-0000-4000-8000-000000000000", "--history")
	require.Equal(t, 1, q.code)
	require.Contains(t, q.stderr, "no such request")
}

// A request handler that is busy answers 503 (or 429) with Retry-After: the client waits
// at least that long, not its own short RoundPause, tells the user what it waits for,
// and goes on once it is served; the one request is stored once.
func TestBusyRequestHandlerIsRetriedAfterRetryAfter(t *testing.T) {
	t.Parallel()
	c := newCluster(t, true)
	var calls atomic.Int32
	var times []time.Time
	var mu sync.Mutex
	target, _ := url.Parse(c.rhd.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
		switch calls.Add(1) {
		case 1:
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"error":{"kind":"unavailable","message":"the request handler is busy"}}`)
		case 2:
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"error":{"kind":"unavailable","message":"too many long polls"}}`)
		default:
			proxy.ServeHTTP(w, r)
		}
	}))
	defer busy.Close()
	var notices bytes.Buffer
	cl := client.New(client.Config{Hosts: []string{busy.URL}, Token: token})
	cl.RoundPause = 10 * time.Millisecond
	cl.Notices = &notices
	defer cl.Close()
	before := c.count("select count(*) from request")
	_, err := cl.Submit(context.Background(), api.SubmitRequest{ID: client.NewRequestID(), Type: "GET", Paths: []string{"/pollux/f0"}}, 0)
	require.NoError(t, err)
	require.EqualValues(t, 3, calls.Load())
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(times); i++ {
		require.GreaterOrEqual(t, times[i].Sub(times[i-1]), time.Second, "try %d came before the Retry-After", i+1)
	}
	require.Contains(t, notices.String(), "answered 503: the request handler is busy — trying again in 1")
	require.Contains(t, notices.String(), "answered 429: too many long polls")
	require.Equal(t, before+1, c.count("select count(*) from request"))
}
