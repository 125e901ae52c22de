package diskserver_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"hash/adler32"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/daemons/diskserverd/diskserver"
	"github.com/pollux-storage/pollux/daemons/diskserverd/mover"
	"github.com/pollux-storage/pollux/daemons/internal/wake"
	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/framework/daemon"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/uuid"
	"github.com/pollux-storage/pollux/model"
	"github.com/pollux-storage/pollux/schema/schematest"
)

// The rest of the life cycle (rhd, stagerd, jobmanagerd, schedulerd) is driven through the
// logic's wrappers, as schema/lifecycle_test.go does; diskserverd runs in-process. Its claim
// polls once a minute here, so that only the stager's wake-up hint (sent by stage, as
// stagerd does after its commit) can make a transfer READY within a test's deadlines.

type env struct {
	t     *testing.T
	ctx   context.Context
	dsn   string
	db    *pg.DB
	hints *wake.Hinter
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvTrusting(t, nil)
}

// newEnvTrusting is newEnv whose wake-up hints verify movers serving HTTPS with
// tlsConfig.
func newEnvTrusting(t *testing.T, tlsConfig *tls.Config) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	dsn := schematest.DSN(t)
	db, err := pg.Open(ctx, pg.Config{DSN: dsn})
	require.NoError(t, err)
	t.Cleanup(db.Close)
	hints := wake.New(nil, nil, tlsConfig)
	t.Cleanup(func() { _ = hints.Stop(context.Background()) })
	return &env{t: t, ctx: ctx, dsn: dsn, db: db, hints: hints}
}

// syncBuffer collects a daemon's log lines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type diskServer struct {
	name   string
	dir    string
	id     int64
	stop   context.CancelFunc
	exited chan int
	log    *syncBuffer
	once   sync.Once
	code   int
	err    error // it did not stop
}

// start runs a diskserverd with one data directory and waits for it to register.
func (e *env) start(name, dir string, args ...string) *diskServer {
	e.t.Helper()
	return e.startOn(e.dsn, name, dir, args...)
}

// startOn is start with the daemon reaching the test's database through dsn.
func (e *env) startOn(dsn, name, dir string, args ...string) *diskServer {
	e.t.Helper()
	if dir == "" {
		dir = filepath.Join(e.t.TempDir(), "data") // created by the daemon
	}
	ctx, stop := context.WithCancel(e.ctx)
	d := &diskServer{name: name, dir: dir, stop: stop, exited: make(chan int, 1), log: &syncBuffer{}}
	args = append([]string{"--log-format", "json", "--name", name, "--listen", "127.0.0.1:0", "--data-dir", dir,
		"--gc-interval", "100ms", "--drain-timeout", "2s", "--claim-poll-interval", "1m"}, args...)
	go func() {
		d.exited <- daemon.Run(ctx, args, []string{"POLLUX_DATABASE_URL=" + dsn}, io.Discard, d.log, diskserver.Spec())
	}()
	e.t.Cleanup(func() {
		d.shutdown(e.t)
		if e.t.Failed() {
			e.t.Logf("%s log:\n%s", name, d.log.String())
		}
	})
	// A loop on the test's goroutine, not a condition of require.Eventually: an exit must
	// stop the test, which only this goroutine may do.
	deadline := time.After(30 * time.Second)
	for !strings.Contains(d.log.String(), `"msg":"daemon started"`) {
		select {
		case code := <-d.exited:
			d.once.Do(func() {})
			e.t.Fatalf("diskserverd exited with %d:\n%s", code, d.log.String())
		case <-deadline:
			e.t.Fatalf("diskserverd did not start within 30s:\n%s", d.log.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	require.NoError(e.t, e.db.Pool().QueryRow(e.ctx, "select id from disk_server where name = $1", name).Scan(&d.id))
	return d
}

// shutdown stops the daemon as SIGTERM would and returns its exit code.
func (d *diskServer) shutdown(t *testing.T) int {
	t.Helper()
	code, err := d.stopAndWait()
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// stopAndWait is shutdown for any goroutine: it returns the failure rather than stopping
// the test.
func (d *diskServer) stopAndWait() (int, error) {
	d.once.Do(func() {
		d.stop()
		select {
		case d.code = <-d.exited:
		case <-time.After(30 * time.Second):
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			d.err = fmt.Errorf("diskserverd %s did not stop:\n%s\n%s", d.name, d.log.String(), buf)
		}
	})
	return d.code, d.err
}

func (e *env) submit(typ model.RequestType, autoClose bool, path string) string {
	e.t.Helper()
	id := uuid.New()
	_, err := model.RequestSubmit(e.ctx, e.db.Pool(), id, typ, "default", "alice", "", "test", []string{path}, autoClose, nil, nil)
	require.NoError(e.t, err)
	return id
}

// stage runs the stager's put, get and rm decisions once, placing what it can, and sends
// the wake-up hints after the commit, as stagerd does.
func (e *env) stage() {
	e.t.Helper()
	var wakes []string
	require.NoError(e.t, e.db.Tx(e.ctx, "stage", func(q pg.Querier) error {
		wakes = nil
		for _, family := range []string{"put", "get", "rm"} {
			rows, err := model.SubrequestClaim(e.ctx, q, family, 100)
			if err != nil {
				return err
			}
			for _, r := range rows {
				if r.WakeURL != nil {
					wakes = append(wakes, *r.WakeURL)
				}
			}
		}
		return nil
	}))
	e.hints.Hint(wakes...)
}

// policy sets one of the database's policy values for this test's instance.
func (e *env) policy(name string, value int64) {
	e.t.Helper()
	_, err := model.PolicySet(e.ctx, e.db.Pool(), name, value, "test")
	require.NoError(e.t, err)
}

func (e *env) sub(request string) model.Subrequest {
	e.t.Helper()
	return e.subOf(e.t, request)
}

// subOf is sub for t, which may be an EventuallyWithT's collector.
func (e *env) subOf(t require.TestingT, request string) model.Subrequest {
	s, err := model.SubrequestList(e.ctx, e.db.Pool(), request)
	require.NoError(t, err)
	require.Len(t, s, 1)
	return s[0]
}

// wait polls the request's subrequest until it reaches status.
func (e *env) wait(request string, status model.SubrequestStatus) model.Subrequest {
	e.t.Helper()
	var s model.Subrequest
	require.EventuallyWithT(e.t, func(c *assert.CollectT) {
		s = e.subOf(c, request)
		assert.Equal(c, status, s.Status)
	}, 30*time.Second, 10*time.Millisecond, "subrequest of %s never became %s", request, status)
	return s
}

// ready submits a request for path and takes it to READY on a disk server.
func (e *env) ready(typ model.RequestType, path string) (string, model.Subrequest) {
	e.t.Helper()
	req := e.submit(typ, typ == model.RequestTypePut, path)
	e.stage()
	// Placed by the stager; the hint may have made it READY already.
	placed := e.sub(req)
	require.Contains(e.t, []model.SubrequestStatus{model.SubrequestStatusScheduled, model.SubrequestStatusReady}, placed.Status, "placed: %+v", placed)
	s := e.wait(req, model.SubrequestStatusReady)
	require.NotNil(e.t, s.MoverURL)
	require.NotNil(e.t, s.Token)
	return req, s
}

func (e *env) failed(request, code, message string) model.Subrequest {
	e.t.Helper()
	s := e.wait(request, model.SubrequestStatusFailed)
	require.NotNil(e.t, s.ErrorCode)
	require.Equal(e.t, code, *s.ErrorCode)
	require.Contains(e.t, *s.ErrorMessage, message)
	return s
}

func call(t *testing.T, method, target, token string, body io.Reader, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, target, body)
	require.NoError(t, err)
	if f, ok := body.(*os.File); ok {
		st, err := f.Stat()
		require.NoError(t, err)
		req.ContentLength = st.Size()
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, b
}

func errorBody(t *testing.T, b []byte) api.Error {
	t.Helper()
	var e api.ErrorBody
	require.NoError(t, json.Unmarshal(b, &e), string(b))
	return e.Error
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

func adler(b []byte) string { return fmt.Sprintf("%08x", adler32.Checksum(b)) }

// files lists the regular files under dir. t may be an EventuallyWithT's collector.
func files(t require.TestingT, dir string) []string {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
	var out []string
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			out = append(out, p)
		}
		return err
	}))
	return out
}

// fileMode is the permission bits of path.
func fileMode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	require.NoError(t, err)
	return st.Mode().Perm()
}

