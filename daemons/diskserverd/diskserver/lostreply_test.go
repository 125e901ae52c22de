package diskserver_test

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/framework/pgtest/pgproxy"
	"github.com/pollux-storage/pollux/model"
)

// The disk server reaches the database through a proxy that lets one commit through and
// loses its reply, as a failover or a cut connection does.

func requireCut(t *testing.T, cut <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-cut:
	default:
		t.Fatalf("the proxy did not lose the reply to %s", what)
	}
}

// A `pollux cp` over an existing file whose end report commits and loses its reply: the
// mover reports again, finds the end recorded, keeps the bytes and answers 201. The new
// version is the file's content and reads back whole; the old one was superseded once.
// (Before, the repeated report was refused, the mover deleted the bytes the catalogue
// called STAGED, and with the old version invalidated the file had no content left.)
func TestPutWhoseEndReplyIsLostEndsStaged(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	proxy := pgproxy.New(t, e.dsn)
	d := e.startOn(proxy.DSN(), "ds-cut", "")
	old := randomBytes(t, 100<<10)
	first, _ := e.put("/pollux/u/alice/cut", old)
	e.wait(first, model.SubrequestStatusFinished)

	data := randomBytes(t, 5<<20+3)
	req, s := e.ready(model.RequestTypePut, "/pollux/u/alice/cut")
	cut := proxy.Arm(pgproxy.Statement("transfer_put_ended"))
	resp, body := call(t, http.MethodPut, *s.MoverURL, *s.Token, bytes.NewReader(data), map[string]string{api.HeaderAdler32: adler(data)})
	require.Equal(t, http.StatusCreated, resp.StatusCode, "%s\n%s", body, d.log.String())
	requireCut(t, cut, "transfer_put_ended")
	require.Contains(t, d.log.String(), `"class":"outcome unknown"`, "the mover's report was run again after its reply was lost")

	s = e.wait(req, model.SubrequestStatusFinished)
	require.EqualValues(t, len(data), *s.SizeBytes)
	q, err := model.FileQuery(e.ctx, e.db.Pool(), "/pollux/u/alice/cut", "alice")
	require.NoError(t, err)
	require.Equal(t, "STAGED", q[0].Status)
	require.Equal(t, adler(data), *q[0].ChecksumAdler32)
	// The old version's copy is collected; the new one's bytes stay, and only they.
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Len(c, files(c, d.dir), 1) }, 10*time.Second, 10*time.Millisecond)
	onDisk, err := os.ReadFile(files(t, d.dir)[0])
	require.NoError(t, err)
	require.True(t, bytes.Equal(data, onDisk), "the bytes on disk are the new version")

	get, g := e.ready(model.RequestTypeGet, "/pollux/u/alice/cut")
	resp, body = call(t, http.MethodGet, *g.MoverURL, *g.Token, nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.True(t, bytes.Equal(data, body), "the file reads back as written")
	require.Equal(t, adler(data), resp.Header.Get(api.HeaderAdler32))
	e.wait(get, model.SubrequestStatusFinished)
	require.Equal(t, 1, proxy.Cuts())
	require.Equal(t, 0, d.shutdown(t), d.log.String())
}

