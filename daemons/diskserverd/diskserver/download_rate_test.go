package diskserver_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/model"
)

// TestStalledDownloadIsDropped: a download whose reader stops reading is dropped by the
// same minimum rate as an upload (policy transfer_min_bytes_per_second over
// transfer_min_rate_seconds, read at claim): once the connection's buffers are full, its
// sendfile calls stop returning, no bytes are counted, and the transfer fails saying why
// long before transfer_seconds. A download read at full speed under the same policy passes.
func TestStalledDownloadIsDropped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.policy("transfer_min_bytes_per_second", 1000)
	e.policy("transfer_min_rate_seconds", 1)
	e.start("ds-1", "")
	// Larger than what the loopback connection's buffers take in before its reader reads.
	data := randomBytes(t, 48<<20)
	e.put("/pollux/big", data)

	_, g := e.ready(model.RequestTypeGet, "/pollux/big")
	resp, body := call(t, http.MethodGet, *g.MoverURL, *g.Token, nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.True(t, bytes.Equal(data, body), "a download read at full speed is not touched")

	req, s := e.ready(model.RequestTypeGet, "/pollux/big")
	u, err := url.Parse(*s.MoverURL)
	require.NoError(t, err)
	conn, err := net.Dial("tcp", u.Host)
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n", u.Path, u.Host, *s.Token)
	require.NoError(t, err)
	_, err = io.ReadFull(conn, make([]byte, 4096)) // the status line and the first bytes; then nothing more is read
	require.NoError(t, err)
	start := time.Now()
	failed := e.failed(req, model.SQLStateTransferFailed, "below the minimum of 1000 bytes per second (policy transfer_min_bytes_per_second)")
	require.Contains(t, *failed.ErrorMessage, "the download sent 0 bytes in the last 1s")
	require.Less(t, time.Since(start), 30*time.Second, "dropped by the rate, not by transfer_seconds (an hour)")
}