// put uploads data to a READY subrequest's mover.
func (e *env) put(path string, data []byte) (string, model.Subrequest) {
	e.t.Helper()
	req, s := e.ready(model.RequestTypePut, path)
	resp, body := call(e.t, http.MethodPut, *s.MoverURL, *s.Token, bytes.NewReader(data), map[string]string{api.HeaderAdler32: adler(data)})
	require.Equal(e.t, http.StatusCreated, resp.StatusCode, string(body))
	return req, s
}

func TestRegistration(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	base := t.TempDir()
	dirs := []string{filepath.Join(base, "a"), filepath.Join(base, "b")}
	d := e.start("ds-reg", dirs[0], "--data-dir", dirs[1])

	var public string
	var load float64
	require.NoError(t, e.db.Pool().QueryRow(e.ctx, "select url, load from disk_server where id = $1", d.id).Scan(&public, &load))
	require.Regexp(t, `^http://127\.0\.0\.1:\d+$`, public, "the public URL defaults to the listener's address")
	require.GreaterOrEqual(t, load, 0.0)
	rows, err := e.db.Pool().Query(e.ctx, `select f.mount_point, f.capacity_bytes, f.free_bytes, s.name
		from file_system f join service_class s on s.id = f.service_class_id where f.disk_server_id = $1 order by 1`, d.id)
	require.NoError(t, err)
	n := 0
	for rows.Next() {
		var mount, class string
		var capacity, free int64
		require.NoError(t, rows.Scan(&mount, &capacity, &free, &class))
		require.Equal(t, dirs[n], mount)
		require.Positive(t, capacity)
		require.Positive(t, free)
		require.Equal(t, "default", class)
		require.DirExists(t, mount, "a missing data directory is created")
		n++
	}
	require.NoError(t, rows.Err())
	require.Equal(t, 2, n)

	// Anything else on the mover's port is refused with a JSON error.
	resp, body := call(t, http.MethodGet, public+"/nothing", "", nil, nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	require.Equal(t, "not_found", errorBody(t, body).Kind)
	require.Equal(t, 0, d.shutdown(t), d.log.String())
}

// A disk server whose row an operator deleted registers again at its next heartbeat, under
// a new id, and claims the transfers placed under that id without a restart.
func TestReRegisteredServerClaimsUnderItsNewID(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.start("ds-again", "")
	_, err := e.db.Pool().Exec(e.ctx, "delete from disk_server where id = $1", d.id)
	require.NoError(t, err)
	var id int64
	require.Eventually(t, func() bool {
		err := e.db.Pool().QueryRow(e.ctx, "select d.id from disk_server d join file_system f on f.disk_server_id = d.id where d.name = 'ds-again'").Scan(&id)
		return err == nil
	}, 20*time.Second, 50*time.Millisecond, "the server did not register again")
	require.NotEqual(t, d.id, id)
	require.Eventually(t, func() bool { return strings.Contains(d.log.String(), "registered anew under another id") }, 10*time.Second, 10*time.Millisecond)

	data := randomBytes(t, 4096)
	req, _ := e.put("/pollux/again", data)
	s := e.wait(req, model.SubrequestStatusFinished)
	require.Equal(t, int64(len(data)), *s.SizeBytes)
	require.Equal(t, id, *s.DiskServerID, "the transfer ran under the new registration")
	require.Equal(t, 0, d.shutdown(t), d.log.String())
}

func TestPutThenGet(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.start("ds-1", "")
	data := randomBytes(t, 9<<20+17) // a few of the mover's segments and a bit

	req, s := e.ready(model.RequestTypePut, "/pollux/u/alice/f")
	require.Equal(t, mover.TransferURL(strings.TrimSuffix(*s.MoverURL, fmt.Sprintf("/v1/transfers/%d", s.ID)), s.ID), *s.MoverURL)
	token := *s.Token

	// A caller without the token changes nothing: it could be anyone.
	resp, body := call(t, http.MethodPut, *s.MoverURL, "", bytes.NewReader(data), nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, string(body))
	require.Equal(t, "permission", errorBody(t, body).Kind)
	resp, body = call(t, http.MethodPut, *s.MoverURL, "wrong", bytes.NewReader(data), nil)
	require.Equal(t, http.StatusForbidden, resp.StatusCode, string(body))
	require.Equal(t, api.Error{Kind: "permission", Code: model.SQLStatePermissionDenied, Message: errorBody(t, body).Message}, errorBody(t, body))
	require.Equal(t, model.SubrequestStatusReady, e.sub(req).Status)

	resp, body = call(t, http.MethodPut, *s.MoverURL, *s.Token, bytes.NewReader(data), map[string]string{api.HeaderAdler32: strings.ToUpper(adler(data))})
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(body))
	var up api.UploadResponse
	require.NoError(t, json.Unmarshal(body, &up))
	require.Equal(t, api.UploadResponse{SizeBytes: int64(len(data)), ChecksumAdler32: adler(data)}, up)

	s = e.wait(req, model.SubrequestStatusFinished)
	require.EqualValues(t, len(data), *s.SizeBytes)
	require.Equal(t, adler(data), *s.ChecksumAdler32)
	q, err := model.FileQuery(e.ctx, e.db.Pool(), "/pollux/u/alice/f", "alice")
	require.NoError(t, err)
	require.Equal(t, "STAGED", q[0].Status)
	require.Equal(t, adler(data), *q[0].ChecksumAdler32)
	stored := files(t, d.dir)
	require.Len(t, stored, 1, "the copy and no partial file")
	onDisk, err := os.ReadFile(stored[0])
	require.NoError(t, err)
	require.True(t, bytes.Equal(data, onDisk), "the bytes on disk are the bytes sent")
	// Nobody but the disk server's account reads the data or lists its directories.
	require.Equal(t, fs.FileMode(0o600), fileMode(t, stored[0]), "mode of the copy %s", stored[0])
	require.NoError(t, filepath.WalkDir(d.dir, func(p string, de fs.DirEntry, err error) error {
		if err == nil && de.IsDir() {
			require.Equal(t, fs.FileMode(0o700), fileMode(t, p), "mode of the directory %s", p)
		}
		return err
	}))

	// The token was for one transfer.
	resp, body = call(t, http.MethodPut, *s.MoverURL, token, bytes.NewReader(data), nil)
	require.Equal(t, http.StatusForbidden, resp.StatusCode, string(body))
	require.Equal(t, model.SQLStatePermissionDenied, errorBody(t, body).Code)

	get, g := e.ready(model.RequestTypeGet, "/pollux/u/alice/f")
	resp, body = call(t, http.MethodGet, *g.MoverURL, "wrong", nil, nil)
	require.Equal(t, http.StatusForbidden, resp.StatusCode, string(body))
	resp, body = call(t, http.MethodGet, *g.MoverURL, *g.Token, nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.True(t, bytes.Equal(data, body), "the bytes read are the bytes written")
	require.Equal(t, adler(data), resp.Header.Get(api.HeaderAdler32), "the catalogue's checksum comes in the header")
	require.EqualValues(t, len(data), resp.ContentLength)
	g = e.wait(get, model.SubrequestStatusFinished)
	require.EqualValues(t, len(data), *g.SizeBytes)
	require.Equal(t, 0, d.shutdown(t), d.log.String())
	require.Contains(t, d.log.String(), `"msg":"upload ended"`)
}

// rawPut sends a PUT's header and part of its body over a plain connection. declared < 0
// sends it chunked, body as the start of a chunk of a mebibyte.
func rawPut(t *testing.T, target, token string, declared int64, body []byte) net.Conn {
	t.Helper()
	u, err := url.Parse(target)
	require.NoError(t, err)
	conn, err := net.Dial("tcp", u.Host)
	require.NoError(t, err)
	framing := fmt.Sprintf("Content-Length: %d\r\n\r\n", declared)
	if declared < 0 {
		framing = fmt.Sprintf("Transfer-Encoding: chunked\r\n\r\n%x\r\n", 1<<20)
	}
	_, err = fmt.Fprintf(conn, "PUT %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n%s", u.Path, u.Host, token, framing)
	require.NoError(t, err)
	_, err = conn.Write(body)
	require.NoError(t, err)
	return conn
}

func TestTruncatedUploadLeavesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.start("ds-1", "")
	req, s := e.ready(model.RequestTypePut, "/pollux/truncated")
	conn := rawPut(t, *s.MoverURL, *s.Token, 1_000_000, randomBytes(t, 1000))
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Len(c, files(c, d.dir), 1) }, 10*time.Second, 5*time.Millisecond, "the upload is being written")
	require.NoError(t, conn.Close()) // the client goes away

	e.failed(req, model.SQLStateBadData, "upload truncated: got 1000 of 1000000 bytes")
	require.Empty(t, files(t, d.dir), "no partial file and no copy")
	_, err := model.FileQuery(e.ctx, e.db.Pool(), "/pollux/truncated", "alice")
	require.Equal(t, model.SQLStateNotFound, pg.SQLState(err), "a file that never had content is gone")
}

func TestChecksumMismatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.start("ds-1", "")
	req, s := e.ready(model.RequestTypePut, "/pollux/corrupt")
	data := randomBytes(t, 64<<10)
	resp, body := call(t, http.MethodPut, *s.MoverURL, *s.Token, bytes.NewReader(data), map[string]string{api.HeaderAdler32: "00000001"})
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, string(body))
	msg := fmt.Sprintf("checksum mismatch: client says 00000001, received data has %s", adler(data))
	require.Equal(t, api.Error{Kind: "invalid", Code: model.SQLStateBadData, Message: msg}, errorBody(t, body))
	e.failed(req, model.SQLStateBadData, msg)
	require.Empty(t, files(t, d.dir))

	// The scrape counts it: a failed upload, a checksum failure, the bytes received.
	m := d.metrics(t)
	require.Contains(t, m, `pollux_diskserver_checksum_failures_total{direction="upload"} 1`+"\n")
	require.Contains(t, m, `pollux_diskserver_checksum_failures_total{direction="download"} 0`+"\n")
	require.Contains(t, m, `pollux_diskserver_transfers_total{direction="upload",outcome="failed"} 1`+"\n")
	require.Contains(t, m, `pollux_diskserver_transfers_total{direction="upload",outcome="ok"} 0`+"\n")
	require.Contains(t, m, fmt.Sprintf("pollux_diskserver_transfer_bytes_total{direction=\"upload\"} %d\n", len(data)))
	require.Contains(t, m, `pollux_diskserver_file_system_writable{disk_server="ds-1",mount_point="`+d.dir+`"} 1`+"\n")
	require.Empty(t, files(t, d.dir), "the write probe leaves nothing behind")
}

