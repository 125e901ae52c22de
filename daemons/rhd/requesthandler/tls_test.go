package requesthandler_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/framework/certs"
	"github.com/pollux-storage/pollux/framework/certs/certstest"
)

// TestTLS: with --tls-cert-file and --tls-key-file rhd serves HTTPS; a client trusting the
// test's CA is served, one trusting only the system's pool is refused by its own
// verification, and plain HTTP to the port gets no answer of the API. Without the flags,
// on loopback, rhd says it serves plain HTTP there.
func TestTLS(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	f := certstest.Write(t, "127.0.0.1")
	a := c.rhd("--tls-cert-file", f.Cert, "--tls-key-file", f.Key)
	base := "https://" + a.Addr
	require.NotEmpty(t, a.Log.Lines("request handler listening"))
	require.Equal(t, "https", a.Log.Lines("request handler listening")[0]["scheme"])

	trusting, err := certs.Client(f.CA)
	require.NoError(t, err)
	get := func(cfg *tls.Config, u string) (*http.Response, []byte, error) {
		cl := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		defer cl.CloseIdleConnections()
		req, err := http.NewRequest(http.MethodGet, u, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+aliceToken)
		resp, err := cl.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}
	resp, body, err := get(trusting, base+api.PathFiles+"?path=/pollux/nope")
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, resp.StatusCode, string(body))
	require.Contains(t, string(body), "no such file: /pollux/nope")

	system, err := certs.Client("")
	require.NoError(t, err)
	_, _, err = get(system, base+api.PathFiles+"?path=/pollux/nope")
	var unknown x509.UnknownAuthorityError
	require.True(t, errors.As(err, &unknown), "the system's pool does not know the test's CA: %v", err)

	resp, body, err = get(nil, "http://"+a.Addr+api.PathFiles+"?path=/pollux/nope")
	require.NoError(t, err)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, "plain HTTP to an HTTPS port: %s", body)
	require.NotContains(t, string(body), "no such file", "plain HTTP never reaches the API")

	plain := c.rhd()
	require.Equal(t, "http", plain.Log.Lines("request handler listening")[0]["scheme"])
	require.NotEmpty(t, plain.Log.Lines("plain HTTP on loopback: tokens are readable by this machine's users only; give --tls-cert-file and --tls-key-file to serve HTTPS"))
}
