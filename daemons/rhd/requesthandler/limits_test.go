package requesthandler_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/framework/uuid"
	"github.com/pollux-storage/pollux/model"
)

// TestLongPollsPerUserAreBounded: with --max-long-polls-per-user 2, a user's third waiting
// poll on the instance is refused at once with 429 (kind unavailable, Retry-After) naming
// the limit, another user's polls are not counted against it, and a poll that answered
// gives its place back.
func TestLongPollsPerUserAreBounded(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a := c.rhd("--max-long-polls-per-user", "2")
	stored := func(token string) api.Request {
		id := uuid.New()
		r := submit(t, a, token, api.SubmitRequest{ID: id, Type: "PUT", Paths: []string{"/pollux/limits/" + id}})
		require.Equal(t, http.StatusCreated, r.status, string(r.body))
		var req api.Request
		get(t, a, token, id, nil).decode(t, &req)
		return req
	}
	pollURL := func(req api.Request, wait string) string {
		return requestURL(a, req.ID, url.Values{api.ParamWait: {wait}, api.ParamSince: {req.UpdatedAt.Format(api.TimeFormat)}})
	}
	waiting := func(n int) {
		t.Helper()
		want := fmt.Sprintf("pollux_rhd_long_polls %d\n", n)
		require.Eventually(t, func() bool { return strings.Contains(string(fetchMetrics(t, a)), want) },
			30*time.Second, 10*time.Millisecond, "%d long polls waiting", n)
	}
	alice := stored(aliceToken)
	first := goSend(http.MethodGet, pollURL(alice, "30s"), aliceToken, nil)
	second := goSend(http.MethodGet, pollURL(alice, "30s"), aliceToken, nil)
	waiting(2)

	refused := func() {
		t.Helper()
		r := do(t, http.MethodGet, pollURL(alice, "30s"), aliceToken, nil)
		require.Equal(t, http.StatusTooManyRequests, r.status, string(r.body))
		e := r.errorBody(t)
		require.Equal(t, "unavailable", e.Kind)
		require.Contains(t, e.Message, "user alice has 2 long polls waiting on this request handler, its limit (--max-long-polls-per-user)")
	}
	refused()
	// A read that does not wait (no since) holds nothing and is served.
	require.Equal(t, http.StatusOK, get(t, a, aliceToken, alice.ID, nil).status)

	// alice's request changes (its transfer starts: READY): her polls answer and give
	// their places back.
	ds := c.schedulePut(alice.ID)
	_, err := model.TransferClaim(c.ctx, c.db.Pool(), ds, "http://ds1:9100", []string{"tok"})
	require.NoError(t, err)
	for _, p := range []<-chan reply{first, second} {
		got := await(t, p)
		require.Equal(t, http.StatusOK, got.r.status, string(got.r.body))
		require.Less(t, got.elapsed, 10*time.Second, "answered on the change, not at the end of the wait")
	}
	waiting(0)

	var now api.Request
	get(t, a, aliceToken, alice.ID, nil).decode(t, &now)
	bob := stored(bobToken)
	polls := []<-chan reply{
		goSend(http.MethodGet, pollURL(now, "30s"), aliceToken, nil),
		goSend(http.MethodGet, pollURL(now, "30s"), aliceToken, nil),
		goSend(http.MethodGet, pollURL(bob, "30s"), bobToken, nil),
	}
	waiting(3)
	alice = now
	refused() // bob's poll is his: alice is at her limit again, not past it

	// The drain answers every waiting poll at once.
	require.Equal(t, 0, a.Stop())
	for _, p := range polls {
		got := await(t, p)
		require.Equal(t, http.StatusOK, got.r.status, string(got.r.body))
	}
}

// TestBurstBeyondTheSlotsIsRefusedWith503: with --max-db-calls 1, a submission that finds
// the one slot held (by a submission the test keeps waiting on a table lock) waits
// --admission-wait and is refused at once with 503, kind unavailable and the Retry-After
// the operator set, naming the limit; nothing of it is stored. The held submission goes
// on once the lock goes, and its slot serves the next call.
func TestBurstBeyondTheSlotsIsRefusedWith503(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a := c.rhd("--max-db-calls", "1", "--admission-wait", "200ms", "--retry-after", "2s")
	metric := func(line string) func() bool {
		return func() bool {
			b, err := scrape(a)
			return err == nil && strings.Contains(string(b), line+"\n")
		}
	}
	body := func(id string) string {
		return fmt.Sprintf(`{"id":%q,"type":"PUT","paths":["/pollux/burst/%s"],"transfer_key_hash":%q}`, id, id, testKeyHash)
	}

	conn, err := c.db.Pool().Acquire(c.ctx)
	require.NoError(t, err)
	defer conn.Release()
	lock, err := conn.Begin(c.ctx)
	require.NoError(t, err)
	defer lock.Rollback(c.ctx)
	_, err = lock.Exec(c.ctx, "lock table request in exclusive mode")
	require.NoError(t, err)

	held := uuid.New()
	first := goSend(http.MethodPost, a.URL+api.PathRequests, aliceToken, strings.NewReader(body(held)))
	require.Eventually(t, metric("pollux_rhd_db_calls_in_flight 1"), 30*time.Second, 10*time.Millisecond, "the first submission holds the slot")

	refusedID := uuid.New()
	req, err := http.NewRequest(http.MethodPost, a.URL+api.PathRequests, strings.NewReader(body(refusedID)))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+aliceToken)
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	took := time.Since(start)
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, string(raw))
	require.Equal(t, "2", resp.Header.Get("Retry-After"))
	r := response{resp.StatusCode, raw}
	e := r.errorBody(t)
	require.Equal(t, "unavailable", e.Kind)
	require.Contains(t, e.Message, "the request handler is busy: all 1 of its database slots stayed taken for 200ms (--max-db-calls); retry after 2s")
	require.GreaterOrEqual(t, took, 200*time.Millisecond, "refused before the admission wait")
	require.Eventually(t, metric("pollux_rhd_admission_refused_total 1"), 30*time.Second, 10*time.Millisecond)

	require.NoError(t, lock.Rollback(c.ctx))
	got := <-first
	require.NoError(t, got.err)
	require.Equal(t, http.StatusCreated, got.r.status, string(got.r.body))
	require.Equal(t, 0, c.count(fmt.Sprintf("select count(*) from request where id = '%s'", refusedID)), "a refused submission stored nothing")
	// The slot is free again: the refused request, sent again, is stored.
	again := do(t, http.MethodPost, a.URL+api.PathRequests, aliceToken, strings.NewReader(body(refusedID)))
	require.Equal(t, http.StatusCreated, again.status, string(again.body))
}
