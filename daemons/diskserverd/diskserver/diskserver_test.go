package diskserver_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"hash/adler32"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/daemons/diskserverd/diskserver"
	"github.com/pollux-storage/pollux/daemons/diskserverd/mover"
	"github.com/pollux-storage/pollux/daemons/internal/jobs"
	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/framework/daemon"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/queue"
	"github.com/pollux-storage/pollux/framework/uuid"
	"github.com/pollux-storage/pollux/model"
	"github.com/pollux-storage/pollux/schema/schematest"
)

// The rest of the life cycle (rhd, stagerd, jobmanagerd, schedulerd) is driven through the
// logic's wrappers, as schema/lifecycle_test.go does; diskserverd runs in-process.

type env struct {
	t     *testing.T
	ctx   context.Context
	dsn   string
	db    *pg.DB
	river *queue.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	dsn := schematest.DSN(t)
	db, err := pg.Open(ctx, pg.Config{DSN: dsn})
	require.NoError(t, err)
	t.Cleanup(db.Close)
	rc, err := queue.New(db, queue.Config{})
	require.NoError(t, err)
	return &env{t: t, ctx: ctx, dsn: dsn, db: db, river: rc}
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
	if dir == "" {
		dir = filepath.Join(e.t.TempDir(), "data") // created by the daemon
	}
	ctx, stop := context.WithCancel(e.ctx)
	d := &diskServer{name: name, dir: dir, stop: stop, exited: make(chan int, 1), log: &syncBuffer{}}
	args = append([]string{"--log-format", "json", "--name", name, "--listen", "127.0.0.1:0", "--data-dir", dir,
		"--gc-interval", "100ms", "--drain-timeout", "2s"}, args...)
	go func() {
		d.exited <- daemon.Run(ctx, args, []string{"POLLUX_DATABASE_URL=" + e.dsn}, io.Discard, d.log, diskserver.Spec())
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
	_, err := model.RequestSubmit(e.ctx, e.db.Pool(), id, typ, "default", "alice", "", "test", []string{path}, autoClose)
	require.NoError(e.t, err)
	return id
}

// stage runs the stager's put, get and rm decisions once.
func (e *env) stage() {
	e.t.Helper()
	require.NoError(e.t, e.db.Tx(e.ctx, "stage", func(q pg.Querier) error {
		if _, err := model.SubrequestClaim(e.ctx, q, "put", 100); err != nil {
			return err
		}
		if _, err := model.SubrequestClaim(e.ctx, q, "get", 100); err != nil {
			return err
		}
		_, err := model.SubrequestClaim(e.ctx, q, "rm", 100)
		return err
	}))
}

// schedule runs the job manager and the scheduler once, queuing each transfer job on the
// chosen server's queue in the same transaction, as schedulerd does.
func (e *env) schedule() []model.SubrequestScheduleRow {
	e.t.Helper()
	var out []model.SubrequestScheduleRow
	require.NoError(e.t, e.db.Tx(e.ctx, "schedule", func(q pg.Querier) error {
		out = nil
		claimed, err := model.SubrequestClaimWaitsched(e.ctx, q, 100)
		if err != nil {
			return err
		}
		for _, c := range claimed {
			rows, err := model.SubrequestSchedule(e.ctx, q, c.ID)
			if err != nil {
				return err
			}
			for _, r := range rows {
				if err := e.river.InsertTx(e.ctx, q, jobs.Transfer{SubrequestID: c.ID}, &river.InsertOpts{Queue: r.Queue}); err != nil {
					return err
				}
			}
			out = append(out, rows...)
		}
		return nil
	}))
	return out
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
	require.Len(e.t, e.schedule(), 1, "placed: %+v", e.sub(req))
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
// a new id and so a new River queue, and works that queue without a restart.
func TestReRegisteredServerWorksItsNewQueue(t *testing.T) {
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
	require.Eventually(t, func() bool { return strings.Contains(d.log.String(), "working its new queue") }, 10*time.Second, 10*time.Millisecond)

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
	data := randomBytes(t, 3<<20+17)

	req, s := e.ready(model.RequestTypePut, "/pollux/u/alice/f")
	require.Equal(t, mover.TransferURL(strings.TrimSuffix(*s.MoverURL, fmt.Sprintf("/v1/transfers/%d", s.ID)), s.ID), *s.MoverURL)
	token := *s.Token

	// Calls that can be corrected do not spend the token.
	resp, body := call(t, http.MethodPut, *s.MoverURL, "", bytes.NewReader(data), nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, string(body))
	require.Equal(t, "permission", errorBody(t, body).Kind)
	resp, body = call(t, http.MethodPut, *s.MoverURL, "wrong", bytes.NewReader(data), nil)
	require.Equal(t, http.StatusForbidden, resp.StatusCode, string(body))
	require.Equal(t, api.Error{Kind: "permission", Code: model.SQLStatePermissionDenied, Message: errorBody(t, body).Message}, errorBody(t, body))
	resp, body = call(t, http.MethodPut, *s.MoverURL, *s.Token, io.MultiReader(bytes.NewReader(data)), nil) // no length: chunked
	require.Equal(t, http.StatusLengthRequired, resp.StatusCode, string(body))
	resp, body = call(t, http.MethodGet, *s.MoverURL, *s.Token, nil, nil)
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, string(body))
	require.Contains(t, errorBody(t, body).Message, "is a PUT transfer")

	resp, body = call(t, http.MethodPut, *s.MoverURL, *s.Token, bytes.NewReader(data), map[string]string{api.HeaderAdler32: strings.ToUpper(adler(data))})
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(body))
	var up api.UploadResponse
	require.NoError(t, json.Unmarshal(body, &up))
	require.Equal(t, api.UploadResponse{SizeBytes: int64(len(data)), ChecksumAdler32: adler(data)}, up)

	s = e.wait(req, model.SubrequestStatusFinished)
	require.EqualValues(t, len(data), *s.SizeBytes)
	require.Equal(t, adler(data), *s.ChecksumAdler32)
	q, err := model.FileQuery(e.ctx, e.db.Pool(), "/pollux/u/alice/f")
	require.NoError(t, err)
	require.Equal(t, "STAGED", q[0].Status)
	require.Equal(t, adler(data), *q[0].ChecksumAdler32)
	stored := files(t, d.dir)
	require.Len(t, stored, 1, "the copy and no partial file")
	onDisk, err := os.ReadFile(stored[0])
	require.NoError(t, err)
	require.True(t, bytes.Equal(data, onDisk), "the bytes on disk are the bytes sent")

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
	require.Equal(t, adler(data), resp.Trailer.Get(api.HeaderAdler32), "the checksum comes as a trailer")
	require.Equal(t, fmt.Sprint(len(data)), resp.Header.Get(api.HeaderSize))
	g = e.wait(get, model.SubrequestStatusFinished)
	require.EqualValues(t, len(data), *g.SizeBytes)
	require.Equal(t, 0, d.shutdown(t), d.log.String())
	require.Contains(t, d.log.String(), `"msg":"upload ended"`)
}