// metrics is what the disk server's admin listener serves on /metrics now.
func (d *diskServer) metrics(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`"msg":"admin listener up".*?"url":"([^"]+)"`).FindStringSubmatch(d.log.String())
	require.NotNil(t, m, "no admin listener in the log:\n%s", d.log.String())
	resp, err := http.Get(m[1] + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// chunkedPut uploads data without a Content-Length, its checksum (if any) in a trailer.
func chunkedPut(t *testing.T, target, token string, data []byte, trailerSum string) (*http.Response, []byte) {
	t.Helper()
	return chunkedPutWith(t, target, token, data, trailerSum, nil)
}

// chunkedPutWith is chunkedPut with more headers.
func chunkedPutWith(t *testing.T, target, token string, data []byte, trailerSum string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, target, io.MultiReader(bytes.NewReader(data)))
	require.NoError(t, err)
	req.ContentLength = -1
	req.Header.Set("Authorization", "Bearer "+token)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if trailerSum != "" {
		req.Trailer = http.Header{api.HeaderAdler32: {trailerSum}}
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, b
}

// A streaming upload (no Content-Length) is taken, its checksum checked when it comes as a
// trailer; a stream that breaks off, is over the limit or has the wrong checksum fails at
// once.
func TestChunkedUpload(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.start("ds-1", "")
	data := randomBytes(t, 2<<20+3)

	req, s := e.ready(model.RequestTypePut, "/pollux/streamed")
	resp, body := chunkedPut(t, *s.MoverURL, *s.Token, data, adler(data))
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(body))
	s = e.wait(req, model.SubrequestStatusFinished)
	require.EqualValues(t, len(data), *s.SizeBytes)
	require.Equal(t, adler(data), *s.ChecksumAdler32)
	stored := files(t, d.dir)
	require.Len(t, stored, 1)
	onDisk, err := os.ReadFile(stored[0])
	require.NoError(t, err)
	require.True(t, bytes.Equal(data, onDisk))
	q, err := model.FileQuery(e.ctx, e.db.Pool(), "/pollux/streamed", "alice")
	require.NoError(t, err)
	require.Equal(t, "STAGED", q[0].Status, "closed: the trailer's checksum vouched for the bytes")

	req, s = e.ready(model.RequestTypePut, "/pollux/unsummed")
	resp, body = chunkedPut(t, *s.MoverURL, *s.Token, data[:1000], "")
	require.Equal(t, http.StatusCreated, resp.StatusCode, "the checksum is optional, as with a Content-Length: %s", body)
	// ... but then nothing vouches for the bytes, and the write is not closed on its own.
	s = e.wait(req, model.SubrequestStatusFinished)
	require.Contains(t, s.Info, "not closed: the upload carried no X-Pollux-Adler32")
	q, err = model.FileQuery(e.ctx, e.db.Pool(), "/pollux/unsummed", "alice")
	require.NoError(t, err)
	require.Equal(t, "STAGEOUT", q[0].Status, "left for stager_putdone")

	req, s = e.ready(model.RequestTypePut, "/pollux/badsum")
	resp, body = chunkedPut(t, *s.MoverURL, *s.Token, data, "00000001")
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, string(body))
	msg := fmt.Sprintf("checksum mismatch: client says 00000001, received data has %s", adler(data))
	require.Equal(t, msg, errorBody(t, body).Message)
	e.failed(req, model.SQLStateBadData, msg)

	req, s = e.ready(model.RequestTypePut, "/pollux/cut")
	conn := rawPut(t, *s.MoverURL, *s.Token, -1, randomBytes(t, 1000))
	require.Eventually(t, func() bool { return len(files(t, d.dir)) == 3 }, 10*time.Second, 5*time.Millisecond, "the upload is being written")
	require.NoError(t, conn.Close())
	e.failed(req, model.SQLStateBadData, "upload truncated: it broke off after 1000 bytes")
	require.Eventually(t, func() bool { return len(files(t, d.dir)) == 2 }, 10*time.Second, 5*time.Millisecond, "no partial file")

	_, err = e.db.Pool().Exec(e.ctx, "update service_class set max_file_size_bytes = 1000 where name = 'default'")
	require.NoError(t, err)
	req, s = e.ready(model.RequestTypePut, "/pollux/big")
	resp, body = chunkedPut(t, *s.MoverURL, *s.Token, data, "")
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, string(body))
	e.failed(req, model.SQLStateBadData, "the upload is larger than its service class allows (1000 bytes)")
	require.Len(t, files(t, d.dir), 2)
}

