package requesthandler_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/daemons/rhd/rhdtest"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/uuid"
	"github.com/pollux-storage/pollux/model"
	"github.com/pollux-storage/pollux/schema/schematest"
)

const (
	aliceToken = "alice-secret"
	bobToken   = "bob-secret"
)

// cluster is a database and the rhd instances in front of it.
type cluster struct {
	t      *testing.T
	ctx    context.Context
	dsn    string
	db     *pg.DB
	tokens string
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	dsn := schematest.DSN(t)
	db, err := pg.Open(ctx, pg.Config{DSN: dsn})
	require.NoError(t, err)
	t.Cleanup(db.Close)
	return &cluster{t: t, ctx: ctx, dsn: dsn, db: db,
		tokens: rhdtest.WriteTokens(t, map[string]string{aliceToken: "alice", bobToken: "bob"})}
}

func (c *cluster) rhd(flags ...string) *rhdtest.Instance {
	c.t.Helper()
	return rhdtest.Start(c.t, c.dsn, c.tokens, flags...)
}

func (c *cluster) count(sql string) int {
	c.t.Helper()
	n, err := c.countErr(sql)
	require.NoError(c.t, err)
	return n
}

// countErr is count for a condition, which must not stop the test from its goroutine.
func (c *cluster) countErr(sql string) (int, error) {
	var n int
	err := c.db.Pool().QueryRow(c.ctx, sql).Scan(&n)
	return n, err
}

func (c *cluster) tx(name string, fn func(q pg.Querier) error) {
	c.t.Helper()
	require.NoError(c.t, c.db.Tx(c.ctx, name, fn))
}

// response is an answer of rhd.
type response struct {
	status int
	body   []byte
}

func (r response) errorBody(t *testing.T) api.Error {
	t.Helper()
	var e api.ErrorBody
	require.NoError(t, json.Unmarshal(r.body, &e), "error body: %s", r.body)
	return e.Error
}

func (r response) decode(t *testing.T, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal(r.body, v), "body: %s", r.body)
}

func do(t *testing.T, method, u, token string, body io.Reader) response {
	t.Helper()
	r, err := send(method, u, token, body)
	require.NoError(t, err)
	return r
}

