package diskserver_test

import (
	"bufio"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/model"
)

// TestSlowUploadIsDropped: an upload that receives fewer bytes per second than policy
// transfer_min_bytes_per_second over transfer_min_rate_seconds (read at claim) is dropped
// long before transfer_seconds: the transfer fails saying why, the connection is closed and
// the partial file goes. A fast upload under the same policy is not touched.
func TestSlowUploadIsDropped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.policy("transfer_min_bytes_per_second", 1000)
	e.policy("transfer_min_rate_seconds", 1)
	d := e.start("ds-1", "")

	e.put("/pollux/fast", randomBytes(t, 4<<20))

	req, s := e.ready(model.RequestTypePut, "/pollux/trickle")
	start := time.Now()
	conn := rawPut(t, *s.MoverURL, *s.Token, 100000, []byte("only this"))
	defer conn.Close()
	failed := e.failed(req, model.SQLStateTransferFailed, "below the minimum of 1000 bytes per second (policy transfer_min_bytes_per_second)")
	require.Contains(t, *failed.ErrorMessage, "in the last 1s")
	require.Less(t, time.Since(start), 30*time.Second, "dropped by the rate, not by transfer_seconds (an hour)")
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err == nil {
		_, err = conn.Read(make([]byte, 1))
	}
	require.Error(t, err, "the trickling connection is closed")
	require.EventuallyWithT(t, func(c *assert.CollectT) { assert.Len(c, files(c, d.dir), 1, "only the fast upload's copy") }, 10*time.Second, 5*time.Millisecond)
}
