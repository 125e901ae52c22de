package requesthandler_test

import (
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/daemons/rhd/rhdtest"
	"github.com/pollux-storage/pollux/framework/pgtest"
)

// TestReadyzOnTheClientsPort: a load balancer checks rhd where it sends the clients, with
// no token; the answer follows the database, and the checks do not flood the log.
func TestReadyzOnTheClientsPort(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	link := pgtest.NewLink(t, c.dsn)
	a := rhdtest.Start(t, link.DSN, c.tokens)
	t.Cleanup(link.Restore) // before the drain

	r := do(t, http.MethodGet, a.URL+api.PathReady, "", nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Equal(t, "ready\n", string(r.body))

	link.Cut()
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		r, err := send(http.MethodGet, a.URL+api.PathReady, "", nil)
		if assert.NoError(ct, err) {
			assert.Equal(ct, http.StatusServiceUnavailable, r.status)
			assert.NotContains(ct, string(r.body), "dial", "the reason stays on the admin listener")
		}
	}, 20*time.Second, 100*time.Millisecond, "readyz did not turn false with the database cut off")
	link.Restore()
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		r, err := send(http.MethodGet, a.URL+api.PathReady, "", nil)
		if assert.NoError(ct, err) {
			assert.Equal(ct, http.StatusOK, r.status)
		}
	}, 20*time.Second, 100*time.Millisecond, "readyz did not turn true with the database back")

	for _, line := range a.Log.Lines("http request") {
		require.NotEqual(t, api.PathReady, line["path"], "a health check logged: %v", line)
	}
	require.Contains(t, string(fetchMetrics(t, a)), `pollux_rhd_http_requests_total{code="503",route="GET /readyz"}`)
}

// TestTimeoutHeaderBoundsTheDatabaseWait: a client that says how long it waits hears
// within it why it is not served, even while the database is out of reach; a header it
// cannot read is refused with its reason.
func TestTimeoutHeaderBoundsTheDatabaseWait(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	link := pgtest.NewLink(t, c.dsn)
	a := rhdtest.Start(t, link.DSN, c.tokens)
	t.Cleanup(link.Restore)

	query := func(timeout string) (response, time.Duration) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, a.URL+api.PathFiles+"?"+url.Values{api.ParamPath: {"/pollux/f"}}.Encode(), nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+aliceToken)
		req.Header.Set(api.HeaderTimeout, timeout)
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return response{resp.StatusCode, b}, time.Since(start)
	}

	r, _ := query("soon")
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Contains(t, r.errorBody(t).Message, `header X-Pollux-Timeout: "soon" is not a positive duration`)

	link.Cut()
	r, took := query("2s")
	require.Equal(t, http.StatusServiceUnavailable, r.status, "%s", r.body)
	require.Equal(t, "unavailable", r.errorBody(t).Kind)
	require.Contains(t, r.errorBody(t).Message, "cannot reach its database")
	// rhd keeps a tenth of the client's time for the answer's travel.
	require.Less(t, took, 2*time.Second, "answered after the client stopped listening")
	require.Greater(t, took, time.Second, "gave its database less than the client allowed")
}