// A streaming upload may declare its length (X-Pollux-Size, as the client does for large
// files): the limit is checked against it before the first byte, and a stream of another
// length fails, however cleanly it ends.
func TestChunkedUploadWithDeclaredSize(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.start("ds-1", "")
	data := randomBytes(t, 1<<20+5)
	size := func(n int) map[string]string { return map[string]string{api.HeaderSize: strconv.Itoa(n)} }

	req, s := e.ready(model.RequestTypePut, "/pollux/declared")
	resp, body := chunkedPutWith(t, *s.MoverURL, *s.Token, data, adler(data), size(len(data)))
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(body))
	s = e.wait(req, model.SubrequestStatusFinished)
	require.EqualValues(t, len(data), *s.SizeBytes)

	req, s = e.ready(model.RequestTypePut, "/pollux/grew")
	resp, body = chunkedPutWith(t, *s.MoverURL, *s.Token, data, adler(data), size(len(data)-1))
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, string(body))
	msg := fmt.Sprintf("the upload sent %d bytes but declared %d (X-Pollux-Size): the file changed while it was sent", len(data), len(data)-1)
	require.Equal(t, msg, errorBody(t, body).Message)
	e.failed(req, model.SQLStateBadData, msg)

	req, s = e.ready(model.RequestTypePut, "/pollux/badsize")
	resp, body = chunkedPutWith(t, *s.MoverURL, *s.Token, data, "", map[string]string{api.HeaderSize: "lots"})
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, string(body))
	e.failed(req, model.SQLStateInvalidArgument, `X-Pollux-Size "lots" is not a length in bytes`)

	_, err := e.db.Pool().Exec(e.ctx, "update service_class set max_file_size_bytes = 1000 where name = 'default'")
	require.NoError(t, err)
	req, s = e.ready(model.RequestTypePut, "/pollux/toobig")
	resp, body = chunkedPutWith(t, *s.MoverURL, *s.Token, data, "", size(len(data)))
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, string(body))
	e.failed(req, model.SQLStateBadData, fmt.Sprintf("the upload of %d bytes is larger than its service class allows (1000 bytes)", len(data)))
	require.Len(t, files(t, d.dir), 1, "only the first upload left a file")
}

// A caller with the token has made the transfer's one call: when it is refused, the
// transfer fails before the answer goes out, with the reason, instead of waiting READY
// for the open timeout (300 s by default here).
func TestRefusedClientFailsTheTransferAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start("ds-1", "")
	e.put("/pollux/there", []byte("content"))
	for _, tc := range []struct {
		typ    model.RequestType
		method string
		hdr    map[string]string
		status int
		code   string
		msg    string
	}{
		{model.RequestTypePut, http.MethodGet, nil, http.StatusMethodNotAllowed, model.SQLStateInvalidArgument, "is a PUT transfer: use PUT, not GET"},
		{model.RequestTypeGet, http.MethodPut, nil, http.StatusMethodNotAllowed, model.SQLStateInvalidArgument, "is a GET transfer: use GET, not PUT"},
		{model.RequestTypePut, http.MethodDelete, nil, http.StatusMethodNotAllowed, model.SQLStateInvalidArgument, "method DELETE not allowed"},
		{model.RequestTypePut, http.MethodPut, map[string]string{api.HeaderAdler32: "xyz"}, http.StatusBadRequest, model.SQLStateInvalidArgument, "is not eight hex digits"},
	} {
		path := "/pollux/new"
		if tc.typ == model.RequestTypeGet {
			path = "/pollux/there"
		}
		req, s := e.ready(tc.typ, path)
		resp, body := call(t, tc.method, *s.MoverURL, *s.Token, bytes.NewReader([]byte("data")), tc.hdr)
		require.Equal(t, tc.status, resp.StatusCode, string(body))
		require.Contains(t, errorBody(t, body).Message, tc.msg)
		got := e.sub(req)
		require.Equal(t, model.SubrequestStatusFailed, got.Status, "%s %s: failed before the answer: %+v", tc.method, tc.typ, got)
		require.Equal(t, tc.code, *got.ErrorCode)
		require.Contains(t, *got.ErrorMessage, tc.msg)
		resp, body = call(t, http.MethodPut, *s.MoverURL, *s.Token, bytes.NewReader([]byte("data")), nil)
		require.Equal(t, http.StatusForbidden, resp.StatusCode, "the token was spent: %s", body)
	}
}

func TestTooLarge(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start("ds-1", "")
	_, err := e.db.Pool().Exec(e.ctx, "update service_class set max_file_size_bytes = 1000 where name = 'default'")
	require.NoError(t, err)
	req, s := e.ready(model.RequestTypePut, "/pollux/big")
	resp, body := call(t, http.MethodPut, *s.MoverURL, *s.Token, bytes.NewReader(randomBytes(t, 2000)), nil)
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, string(body))
	e.failed(req, model.SQLStateBadData, "the upload of 2000 bytes is larger than its service class allows (1000 bytes)")
}

func TestClientNeverConnects(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.policy("transfer_open_seconds", 1)
	e.start("ds-1", "")
	req, s := e.ready(model.RequestTypePut, "/pollux/late")
	e.failed(req, model.SQLStateTransferFailed, "the client did not connect within 1s")
	resp, body := call(t, http.MethodPut, *s.MoverURL, *s.Token, bytes.NewReader([]byte("late")), nil)
	require.Equal(t, http.StatusForbidden, resp.StatusCode, string(body))
}

func TestTransferTimeoutCutsAStalledClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.policy("transfer_seconds", 1)
	d := e.start("ds-1", "")
	req, s := e.ready(model.RequestTypePut, "/pollux/slow")
	conn := rawPut(t, *s.MoverURL, *s.Token, 1000, []byte("only this"))
	defer conn.Close()
	e.failed(req, model.SQLStateTransferFailed, "the transfer did not end within 1s")
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err == nil {
		_, err = conn.Read(make([]byte, 1))
	}
	require.Error(t, err, "the stalled connection is closed")
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Empty(c, files(c, d.dir)) }, 10*time.Second, 5*time.Millisecond)
}