// A claim whose commit reply is lost made its transfers READY and told their clients, but
// the disk server never heard: its re-run, keyed by the same tokens, returns the same
// transfers, so the mover knows the token the client holds.
func TestClaimWhoseCommitReplyIsLostServesItsTransfers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	proxy := pgproxy.New(t, e.dsn)
	claims := proxy.Count(pgproxy.CommitOf("transfer_claim"))
	d := e.startOn(proxy.DSN(), "ds-cut-claim", "")
	// The claim loop steps once as it starts, and finds nothing: the claim whose reply is
	// lost must be the one that claims the put.
	require.Eventually(t, func() bool { return claims() > 0 }, 10*time.Second, time.Millisecond, "the first claim")
	cut := proxy.Arm(pgproxy.CommitOf("transfer_claim"))
	data := randomBytes(t, 64<<10)
	req, s := e.ready(model.RequestTypePut, "/pollux/u/alice/claimed")
	resp, body := call(t, http.MethodPut, *s.MoverURL, *s.Token, bytes.NewReader(data), map[string]string{api.HeaderAdler32: adler(data)})
	require.Equal(t, http.StatusCreated, resp.StatusCode, "%s\n%s", body, d.log.String())
	requireCut(t, cut, "the claim's commit")
	s = e.wait(req, model.SubrequestStatusFinished)
	require.Equal(t, adler(data), *s.ChecksumAdler32)
	require.Equal(t, 0, d.shutdown(t), d.log.String())
	// Counted once the daemon has exited: a watcher logs as it starts. None at all is
	// right when the client ended the upload before the claim's re-run: the re-run then
	// finds the transfer over, and there is nothing left to watch.
	require.LessOrEqual(t, strings.Count(d.log.String(), `"msg":"transfer ready: waiting for the client"`), 1, "one watcher at most for the transfer")
}

// refusedUpload starts an upload to path, removes the file while it is written, lets
// settle run, then sends the rest; the mover refuses the end with a conflict.
func (e *env) refusedUpload(d *diskServer, path string, settle func(s model.Subrequest)) model.Subrequest {
	e.t.Helper()
	req, s := e.ready(model.RequestTypePut, path)
	data := randomBytes(e.t, 10_000)
	conn := rawPut(e.t, *s.MoverURL, *s.Token, int64(len(data)), data[:5000])
	defer conn.Close()
	require.EventuallyWithT(e.t, func(c *assert.CollectT) { assert.Len(c, files(c, d.dir), 1) }, 10*time.Second, 5*time.Millisecond)
	rm := e.submit(model.RequestTypeRm, false, path)
	e.stage()
	e.wait(rm, model.SubrequestStatusFinished)
	e.failed(req, model.SQLStateConflict, "removed")
	settle(s)
	_, err := conn.Write(data[5000:])
	require.NoError(e.t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(e.t, err)
	b, _ := io.ReadAll(resp.Body)
	require.Equal(e.t, http.StatusConflict, resp.StatusCode, string(b))
	return s
}

func (e *env) copyRecorded(t require.TestingT, id int64) bool {
	var n int
	require.NoError(t, e.db.Pool().QueryRow(e.ctx, "select count(*) from disk_copy where id = $1", id).Scan(&n))
	return n > 0
}

// A refused upload whose copy the catalogue still records (INVALID: removed) is left to
// the garbage collector: the mover unlinks nothing the catalogue names.
func TestRefusedUploadOfARecordedCopyIsLeftToTheCollector(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.start("ds-keep", "", "--gc-interval", "1h") // the collector's first look was at start
	s := e.refusedUpload(d, "/pollux/kept", func(model.Subrequest) {})
	require.True(t, e.copyRecorded(t, *s.DiskCopyID))
	require.Len(t, files(t, d.dir), 1, "the refused copy's bytes stay for its collector")
	require.Equal(t, 0, d.shutdown(t), d.log.String())
}

// A refused upload whose copy was collected already (its row gone while the bytes were
// still a partial file) is unlinked by the mover: nobody else ever would.
func TestRefusedUploadOfACollectedCopyIsUnlinked(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.start("ds-orphan", "")
	e.refusedUpload(d, "/pollux/orphan", func(s model.Subrequest) {
		require.EventuallyWithT(t, func(c *assert.CollectT) { assert.False(c, e.copyRecorded(c, *s.DiskCopyID)) },
			10*time.Second, 5*time.Millisecond, "the collector forgets the removed file's copy")
	})
	require.Empty(t, files(t, d.dir), "the mover unlinked the bytes before it answered")
	require.Equal(t, 0, d.shutdown(t), d.log.String())
}
