package diskserver_test

import (
	"bytes"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/framework/certs"
	"github.com/pollux-storage/pollux/framework/certs/certstest"
	"github.com/pollux-storage/pollux/model"
)

// TestMoversServeTLS: with --tls-cert-file and --tls-key-file the movers serve HTTPS and
// publish https:// URLs; a client trusting the test's CA uploads and reads back, one
// trusting only the system's pool is refused by its own verification before it sends
// its token. Without the flags, on loopback, the disk server says it serves plain HTTP.
func TestMoversServeTLS(t *testing.T) {
	t.Parallel()
	f := certstest.Write(t, "127.0.0.1")
	trusting, err := certs.Client(f.CA)
	require.NoError(t, err)
	// The stager's wake-up hints go to the movers' listener too: over TLS, trusting the CA.
	e := newEnvTrusting(t, trusting)
	d := e.start("ds-tls", "", "--tls-cert-file", f.Cert, "--tls-key-file", f.Key)
	var url string
	require.NoError(t, e.db.Pool().QueryRow(e.ctx, "select url from disk_server where id = $1", d.id).Scan(&url))
	require.True(t, strings.HasPrefix(url, "https://127.0.0.1:"), url)
	require.NotContains(t, d.log.String(), "plain HTTP")

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: trusting}}
	defer client.CloseIdleConnections()
	send := func(cl *http.Client, method, target, token string, body []byte, hdr map[string]string) (*http.Response, []byte, error) {
		req, err := http.NewRequest(method, target, bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := cl.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}

	data := randomBytes(t, 1<<20+5)
	req, s := e.ready(model.RequestTypePut, "/pollux/u/alice/tls")
	require.True(t, strings.HasPrefix(*s.MoverURL, "https://"), *s.MoverURL)

	system, err := certs.Client("")
	require.NoError(t, err)
	_, _, err = send(&http.Client{Transport: &http.Transport{TLSClientConfig: system}}, http.MethodPut, *s.MoverURL, *s.Token, data, nil)
	var unknown x509.UnknownAuthorityError
	require.True(t, errors.As(err, &unknown), "the system's pool does not know the test's CA: %v", err)
	require.Equal(t, model.SubrequestStatusReady, e.sub(req).Status, "the refused handshake spent nothing")

	resp, body, err := send(client, http.MethodPut, *s.MoverURL, *s.Token, data, map[string]string{api.HeaderAdler32: adler(data)})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(body))
	e.wait(req, model.SubrequestStatusFinished)

	get, g := e.ready(model.RequestTypeGet, "/pollux/u/alice/tls")
	resp, body, err = send(client, http.MethodGet, *g.MoverURL, *g.Token, nil, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.True(t, bytes.Equal(data, body), "the bytes read over TLS are the bytes written")
	e.wait(get, model.SubrequestStatusFinished)

	plain := e.start("ds-plain", "")
	require.Contains(t, plain.log.String(), "movers on plain HTTP on loopback")
}