func TestRmDeletesTheCopy(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.start("ds-1", "")
	e.put("/pollux/doomed", randomBytes(t, 1000))
	require.Len(t, files(t, d.dir), 1)

	rm := e.submit(model.RequestTypeRm, false, "/pollux/doomed")
	e.stage()
	e.wait(rm, model.SubrequestStatusFinished)
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Empty(c, files(c, d.dir)) }, 20*time.Second, 20*time.Millisecond,
		"the garbage collector deletes the invalidated copy")
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var copies int
		require.NoError(c, e.db.Pool().QueryRow(e.ctx, "select count(*) from disk_copy").Scan(&copies))
		assert.Zero(c, copies)
	}, 10*time.Second, 20*time.Millisecond, "and forgets it")
}

func TestRmWhileWritingDiscardsTheUpload(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.start("ds-1", "")
	req, s := e.ready(model.RequestTypePut, "/pollux/racing")
	data := randomBytes(t, 10_000)
	conn := rawPut(t, *s.MoverURL, *s.Token, int64(len(data)), data[:5000])
	defer conn.Close()
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Len(c, files(c, d.dir), 1) }, 10*time.Second, 5*time.Millisecond)

	rm := e.submit(model.RequestTypeRm, false, "/pollux/racing")
	e.stage()
	e.wait(rm, model.SubrequestStatusFinished)
	e.failed(req, model.SQLStateConflict, "removed")

	_, err := conn.Write(data[5000:])
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusConflict, resp.StatusCode, string(b))
	require.Contains(t, errorBody(t, b).Message, "no longer wanted")
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Empty(c, files(c, d.dir)) }, 10*time.Second, 5*time.Millisecond,
		"the bytes nobody wants are deleted")
}

func TestRestartTakesBackReadyTransfers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := t.TempDir()
	// A previous process of ds-r published a mover and died.
	reg, err := model.DiskServerRegister(e.ctx, e.db.Pool(), "ds-r", "http://127.0.0.1:1", 0)
	require.NoError(t, err)
	_, err = model.FileSystemRegister(e.ctx, e.db.Pool(), reg, dir, "default", 1<<40, 1<<39)
	require.NoError(t, err)
	req := e.submit(model.RequestTypePut, true, "/pollux/orphan")
	e.stage()
	claimed, err := model.TransferClaim(e.ctx, e.db.Pool(), reg, "http://127.0.0.1:1", []string{"old"})
	require.NoError(t, err)
	require.Len(t, claimed, 1)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "left.part"), []byte("half"), 0o644))
	old := time.Now().Add(-time.Hour)
	require.NoError(t, os.Chtimes(filepath.Join(dir, "left.part"), old, old))

	d := e.start("ds-r", dir)
	require.Equal(t, reg, d.id, "the server keeps its identity")
	s := e.sub(req)
	require.Equal(t, model.SubrequestStatusRetry, s.Status, "the transfer the dead mover had is taken back at start")
	require.Contains(t, s.Info, "ds-r restarted")
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Empty(c, files(c, dir)) }, 10*time.Second, 10*time.Millisecond,
		"the partial upload left behind is removed")
}

func TestStopTakesBackReadyTransfers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.start("ds-1", "")
	req, s := e.ready(model.RequestTypePut, "/pollux/waiting")
	// A client that is sending when the drain begins may finish.
	data := randomBytes(t, 10_000)
	moving, m := e.ready(model.RequestTypePut, "/pollux/moving")
	conn := rawPut(t, *m.MoverURL, *m.Token, int64(len(data)), data[:100])
	defer conn.Close()
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Len(c, files(c, d.dir), 1) }, 10*time.Second, 5*time.Millisecond)

	type exit struct {
		code int
		err  error
	}
	stopped := make(chan exit, 1)
	go func() { code, err := d.stopAndWait(); stopped <- exit{code, err} }()
	require.Eventually(t, func() bool { return strings.Contains(d.log.String(), "transfer handed back") }, 10*time.Second, 5*time.Millisecond,
		"the job of a transfer whose client never came ends at once")
	resp, body := call(t, http.MethodPut, *s.MoverURL, *s.Token, bytes.NewReader(data), nil)
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "and its client is turned away: %s", body)
	require.Equal(t, model.SQLStatePermissionDenied, errorBody(t, body).Code)

	_, err := conn.Write(data[100:])
	require.NoError(t, err)
	resp, err = http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	ex := <-stopped
	require.NoError(t, ex.err)
	require.Equal(t, 0, ex.code, "a drain that finished its work is clean")
	e.wait(moving, model.SubrequestStatusFinished)
	s = e.sub(req)
	require.Equal(t, model.SubrequestStatusRetry, s.Status, "the transfer is handed back for another try: %+v", s)
}

// copyOnDisk is where the readable copy of path lives, and its id.
func (e *env) copyOnDisk(path string) (string, int64) {
	e.t.Helper()
	var file string
	var id int64
	require.NoError(e.t, e.db.Pool().QueryRow(e.ctx, `select fs.mount_point || '/' || dc.disk_path, dc.id
		from disk_copy dc join file f on f.id = dc.file_id join file_system fs on fs.id = dc.file_system_id
		where f.path = $1 and dc.status = 'STAGED'`, path).Scan(&file, &id))
	return file, id
}