// send is do without the test, for other goroutines: only the test's own goroutine may
// stop it (require), so they hand their error back.
func send(method, u, token string, body io.Reader) (response, error) {
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		return response{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{resp.StatusCode, b}, nil
}

// reply is the answer to a call sent from another goroutine (goSend).
type reply struct {
	r       response
	err     error
	elapsed time.Duration
}

// goSend sends a call from another goroutine; receive its reply with await.
func goSend(method, u, token string, body io.Reader) <-chan reply {
	ch := make(chan reply, 1)
	go func() {
		start := time.Now()
		r, err := send(method, u, token, body)
		ch <- reply{r, err, time.Since(start)}
	}()
	return ch
}

// await receives a reply on the test's goroutine and fails the test if the call failed.
func await(t *testing.T, ch <-chan reply) reply {
	t.Helper()
	a := <-ch
	require.NoError(t, a.err)
	return a
}

// testKeyHash is a transfer key hash for requests the tests send as raw JSON.
var testKeyHash = api.TransferKeyHash("a test's transfer secret")

func submit(t *testing.T, in *rhdtest.Instance, token string, req api.SubmitRequest) response {
	t.Helper()
	if api.NeedsTransferKey(req.Type) && req.TransferKeyHash == "" {
		req.TransferKeyHash = api.TransferKeyHash("secret of " + req.ID) // as a client would send one
	}
	b, err := json.Marshal(req)
	require.NoError(t, err)
	return do(t, http.MethodPost, in.URL+api.PathRequests, token, bytes.NewReader(b))
}

func get(t *testing.T, in *rhdtest.Instance, token, id string, q url.Values) response {
	t.Helper()
	return do(t, http.MethodGet, requestURL(in, id, q), token, nil)
}

func requestURL(in *rhdtest.Instance, id string, q url.Values) string {
	u := in.URL + api.RequestPath(id)
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

func TestSubmitRetryThroughAnotherInstanceStoresOneRequest(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a, b := c.rhd(), c.rhd()
	req := api.SubmitRequest{ID: uuid.New(), Type: "PUT", ServiceClass: "default", UserTag: "run-7",
		Paths: []string{"/pollux/u/alice/f1", "/pollux/u/alice/f2"}}

	first := submit(t, a, aliceToken, req)
	require.Equal(t, http.StatusCreated, first.status, string(first.body))
	var got api.SubmitResponse
	first.decode(t, &got)
	require.Equal(t, api.SubmitResponse{ID: req.ID, Created: true, Subrequests: 2}, got)

	retry := submit(t, b, aliceToken, req)
	require.Equal(t, http.StatusOK, retry.status, string(retry.body))
	retry.decode(t, &got)
	require.Equal(t, api.SubmitResponse{ID: req.ID, Created: false, Subrequests: 2}, got)

	require.Equal(t, 1, c.count("select count(*) from request"))
	require.Equal(t, 2, c.count("select count(*) from subrequest"))

	// The same id for something else is refused: the client must choose a new one.
	other := req
	other.Paths = []string{"/pollux/u/alice/f3"}
	conflict := submit(t, b, aliceToken, other)
	require.Equal(t, http.StatusConflict, conflict.status)
	e := conflict.errorBody(t)
	require.Equal(t, "conflict", e.Kind)
	require.Equal(t, model.SQLStateConflict, e.Code)
	require.Contains(t, e.Message, "already used by a different request")

	// An upper-case id is the same request.
	upper := req
	upper.ID = strings.ToUpper(req.ID)
	again := submit(t, a, aliceToken, upper)
	require.Equal(t, http.StatusOK, again.status, string(again.body))
	require.Equal(t, 1, c.count("select count(*) from request"))

	r := get(t, b, aliceToken, req.ID, nil)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	var stored api.Request
	r.decode(t, &stored)
	require.Equal(t, "PUT", stored.Type)
	require.Equal(t, "PENDING", stored.Status)
	require.Equal(t, "run-7", stored.UserTag)
	require.Len(t, stored.Subrequests, 2)
	require.Equal(t, "/pollux/u/alice/f1", stored.Subrequests[0].Path)
	require.Equal(t, "START", stored.Subrequests[0].Status)

	lines := a.Log.Lines("http request")
	require.NotEmpty(t, lines)
	require.Equal(t, req.ID, lines[0]["request_id"], "request lines carry the request id")
	require.Equal(t, "alice", lines[0]["user"])
	require.EqualValues(t, 201, lines[0]["status"])
	require.Equal(t, "POST", lines[0]["method"])
	require.Contains(t, lines[0], "duration")
}

func TestBadSubmissionsAreRefusedAndWriteNothing(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a := c.rhd()
	body := func(v any) string {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		return string(b)
	}
	ok := func(paths ...string) map[string]any {
		return map[string]any{"id": uuid.New(), "type": "PUT", "service_class": "default", "paths": paths, "transfer_key_hash": testKeyHash}
	}
	with := func(m map[string]any, k string, v any) map[string]any { m[k] = v; return m }
	many := make([]string, 1001)
	for i := range many {
		many[i] = fmt.Sprintf("/pollux/many/f%d", i)
	}
	huge := make([]string, 30000)
	for i := range huge {
		huge[i] = fmt.Sprintf("/pollux/huge/a-rather-long-file-name-%06d", i)
	}
	for _, tc := range []struct {
		name   string
		body   string
		status int
		kind   string
		reason string
		code   string // the SQLSTATE when the logic decided
	}{
		{"malformed JSON", `{"id": "x", "type": `, 400, "invalid", "not valid JSON", ""},
		{"not an object", `["PUT"]`, 400, "invalid", "must be a JSON object, not a JSON array", ""},
		{"empty body", ``, 400, "invalid", "body is empty", ""},
		{"trailing data", body(ok("/pollux/a")) + ` {}`, 400, "invalid", "not one JSON object", ""},
		{"unknown field", body(with(ok("/pollux/a"), "priority", 1)), 400, "invalid", `unknown field "priority"`, ""},
		{"wrong field type", body(with(ok("/pollux/a"), "paths", "/pollux/a")), 400, "invalid", `field "paths"`, ""},
		{"unknown type", body(with(ok("/pollux/a"), "type", "COPY")), 400, "invalid", `type "COPY" is unknown`, ""},
		{"missing id", body(with(ok("/pollux/a"), "id", "")), 400, "invalid", "id is missing", ""},
		{"bad uuid", body(with(ok("/pollux/a"), "id", "1234")), 400, "invalid", `"1234" is not a UUID`, ""},
		{"nil uuid", body(with(ok("/pollux/a"), "id", "00000000-0000-0000-0000-000000000000")), 400, "invalid", "nil UUID", ""},
		{"auto_close on a get", body(with(with(ok("/pollux/a"), "type", "GET"), "auto_close", true)), 400, "invalid", "PUT requests only", ""},
		{"relative path", body(ok("u/f")), 400, "invalid", "is relative", "PX002"},
		{"dot dot", body(ok("/pollux/u/../f")), 400, "invalid", `".." component`, "PX002"},
		{"outside the namespace", body(ok("/etc/passwd")), 400, "invalid", "outside the namespace", "PX002"},
		{"no path", body(ok()), 400, "invalid", "names no file", "PX002"},
		{"duplicate path", body(ok("/pollux/a", "/pollux/a")), 400, "invalid", "more than once", "PX002"},
		{"1001 paths", body(ok(many...)), 400, "invalid", "at most 1000", "PX002"},
		{"unknown service class", body(with(ok("/pollux/a"), "service_class", "tape")), 404, "not_found", `unknown service class "tape"`, "PX001"},
		{"oversize body", body(ok(huge...)), 413, "invalid", "larger than 1048576 bytes", ""},
		{"put without a transfer key", body(with(ok("/pollux/a"), "transfer_key_hash", "")), 400, "invalid", "a PUT request needs transfer_key_hash", ""},
		{"transfer key not a sha-256", body(with(ok("/pollux/a"), "transfer_key_hash", "ABCD")), 400, "invalid", "transfer_key_hash is not 64 lowercase hex digits", ""},
		{"transfer key on an rm", body(with(ok("/pollux/a"), "type", "RM")), 400, "invalid", "transfer_key_hash applies to PUT and GET requests only, not RM", ""},
	} {
		r := do(t, http.MethodPost, a.URL+api.PathRequests, aliceToken, strings.NewReader(tc.body))
		require.Equal(t, tc.status, r.status, "%s: %s", tc.name, r.body)
		e := r.errorBody(t)
		require.Equal(t, tc.kind, e.Kind, tc.name)
		require.Contains(t, e.Message, tc.reason, tc.name)
		require.Equal(t, tc.code, e.Code, tc.name)
	}
	// An oversize body without a Content-Length is cut off while it is read.
	pr, pw := io.Pipe()
	go func() { _, _ = io.WriteString(pw, body(ok(huge...))); pw.Close() }()
	r := do(t, http.MethodPost, a.URL+api.PathRequests, aliceToken, pr)
	require.Equal(t, http.StatusRequestEntityTooLarge, r.status, string(r.body))

	wrongMethod := do(t, http.MethodDelete, a.URL+api.PathRequests, aliceToken, nil)
	require.Equal(t, http.StatusMethodNotAllowed, wrongMethod.status)
	require.Contains(t, wrongMethod.errorBody(t).Message, "use POST")
	nowhere := do(t, http.MethodGet, a.URL+"/v2/things", aliceToken, nil)
	require.Equal(t, http.StatusNotFound, nowhere.status)

	require.Zero(t, c.count("select (select count(*) from request) + (select count(*) from subrequest) + (select count(*) from file)"),
		"a refused request leaves nothing behind")
}

func TestTokens(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a := c.rhd()
	req := api.SubmitRequest{ID: uuid.New(), Type: "GET", Paths: []string{"/pollux/f"}}
	for _, tc := range []struct{ name, header, reason string }{
		{"no header", "", "no Authorization header"},
		{"not bearer", "Basic YWxpY2U6cHc=", "not \"Bearer TOKEN\""},
		{"unknown token", "Bearer guess", "unknown token"},
		{"a JWT where none is accepted", "Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln", "this request handler accepts none"},
	} {
		b, _ := json.Marshal(req)
		hr, err := http.NewRequest(http.MethodPost, a.URL+api.PathRequests, bytes.NewReader(b))
		require.NoError(t, err)
		if tc.header != "" {
			hr.Header.Set("Authorization", tc.header)
		}
		resp, err := http.DefaultClient.Do(hr)
		require.NoError(t, err)
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, tc.name)
		require.Equal(t, `Bearer realm="pollux"`, resp.Header.Get("WWW-Authenticate"))
		r := response{resp.StatusCode, raw}
		require.Contains(t, r.errorBody(t).Message, tc.reason, tc.name)
		require.Equal(t, "permission", r.errorBody(t).Kind)
	}
	require.Equal(t, http.StatusUnauthorized, do(t, http.MethodGet, a.URL+"/v1/files?path=/pollux/f", "", nil).status)
	require.Zero(t, c.count("select count(*) from request"))

	// The tokens file is read again when it changes.
	require.Equal(t, http.StatusUnauthorized, submit(t, a, "carol-secret", req).status)
	require.NoError(t, os.WriteFile(c.tokens, []byte("carol-secret carol\nalice-secret alice\n"), 0o600))
	r := submit(t, a, "carol-secret", req)
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	require.Equal(t, http.StatusUnauthorized, get(t, a, bobToken, req.ID, nil).status, "bob was removed")

	// A broken edit is refused loudly, and keeps alive none of the tokens it no longer
	// lists (alice's), nor admits the ones it adds (dave's): only carol, listed before and
	// still listed well formed, stays.
	require.NoError(t, os.WriteFile(c.tokens, []byte("carol-secret carol\nthree fields here\ndave-secret dave\n"), 0o600))
	require.Equal(t, http.StatusOK, get(t, a, "carol-secret", req.ID, nil).status)
	require.Equal(t, http.StatusUnauthorized, submit(t, a, aliceToken, api.SubmitRequest{ID: uuid.New(), Type: "GET", Paths: []string{"/pollux/f"}}).status,
		"alice's token is not listed any more")
	require.Equal(t, http.StatusUnauthorized, submit(t, a, "dave-secret", api.SubmitRequest{ID: uuid.New(), Type: "GET", Paths: []string{"/pollux/f"}}).status,
		"a refused reload admits nobody new")
	lines := a.Log.Lines("tokens file not reloaded: only the tokens loaded before that it still lists are accepted; fix it")
	require.Len(t, lines, 1, "the broken file is reported once")
	require.Contains(t, lines[0]["error"], "line 2: want \"TOKEN USER\", got 3 fields")
	require.NotContains(t, a.Log.String(), "carol-secret", "a token is never logged")
	require.NotContains(t, a.Log.String(), "dave-secret", "a token is never logged")

	// Fixed, it is read whole again; emptied, it revokes everyone.
	require.NoError(t, os.WriteFile(c.tokens, []byte("carol-secret carol\ndave-secret dave\n"), 0o600))
	require.Equal(t, http.StatusForbidden, get(t, a, "dave-secret", req.ID, nil).status, "dave is admitted once the file is fixed (and sees carol's request is not his)")
	require.NoError(t, os.WriteFile(c.tokens, []byte("# nobody\n"), 0o600))
	require.Equal(t, http.StatusUnauthorized, get(t, a, "carol-secret", req.ID, nil).status, "an empty file revokes everyone")

	// An edit the file's stamp cannot show (same size, same modification time) still
	// revokes, within a second: the content is compared again.
	require.NoError(t, os.WriteFile(c.tokens, []byte("carol-secret carol\n"), 0o600))
	require.Equal(t, http.StatusOK, get(t, a, "carol-secret", req.ID, nil).status)
	st, err := os.Stat(c.tokens)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(c.tokens, []byte("erin-secret   erin\n"), 0o600))
	require.NoError(t, os.Chtimes(c.tokens, st.ModTime(), st.ModTime()))
	same, err := os.Stat(c.tokens)
	require.NoError(t, err)
	require.Equal(t, st.Size(), same.Size(), "the edit must not change the size")
	require.Eventually(t, func() bool {
		r, err := send(http.MethodGet, requestURL(a, req.ID, nil), "carol-secret", nil)
		return err == nil && r.status == http.StatusUnauthorized
	}, 10*time.Second, 50*time.Millisecond, "carol's token outlived its line")

	// A file that disappears admits no static token; back, it is read again.
	require.NoError(t, os.Rename(c.tokens, c.tokens+".away"))
	require.Equal(t, http.StatusUnauthorized, get(t, a, "erin-secret", req.ID, nil).status)
	require.Len(t, a.Log.Lines("tokens file unreadable: no static token is accepted until it is readable"), 1)
	require.NoError(t, os.Rename(c.tokens+".away", c.tokens))
	require.Equal(t, http.StatusForbidden, get(t, a, "erin-secret", req.ID, nil).status, "erin is admitted again (and the request is carol's)")
}