// rawPut sends a PUT's header and part of its body over a plain connection.
func rawPut(t *testing.T, target, token string, declared int64, body []byte) net.Conn {
	t.Helper()
	u, err := url.Parse(target)
	require.NoError(t, err)
	conn, err := net.Dial("tcp", u.Host)
	require.NoError(t, err)
	_, err = fmt.Fprintf(conn, "PUT %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n",
		u.Path, u.Host, token, declared)
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
	_, err := model.FileQuery(e.ctx, e.db.Pool(), "/pollux/truncated")
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

	// A malformed checksum is refused before the token is spent.
	_, s2 := e.ready(model.RequestTypePut, "/pollux/other")
	resp, body = call(t, http.MethodPut, *s2.MoverURL, *s2.Token, bytes.NewReader(data), map[string]string{api.HeaderAdler32: "xyz"})
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, string(body))
	require.Contains(t, errorBody(t, body).Message, "is not eight hex digits")
	resp, body = call(t, http.MethodPut, *s2.MoverURL, *s2.Token, bytes.NewReader(data), nil)
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(body))
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
	e.start("ds-1", "", "--open-timeout", "1s")
	req, s := e.ready(model.RequestTypePut, "/pollux/late")
	e.failed(req, model.SQLStateTransferFailed, "the client did not connect within 1s")
	resp, body := call(t, http.MethodPut, *s.MoverURL, *s.Token, bytes.NewReader([]byte("late")), nil)
	require.Equal(t, http.StatusForbidden, resp.StatusCode, string(body))
}

func TestTransferTimeoutCutsAStalledClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.start("ds-1", "", "--transfer-timeout", "1s")
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
	_, err = model.FileSystemRegister(e.ctx, e.db.Pool(), reg[0].ID, dir, "default", 1<<40, 1<<39)
	require.NoError(t, err)
	req := e.submit(model.RequestTypePut, true, "/pollux/orphan")
	e.stage()
	require.NoError(t, e.db.Tx(e.ctx, "schedule", func(q pg.Querier) error {
		claimed, err := model.SubrequestClaimWaitsched(e.ctx, q, 10)
		if err != nil {
			return err
		}
		_, err = model.SubrequestSchedule(e.ctx, q, claimed[0].ID)
		return err
	}))
	s := e.sub(req)
	_, err = model.TransferStart(e.ctx, e.db.Pool(), s.ID, reg[0].ID, "http://127.0.0.1:1/v1/transfers/1", "old")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "left.part"), []byte("half"), 0o644))
	old := time.Now().Add(-time.Hour)
	require.NoError(t, os.Chtimes(filepath.Join(dir, "left.part"), old, old))

	d := e.start("ds-r", dir)
	require.Equal(t, reg[0].ID, d.id, "the server keeps its identity")
	s = e.sub(req)
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