// damage changes the copy of path on disk: flips the byte at off, or appends one (off < 0).
func (e *env) damage(path string, off int64) int64 {
	e.t.Helper()
	file, id := e.copyOnDisk(path)
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	require.NoError(e.t, err)
	defer f.Close()
	if off < 0 {
		_, err = f.Seek(0, io.SeekEnd)
		require.NoError(e.t, err)
		_, err = f.Write([]byte{0})
		require.NoError(e.t, err)
		return id
	}
	b := make([]byte, 1)
	_, err = f.ReadAt(b, off)
	require.NoError(e.t, err)
	_, err = f.WriteAt([]byte{^b[0]}, off)
	require.NoError(e.t, err)
	return id
}

func (e *env) corruptAt(copyID int64) *time.Time {
	e.t.Helper()
	var at *time.Time
	require.NoError(e.t, e.db.Pool().QueryRow(e.ctx, "select corrupt_at from disk_copy where id = $1", copyID).Scan(&at))
	return at
}

// A copy whose bytes on disk are not the catalogue's is never served whole: a small one
// is refused with the reason, a large one is cut before its last part. Either way the read
// fails naming the copy and both checksums, the copy is marked for the operator and kept
// from the garbage collector, and later reads of the file fail at once.
func TestCorruptCopyIsNotServed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.start("ds-1", "")

	small := randomBytes(t, 1000)
	e.put("/pollux/small", small)
	copyID := e.damage("/pollux/small", 10)
	onDisk := append([]byte(nil), small...)
	onDisk[10] = ^onDisk[10]
	get, g := e.ready(model.RequestTypeGet, "/pollux/small")
	resp, body := call(t, http.MethodGet, *g.MoverURL, *g.Token, nil, nil)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "nothing was sent yet: %s", body)
	msg := fmt.Sprintf("is corrupt: it has 1000 bytes with adler32 %s, the catalogue 1000 bytes with adler32 %s", adler(onDisk), adler(small))
	require.Contains(t, errorBody(t, body).Message, msg)
	require.Contains(t, errorBody(t, body).Message, fmt.Sprintf("copy %d of /pollux/small on ds-1", copyID))
	e.failed(get, model.SQLStateTransferFailed, msg)
	require.NotNil(t, e.corruptAt(copyID))
	var events int
	require.NoError(t, e.db.Pool().QueryRow(e.ctx, "select count(*) from system_event where kind = 'disk_copy_corrupt' and detail->>'disk_copy_id' = $1",
		fmt.Sprint(copyID)).Scan(&events))
	require.Equal(t, 1, events, "the operator is told")

	again := e.submit(model.RequestTypeGet, false, "/pollux/small")
	e.stage()
	e.failed(again, model.SQLStateTransferFailed, fmt.Sprintf("/pollux/small has no readable copy: its copy %d was found corrupt", copyID))

	// A copy of many segments, damaged near its start: the client gets the header and most
	// of the bytes, never all of them.
	large := randomBytes(t, 10<<20+5)
	e.put("/pollux/large", large)
	largeID := e.damage("/pollux/large", 7)
	get, g = e.ready(model.RequestTypeGet, "/pollux/large")
	req, err := http.NewRequest(http.MethodGet, *g.MoverURL, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+*g.Token)
	r, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.StatusCode)
	require.EqualValues(t, len(large), r.ContentLength)
	require.Equal(t, adler(large), r.Header.Get(api.HeaderAdler32))
	got, err := io.ReadAll(r.Body)
	r.Body.Close()
	require.ErrorIs(t, err, io.ErrUnexpectedEOF, "the connection is cut")
	require.Less(t, len(got), len(large))
	e.failed(get, model.SQLStateTransferFailed, fmt.Sprintf("copy %d of /pollux/large", largeID))
	require.NotNil(t, e.corruptAt(largeID))

	// A copy of another size than the catalogue's is refused before a byte is read.
	e.put("/pollux/grown", small)
	grownID := e.damage("/pollux/grown", -1)
	get, g = e.ready(model.RequestTypeGet, "/pollux/grown")
	resp, body = call(t, http.MethodGet, *g.MoverURL, *g.Token, nil, nil)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, string(body))
	msg = fmt.Sprintf("is corrupt: it has 1001 bytes, the catalogue 1000 bytes with adler32 %s", adler(small))
	e.failed(get, model.SQLStateTransferFailed, msg)
	require.NotNil(t, e.corruptAt(grownID))

	// Removed, the corrupt copy stays on disk: the collector deletes a copy removed after it
	// and leaves it.
	file, _ := e.copyOnDisk("/pollux/small")
	e.put("/pollux/later", small)
	later, _ := e.copyOnDisk("/pollux/later")
	for _, p := range []string{"/pollux/small", "/pollux/later"} {
		rm := e.submit(model.RequestTypeRm, false, p)
		e.stage()
		e.wait(rm, model.SubrequestStatusFinished)
	}
	require.Eventually(t, func() bool { _, err := os.Stat(later); return errors.Is(err, fs.ErrNotExist) }, 20*time.Second, 20*time.Millisecond)
	require.FileExists(t, file, "kept for the operator")
	require.Equal(t, 0, d.shutdown(t), d.log.String())
}

func TestGetClientGoesAway(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start("ds-1", "")
	// Larger than what the loopback's socket buffers hold, so the mover is still sending.
	data := randomBytes(t, 32<<20)
	e.put("/pollux/long", data)
	get, g := e.ready(model.RequestTypeGet, "/pollux/long")
	req, err := http.NewRequest(http.MethodGet, *g.MoverURL, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+*g.Token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_, err = io.ReadFull(resp.Body, make([]byte, 1<<20))
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close()) // mid-way: the connection is closed

	s := e.failed(get, model.SQLStateTransferFailed, "the client disconnected after ")
	require.Contains(t, *s.ErrorMessage, fmt.Sprintf(" of %d bytes", len(data)))
}

// availability reads a disk server's availability.
func (e *env) availability(t require.TestingT, id int64) model.DiskServerAvailability {
	var a model.DiskServerAvailability
	require.NoError(t, e.db.Pool().QueryRow(e.ctx, "select availability from disk_server where id = $1", id).Scan(&a))
	return a
}