// schedulePut drives a put through the logic up to SCHEDULED on a disk server, as stagerd
// would (it places at once); it returns the disk server's id.
func (c *cluster) schedulePut(id string) int64 {
	c.t.Helper()
	ds, err := model.DiskServerRegister(c.ctx, c.db.Pool(), "ds1", "http://ds1:9100", 0.1)
	require.NoError(c.t, err)
	_, err = model.FileSystemRegister(c.ctx, c.db.Pool(), ds, "/data/ds1", "default", 1<<40, 1<<39)
	require.NoError(c.t, err)
	var rows []model.SubrequestClaimRow
	c.tx("stage", func(q pg.Querier) (err error) {
		rows, err = model.SubrequestClaim(c.ctx, q, "put", 10)
		return err
	})
	require.Len(c.t, rows, 1)
	subs, err := model.SubrequestList(c.ctx, c.db.Pool(), id)
	require.NoError(c.t, err)
	require.Equal(c.t, model.SubrequestStatusScheduled, subs[0].Status)
	return ds
}

func TestLongPollIsAnsweredByAnyInstance(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	stored, answering := c.rhd(), c.rhd("--max-wait", "2s")
	id := uuid.New()
	r := submit(t, stored, aliceToken, api.SubmitRequest{ID: id, Type: "PUT", Paths: []string{"/pollux/f"}})
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	ds := c.schedulePut(id)

	var seen api.Request
	get(t, answering, aliceToken, id, nil).decode(t, &seen)
	require.Equal(t, "SCHEDULED", seen.Subrequests[0].Status)
	require.Empty(t, seen.Subrequests[0].Token)

	// A poll since the current state waits; the mover's start (another process, through
	// the logic) ends it promptly.
	poll := func(since time.Time, wait string) <-chan reply {
		return goSend(http.MethodGet, requestURL(answering, id, url.Values{api.ParamWait: {wait}, api.ParamSince: {since.Format(api.TimeFormat)}}), aliceToken, nil)
	}
	pending := poll(seen.UpdatedAt, "10s")
	time.Sleep(300 * time.Millisecond)
	select {
	case a := <-pending:
		t.Fatalf("the poll answered before anything changed: %s", a.r.body)
	default:
	}
	subs, err := model.SubrequestList(c.ctx, c.db.Pool(), id)
	require.NoError(t, err)
	_, err = model.TransferClaim(c.ctx, c.db.Pool(), ds, "http://ds1:9100", []string{"one-time"})
	require.NoError(t, err)
	a := await(t, pending)
	require.Equal(t, http.StatusOK, a.r.status, string(a.r.body))
	require.Less(t, a.elapsed, 1500*time.Millisecond, "answered on the notification, not at the end of the wait")
	var ready api.Request
	a.r.decode(t, &ready)
	require.True(t, ready.UpdatedAt.After(seen.UpdatedAt))
	require.Equal(t, "READY", ready.Subrequests[0].Status)
	require.Equal(t, fmt.Sprintf("http://ds1:9100/v1/transfers/%d", subs[0].ID), ready.Subrequests[0].MoverURL)
	require.Equal(t, "one-time", ready.Subrequests[0].Token, "the owner sees the token")

	// Nothing changes: the poll answers when its wait (capped at --max-wait 2s) ends.
	a = await(t, poll(ready.UpdatedAt, "1s"))
	require.Equal(t, http.StatusOK, a.r.status)
	require.GreaterOrEqual(t, a.elapsed, time.Second)
	require.Less(t, a.elapsed, 1900*time.Millisecond)
	a = await(t, poll(ready.UpdatedAt, "1h"))
	require.GreaterOrEqual(t, a.elapsed, 2*time.Second, "capped at --max-wait")
	require.Less(t, a.elapsed, 4*time.Second, "capped at --max-wait")
	var same api.Request
	a.r.decode(t, &same)
	require.True(t, same.UpdatedAt.Equal(ready.UpdatedAt))

	// A poll since an older state answers at once.
	a = await(t, poll(seen.UpdatedAt, "10s"))
	require.Less(t, a.elapsed, time.Second)

	// Another user may not see the request (nor its token); an unknown one does not exist.
	forbidden := get(t, answering, bobToken, id, url.Values{api.ParamWait: {"10s"}, api.ParamSince: {ready.UpdatedAt.Format(api.TimeFormat)}})
	require.Equal(t, http.StatusForbidden, forbidden.status)
	require.NotContains(t, string(forbidden.body), "one-time")
	require.Equal(t, "permission", forbidden.errorBody(t).Kind)
	missing := get(t, answering, aliceToken, uuid.New(), nil)
	require.Equal(t, http.StatusNotFound, missing.status)
	require.Contains(t, missing.errorBody(t).Message, "no such request")
	require.Equal(t, http.StatusBadRequest, get(t, answering, aliceToken, "not-a-uuid", nil).status)
	require.Equal(t, http.StatusBadRequest, get(t, answering, aliceToken, id, url.Values{api.ParamWait: {"soon"}}).status)
	require.Equal(t, http.StatusBadRequest, get(t, answering, aliceToken, id, url.Values{api.ParamSince: {"yesterday"}}).status)
}

