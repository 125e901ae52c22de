package diskserver_test

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
)

// TestUploadPastTheQuotaIsRefused: the bytes of an upload are known at its end, where the
// owner's quota takes them or refuses them (transfer_put_ended). A refused upload is
// answered 507 with the quota's message, its write fails with quota_exceeded, and its
// bytes leave the disk (the copy is INVALID, for the garbage collector); one that fits
// under the same quota is taken.
func TestUploadPastTheQuotaIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, err := model.QuotaSet(e.ctx, e.db.Pool(), "alice", "default", new(int64(100_000)), nil, "test")
	require.NoError(t, err)
	d := e.start("ds-1", "")

	e.put("/pollux/fits", randomBytes(t, 60_000))

	req, s := e.ready(model.RequestTypePut, "/pollux/too-big")
	data := randomBytes(t, 50_000)
	resp, body := call(t, http.MethodPut, *s.MoverURL, *s.Token, bytes.NewReader(data), map[string]string{api.HeaderAdler32: adler(data)})
	require.Equal(t, http.StatusInsufficientStorage, resp.StatusCode, string(body))
	msg := "quota exceeded: user alice in service class default has 60 kB of 100 kB, this write of 50 kB needs 10 kB more"
	require.Equal(t, api.Error{Kind: "quota", Code: model.SQLStateQuotaExceeded, Message: msg}, errorBody(t, body))
	e.failed(req, model.SQLStateQuotaExceeded, msg)
	_, err = model.FileQuery(e.ctx, e.db.Pool(), "/pollux/too-big", "alice")
	require.Equal(t, model.SQLStateNotFound, pg.SQLState(err), "a file whose only write was refused is gone")
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Len(c, files(c, d.dir), 1, "only the copy that fits") },
		10*time.Second, 5*time.Millisecond)
	user := "alice"
	usage, err := model.QuotaList(e.ctx, e.db.Pool(), &user)
	require.NoError(t, err)
	require.EqualValues(t, 60_000, usage[0].Bytes)
	require.EqualValues(t, 1, usage[0].Files)
}