// A stopping disk server leaves placement at its first signal, before it stops serving:
// what was only placed on it goes to another server without using up a retry, while a
// transfer moving data finishes during the drain.
func TestStopLeavesPlacementAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.start("ds-stop", "")
	data := randomBytes(t, 10_000)
	moving, m := e.ready(model.RequestTypePut, "/pollux/moving")
	conn := rawPut(t, *m.MoverURL, *m.Token, int64(len(data)), data[:100])
	defer conn.Close()
	// Placed and not claimed: without a hint, the claim polls once a minute here.
	queued := e.submit(model.RequestTypePut, true, "/pollux/queued")
	require.NoError(t, e.db.Tx(e.ctx, "stage without a hint", func(q pg.Querier) error {
		_, err := model.SubrequestClaim(e.ctx, q, "put", 10)
		return err
	}))
	require.Equal(t, d.id, *e.sub(queued).DiskServerID)
	// Another server, registered now (so heartbeating for the liveness window).
	other, err := model.DiskServerRegister(e.ctx, e.db.Pool(), "ds-other", "http://127.0.0.1:1", 0)
	require.NoError(t, err)
	_, err = model.FileSystemRegister(e.ctx, e.db.Pool(), other, t.TempDir(), "default", 1<<40, 1<<39)
	require.NoError(t, err)

	type exit struct {
		code int
		err  error
	}
	stopped := make(chan exit, 1)
	go func() { code, err := d.stopAndWait(); stopped <- exit{code, err} }()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, model.DiskServerAvailabilityStopped, e.availability(c, d.id))
	}, 10*time.Second, 5*time.Millisecond, "out of placement at the first signal")
	q := e.sub(queued)
	require.Equal(t, model.SubrequestStatusScheduled, q.Status)
	require.Equal(t, other, *q.DiskServerID, "what was only placed there goes elsewhere")
	require.Zero(t, q.Retries)
	select {
	case ex := <-stopped:
		t.Fatalf("the daemon exited (%d, %v) while a transfer was moving data", ex.code, ex.err)
	default:
	}

	_, err = conn.Write(data[100:])
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, resp.StatusCode, "the transfer moving data finishes during the drain")
	ex := <-stopped
	require.NoError(t, ex.err)
	require.Equal(t, 0, ex.code)
	e.wait(moving, model.SubrequestStatusFinished)
	require.Equal(t, model.DiskServerAvailabilityStopped, e.availability(t, d.id), "its heartbeats during the drain did not bring it back")
	require.Regexp(t, `"msg":"disk server out of placement: stopping".*"placed_again":1`, d.log.String())
}

// The disk server heartbeats at the pace the policy sets, and a server the job manager
// found silent is back at its next heartbeat.
func TestHeartbeatPaceAndReturn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.policy("disk_server_live_seconds", 2) // a heartbeat every half second
	d := e.start("ds-pace", "")
	_, err := e.db.Pool().Exec(e.ctx, "update disk_server set availability = 'SILENT', unavailable_since = heartbeat_at where id = $1", d.id)
	require.NoError(t, err)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, model.DiskServerAvailabilityAvailable, e.availability(c, d.id))
	}, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return strings.Contains(d.log.String(), "disk server back in placement") }, 10*time.Second, 10*time.Millisecond)

	var before, after time.Time
	require.NoError(t, e.db.Pool().QueryRow(e.ctx, "select heartbeat_at from disk_server where id = $1", d.id).Scan(&before))
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		require.NoError(c, e.db.Pool().QueryRow(e.ctx, "select heartbeat_at from disk_server where id = $1", d.id).Scan(&after))
		assert.GreaterOrEqual(c, after.Sub(before), 1500*time.Millisecond, "three more heartbeats")
	}, 10*time.Second, 50*time.Millisecond)
	beats := strings.Count(d.log.String(), "disk server heartbeat") // none fails
	require.Zero(t, beats)
}

// A request submitted with a transfer key (as every client does through rhd) is served
// only to a caller presenting the token with the secret whose hash the request carries:
// the token alone, which the database holds, and the token with another secret are
// refused with 403 and spend nothing; the whole credential moves the data, once.
func TestTransferNeedsTheClientsSecret(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start("ds-key", "")
	secret, err := api.NewTransferSecret()
	require.NoError(t, err)
	hash := api.TransferKeyHash(secret)
	id := uuid.New()
	_, err = model.RequestSubmit(e.ctx, e.db.Pool(), id, model.RequestTypePut, "default", "alice", "", "test", []string{"/pollux/keyed"}, true, &hash, nil)
	require.NoError(t, err)
	e.stage()
	s := e.wait(id, model.SubrequestStatusReady)
	data := []byte("keyed content")
	hdr := map[string]string{api.HeaderAdler32: adler(data)}
	for _, tc := range []struct{ name, credential, msg string }{
		{"the token alone", *s.Token, "the transfer token comes without its secret"},
		{"another secret", api.TransferCredential(*s.Token, "not-the-secret"), "the transfer secret does not check"},
		{"the secret with another token", api.TransferCredential(strings.Repeat("0", 64), secret), "the transfer token does not check"},
	} {
		resp, body := call(t, http.MethodPut, *s.MoverURL, tc.credential, bytes.NewReader(data), hdr)
		require.Equal(t, http.StatusForbidden, resp.StatusCode, "%s: %s", tc.name, body)
		require.Contains(t, errorBody(t, body).Message, tc.msg, tc.name)
		require.Equal(t, model.SubrequestStatusReady, e.sub(id).Status, "%s: refused, and nothing spent", tc.name)
	}
	resp, body := call(t, http.MethodPut, *s.MoverURL, api.TransferCredential(*s.Token, secret), bytes.NewReader(data), hdr)
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(body))
	e.wait(id, model.SubrequestStatusFinished)
	resp, body = call(t, http.MethodPut, *s.MoverURL, api.TransferCredential(*s.Token, secret), bytes.NewReader(data), hdr)
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "spent: %s", body)
}