// A POST that asks to wait answers at the new request's first change, with the request:
// no read happens before the wait, and a retry of the same id answers at once.
func TestSubmitWaitsForTheFirstChange(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a := c.rhd()
	id := uuid.New()
	body, err := json.Marshal(api.SubmitRequest{ID: id, Type: "PUT", Paths: []string{"/pollux/w"}, TransferKeyHash: testKeyHash})
	require.NoError(t, err)
	post := func(wait string) <-chan reply {
		return goSend(http.MethodPost, a.URL+api.PathRequests+"?"+url.Values{api.ParamWait: {wait}}.Encode(), aliceToken, bytes.NewReader(body))
	}
	pending := post("20s")
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		n, err := c.countErr("select count(*) from request")
		require.NoError(ct, err)
		assert.Equal(ct, 1, n)
	}, 10*time.Second, 10*time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	select {
	case r := <-pending:
		t.Fatalf("the submission answered before the request changed: %s %v", r.r.body, r.err)
	default:
	}

	ds := c.schedulePut(id) // the stager's placement changes nothing a client waits for
	select {
	case r := <-pending:
		t.Fatalf("the submission answered on a step the client does not wait for: %s %v", r.r.body, r.err)
	case <-time.After(300 * time.Millisecond):
	}
	_, err = model.TransferClaim(c.ctx, c.db.Pool(), ds, "http://ds1:9100", []string{"one-time"})
	require.NoError(t, err)
	var r response
	select {
	case a := <-pending:
		require.NoError(t, a.err)
		r = a.r
	case <-time.After(5 * time.Second):
		t.Fatal("the submission did not answer when its request became READY")
	}
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	var out api.SubmitResponse
	r.decode(t, &out)
	require.True(t, out.Created)
	require.NotNil(t, out.Request)
	require.Equal(t, "READY", out.Request.Subrequests[0].Status)
	require.Equal(t, "one-time", out.Request.Subrequests[0].Token)
	require.Equal(t, "default", out.Request.ServiceClass)
	// The change's notification carried the request with its token (the request has a
	// transfer key, so the token alone opens nothing): the answer read nothing.
	metrics := string(fetchMetrics(t, a))
	require.Contains(t, metrics, `pollux_rhd_request_views_total{source="notification"} 1`)
	require.NotContains(t, metrics, `pollux_rhd_request_views_total{source="database"}`)
	// And what it carried is what a read shows.
	got := get(t, a, aliceToken, id, nil)
	var read api.Request
	got.decode(t, &read)
	require.Equal(t, read, *out.Request)

	// A retry finds the request stored and answers with it at once.
	start := time.Now()
	r = await(t, post("20s")).r
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	require.Less(t, time.Since(start), 5*time.Second)
	var again api.SubmitResponse
	r.decode(t, &again)
	require.False(t, again.Created)
	require.Equal(t, "READY", again.Request.Subrequests[0].Status)
	require.Equal(t, http.StatusBadRequest, await(t, post("soon")).r.status)
	require.Equal(t, 1, c.count("select count(*) from request"))
}

func TestDrainAnswersWaitingPolls(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a := c.rhd()
	id := uuid.New()
	require.Equal(t, http.StatusCreated, submit(t, a, aliceToken, api.SubmitRequest{ID: id, Type: "GET", Paths: []string{"/pollux/f"}}).status)
	var seen api.Request
	get(t, a, aliceToken, id, nil).decode(t, &seen)

	pending := goSend(http.MethodGet, requestURL(a, id, url.Values{api.ParamWait: {"50s"}, api.ParamSince: {seen.UpdatedAt.Format(api.TimeFormat)}}), aliceToken, nil)
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		assert.Contains(ct, string(fetchMetrics(ct, a)), "pollux_rhd_long_polls 1")
	}, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, 0, a.Stop(), a.Log.String())
	r := await(t, pending)
	require.Equal(t, http.StatusOK, r.r.status)
	require.Less(t, r.elapsed, 10*time.Second, "the drain answered the poll instead of waiting for it")
}

// fetchMetrics reads the daemon's /metrics from its admin listener. t may be an
// EventuallyWithT's collector.
func fetchMetrics(t require.TestingT, in *rhdtest.Instance) []byte {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
	b, err := scrape(in)
	require.NoError(t, err)
	return b
}

// scrape reads the instance's /metrics; it returns its error, so that a condition polled
// by Eventually fails the test instead of stopping the goroutine that polls.
func scrape(in *rhdtest.Instance) ([]byte, error) {
	var admin string
	for _, m := range in.Log.Lines("admin listener up") {
		admin, _ = m["url"].(string)
	}
	if admin == "" {
		return nil, errors.New("the instance logged no admin listener")
	}
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

func TestFiles(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a := c.rhd()
	files := func(path string) response {
		return do(t, http.MethodGet, a.URL+api.PathFiles+"?"+url.Values{api.ParamPath: {path}}.Encode(), bobToken, nil)
	}
	r := files("/pollux/u/alice/nope")
	require.Equal(t, http.StatusNotFound, r.status)
	e := r.errorBody(t)
	require.Equal(t, "not_found", e.Kind)
	require.Equal(t, model.SQLStateNotFound, e.Code)
	require.Contains(t, e.Message, "no such file: /pollux/u/alice/nope")

	r = files("pollux/relative")
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Contains(t, r.errorBody(t).Message, "is relative")
	r = do(t, http.MethodGet, a.URL+api.PathFiles, bobToken, nil)
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Contains(t, r.errorBody(t).Message, "?path=")

	// A file written all the way (pollux cp: auto_close) is staged with its size and sum.
	id := uuid.New()
	require.Equal(t, http.StatusCreated, submit(t, a, aliceToken, api.SubmitRequest{ID: id, Type: "PUT", AutoClose: true, Paths: []string{"/pollux/u/alice/f"}}).status)
	ds := c.schedulePut(id)
	subs, err := model.SubrequestList(c.ctx, c.db.Pool(), id)
	require.NoError(t, err)
	_, err = model.TransferClaim(c.ctx, c.db.Pool(), ds, "http://ds1:9100", []string{"tok"})
	require.NoError(t, err)
	require.NoError(t, model.TransferPutEnded(c.ctx, c.db.Pool(), subs[0].ID, "tok", 11, "1a2b3c4d", new("1a2b3c4d")))

	r = files("/pollux/u/alice/f")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	var f api.File
	r.decode(t, &f)
	require.Equal(t, "STAGED", f.Status)
	require.EqualValues(t, 11, *f.SizeBytes)
	require.Equal(t, "1a2b3c4d", *f.ChecksumAdler32)
	require.Equal(t, "alice", f.Owner)
	require.Equal(t, "default", f.ServiceClass)

	var done api.Request
	get(t, a, aliceToken, id, nil).decode(t, &done)
	require.Equal(t, "FINISHED", done.Status)
	require.Equal(t, "1a2b3c4d", done.Subrequests[0].ChecksumAdler32)
	require.Empty(t, done.Subrequests[0].Token)
}

func TestFaultsAreInternalAndLogged(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a := c.rhd()
	// A fault the logic does not classify (here a function broken by hand).
	_, err := c.db.Pool().Exec(c.ctx, `CREATE OR REPLACE FUNCTION file_query(p_path text, p_user text)
		RETURNS TABLE (path text, service_class text, status text, size_bytes bigint, checksum_adler32 text,
		               owner text, updated_at timestamptz, disk_copies integer, info text)
		LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'secret internals of %', p_path; END $$`)
	require.NoError(t, err)
	r := do(t, http.MethodGet, a.URL+api.PathFiles+"?path=/pollux/f", aliceToken, nil)
	require.Equal(t, http.StatusInternalServerError, r.status)
	e := r.errorBody(t)
	require.Equal(t, "internal", e.Kind)
	require.NotContains(t, e.Message, "secret", "details stay in the log")
	lines := a.Log.Lines("http request")
	require.NotEmpty(t, lines)
	last := lines[len(lines)-1]
	require.Equal(t, "error", last["level"])
	require.Contains(t, last["error"], "secret internals of /pollux/f")
}

// stager_qry's /v1/files answers only what its caller may read: 403 with the refusal's
// words for a file another user keeps to themselves (file_query decides).
func TestFileQueryIsForbiddenToOthers(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a := c.rhd()
	_, err := c.db.Pool().Exec(c.ctx, `INSERT INTO file (path, service_class_id, owner, mode)
		VALUES ('/pollux/private', (SELECT id FROM service_class WHERE name = 'default'), 'alice', 384)`)
	require.NoError(t, err)
	var f api.File
	r := do(t, http.MethodGet, a.URL+api.PathFiles+"?path=/pollux/private", aliceToken, nil)
	require.Equal(t, http.StatusOK, r.status)
	r.decode(t, &f)
	require.Equal(t, "alice", f.Owner)
	r = do(t, http.MethodGet, a.URL+api.PathFiles+"?path=/pollux/private", bobToken, nil)
	require.Equal(t, http.StatusForbidden, r.status)
	e := r.errorBody(t)
	require.Equal(t, "permission", e.Kind)
	require.Equal(t, "permission denied: /pollux/private is owned by alice, mode 0600; you are bob", e.Message)
}
