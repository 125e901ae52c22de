package requesthandler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
)

// dbTimeout bounds the database work of one call (framework/pg retries transient errors
// within it), so that a client learns of an unreachable database and fails over to
// another rhd well before its own timeout.
const dbTimeout = 30 * time.Second

// dbContext bounds one piece of database work of the call ctx belongs to: dbTimeout, or
// less when the client said it stops listening sooner (api.HeaderTimeout), so that the
// client hears why it is not served rather than nothing.
// It first takes one of the instance's database slots (admission); done gives it back.
func (s *server) dbContext(ctx context.Context) (_ context.Context, done func(), _ *httpError) {
	d := dbTimeout
	if c, _ := ctx.Value(callKey{}).(*call); c != nil && c.patience > 0 {
		d = min(d, c.patience)
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	release, herr := s.admit.enter(ctx)
	if herr != nil {
		cancel()
		return nil, nil, herr
	}
	return ctx, func() { release(); cancel() }, nil
}

// patience is the time for database work that a client waiting timeout leaves: a tenth of
// it, at most a second, is kept for the answer to travel, and the database gets at least a
// quarter of a second, lest a short timeout blame it for the client's impatience.
func patience(timeout time.Duration) time.Duration {
	return max(timeout-min(timeout/10, time.Second), 250*time.Millisecond)
}

var uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// parseID returns a request id in the canonical lowercase form PostgreSQL prints, so that
// log lines and answers spell one request one way.
func parseID(what, id string) (string, *httpError) {
	switch {
	case id == "":
		return "", invalid("%s is missing: give a UUID chosen by the client (the same one on every retry)", what)
	case !uuidPattern.MatchString(id):
		return "", invalid("%s %q is not a UUID (like 3f1c2a9e-8d4b-4c7a-9e21-5b6f0d2c4e10)", what, id)
	case strings.Trim(id, "0-") == "":
		return "", invalid("%s is the nil UUID: choose a random one", what)
	}
	return strings.ToLower(id), nil
}

// submit stores a request: POST /v1/requests.
func (s *server) submit(w http.ResponseWriter, r *http.Request, c *call) *httpError {
	in, herr := s.decodeSubmission(w, r)
	if herr != nil {
		return herr
	}
	id, herr := parseID("id", in.ID)
	if herr != nil {
		return herr
	}
	c.requestID = id
	typ, err := model.ParseRequestType(in.Type)
	if err != nil {
		return invalid("type %q is unknown: use one of PUT, GET, PREPARE_TO_GET, PUTDONE, RM", in.Type)
	}
	if in.AutoClose && typ != model.RequestTypePut {
		return invalid("auto_close applies to PUT requests only, not %s", typ)
	}
	var keyHash *string
	switch {
	case in.TransferKeyHash != "" && !api.NeedsTransferKey(string(typ)):
		return invalid("transfer_key_hash applies to PUT and GET requests only, not %s", typ)
	case in.TransferKeyHash != "" && !api.ValidTransferKeyHash(in.TransferKeyHash):
		return invalid("transfer_key_hash is not 64 lowercase hex digits: send the SHA-256 of a secret the client keeps")
	case in.TransferKeyHash != "":
		keyHash = &in.TransferKeyHash
	case api.NeedsTransferKey(string(typ)):
		return invalid("a %s request needs transfer_key_hash (the SHA-256 of a secret the client keeps, which its movers will ask for): this client is too old for this service, upgrade it", typ)
	}
	paths, herr := cleanPaths(in.Paths)
	if herr != nil {
		return herr
	}
	for _, f := range []struct{ name, value string }{{"service_class", in.ServiceClass}, {"user_tag", in.UserTag}} {
		if p := textProblem(f.name, f.value); p != "" {
			return invalid("%s", p)
		}
	}
	createOnly, herr := s.checkScopes(r.Context(), c.grant, id, typ, paths)
	if herr != nil {
		return herr
	}
	svc := in.ServiceClass
	if svc == "" {
		svc = api.DefaultServiceClass
	}
	clientHost, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		clientHost = r.RemoteAddr
	}

	wait, _, herr := s.pollParams(r)
	if herr != nil {
		return herr
	}
	// Waiting for the first change is registered before the request exists, so that no
	// change can slip by and no read is needed to begin the wait; the change's notification
	// carries the request, so a put that becomes READY reads nothing more.
	var changed *waiter
	if wait > 0 {
		release, herr := s.polls.acquire(c.user)
		if herr != nil {
			return herr
		}
		defer release()
		w, done := s.hub.wait(id)
		defer done()
		changed = w
	}
	ctx, cancel, herr := s.dbContext(r.Context())
	if herr != nil {
		return herr
	}
	var rows []model.RequestSubmitRow
	// One statement is its own transaction: an explicit BEGIN and COMMIT would cost two
	// more round trips on every request. The client chose the request's id, so a re-run
	// after a lost commit reply finds the request stored (created = false, answered at
	// once with the request as it stands).
	err = s.db.DoIdempotent(ctx, "submit request", func(q pg.Querier) (err error) {
		rows, err = model.RequestSubmit(ctx, q, id, typ, svc, c.user, in.UserTag, clientHost, paths, in.AutoClose, keyHash, createOnly)
		return err
	})
	cancel() // the slot is the database's: a long poll's wait below holds none
	if err != nil {
		return requestError(err, id)
	}
	if len(rows) != 1 {
		return requestError(errors.New("request_submit returned no row"), id)
	}
	out := api.SubmitResponse{ID: id, Created: rows[0].Created, Subrequests: int(rows[0].Subrequests)}
	status := http.StatusOK
	if out.Created {
		status = http.StatusCreated
	}
	if changed != nil {
		// A retry of an earlier submission may find the request well advanced: answer
		// with it at once.
		var view []byte
		if out.Created {
			timeout := time.NewTimer(wait)
			defer timeout.Stop()
			if s.await(r.Context(), changed.C, timeout) == wakeGone {
				return nil // nobody reads an answer
			}
			view = changed.take()
		}
		req, herr := s.viewFor(r.Context(), id, c.user, view)
		if herr != nil {
			return herr
		}
		out.Request = &req
	}
	writeJSON(w, status, out)
	return nil
}

// wake says why a long poll stopped waiting.
type wake int

const (
	wakeChanged wake = iota // the request may have changed
	wakeTimeout             // the wait is over or the server drains: answer with what is known
	wakeGone                // the client went away
)

// await waits for a change signalled on changed until timeout fires, the server drains or
// the client goes away.
func (s *server) await(ctx context.Context, changed <-chan struct{}, timeout *time.Timer) wake {
	select {
	case <-changed:
		return wakeChanged
	case <-timeout.C:
		return wakeTimeout
	case <-s.draining:
		return wakeTimeout
	case <-ctx.Done():
		return wakeGone
	}
}

// decodeSubmission reads the body strictly: one JSON object of known fields, within the
// size limit. Everything wrong here is refused before the database is touched.
func (s *server) decodeSubmission(w http.ResponseWriter, r *http.Request) (api.SubmitRequest, *httpError) {
	var in api.SubmitRequest
	tooLarge := &httpError{status: http.StatusRequestEntityTooLarge, kind: model.ErrorKindInvalid,
		message: "the request body is larger than " + strconv.FormatInt(s.cfg.MaxBodyBytes, 10) + " bytes: split the request"}
	if r.ContentLength > s.cfg.MaxBodyBytes {
		return in, tooLarge
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	dec.DisallowUnknownFields()
	err := dec.Decode(&in)
	if err == nil {
		// Exactly one object: trailing bytes mean the client sent something else than it
		// thinks.
		if _, terr := dec.Token(); terr != io.EOF {
			err = terr
			if err == nil {
				err = errors.New("trailing data")
			}
		}
	}
	var maxErr *http.MaxBytesError
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case err == nil:
		return in, nil
	case errors.As(err, &maxErr):
		return in, tooLarge
	case errors.Is(err, io.EOF):
		return in, invalid("the request body is empty: send a JSON object {\"id\", \"type\", \"paths\", ...}")
	case errors.As(err, &syntaxErr), errors.Is(err, io.ErrUnexpectedEOF):
		return in, invalid("the request body is not valid JSON: %v", err)
	case errors.As(err, &typeErr) && typeErr.Field == "":
		return in, invalid("the request body must be a JSON object, not a JSON %s", typeErr.Value)
	case errors.As(err, &typeErr):
		return in, invalid("field %q of the request body must be %s, not a JSON %s", typeErr.Field, jsonKind(typeErr.Type), typeErr.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return in, invalid("the request body has an %s: the fields are id, type, service_class, user_tag, paths, auto_close",
			strings.TrimPrefix(err.Error(), "json: "))
	default:
		return in, invalid("the request body is not one JSON object: %v", err)
	}
}

// jsonKind names what JSON a Go type decodes from, for an error message.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Slice:
		return "a JSON array of " + strings.TrimPrefix(jsonKind(t.Elem()), "a ") + "s"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Struct, reflect.Map:
		return "an object"
	default:
		return "a number"
	}
}

// getRequest answers GET /v1/requests/{id}, waiting (long poll) when asked to.
func (s *server) getRequest(w http.ResponseWriter, r *http.Request, c *call) *httpError {
	id, herr := parseID("request id", r.PathValue("id"))
	if herr != nil {
		return herr
	}
	c.requestID = id
	wait, since, herr := s.pollParams(r)
	if herr != nil {
		return herr
	}
	ctx := r.Context()
	var changed *waiter
	if wait > 0 && !since.IsZero() {
		release, herr := s.polls.acquire(c.user)
		if herr != nil {
			return herr
		}
		defer release()
		w, done := s.hub.wait(id)
		defer done()
		changed = w
	}
	timeout := time.NewTimer(wait)
	defer timeout.Stop()
	out, herr := s.readFor(ctx, id, c.user)
	for {
		if herr != nil {
			return herr
		}
		if changed == nil || out.UpdatedAt.After(since) {
			writeJSON(w, http.StatusOK, out)
			return nil
		}
		switch s.await(ctx, changed.C, timeout) {
		case wakeGone:
			return nil // nobody reads an answer
		case wakeChanged:
			// A notification committed before the read carries a view no newer than the
			// one read (or one from inside the transaction the read saw whole): keep
			// what was read rather than go back in time.
			next, nerr := s.viewFor(ctx, id, c.user, changed.take())
			if nerr != nil || next.UpdatedAt.After(out.UpdatedAt) {
				out, herr = next, nerr
			}
			continue
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	}
}

// getHistory answers GET /v1/requests/{id}/history: the request's whole story for its owner
// (request_history, request_waits), read in one snapshot so that the story and the waits
// agree with the request. It only reads: safe to repeat.
func (s *server) getHistory(w http.ResponseWriter, r *http.Request, c *call) *httpError {
	id, herr := parseID("request id", r.PathValue("id"))
	if herr != nil {
		return herr
	}
	c.requestID = id
	ctx, cancel, herr := s.dbContext(r.Context())
	if herr != nil {
		return herr
	}
	defer cancel()
	var (
		view  []byte
		hist  []model.RequestHistoryRow
		waits []model.RequestWaitsRow
	)
	err := s.db.Snapshot(ctx, "read request history", func(q pg.Querier) (err error) {
		if view, err = model.RequestView(ctx, q, id); err != nil || view == nil {
			return err
		}
		if hist, err = model.RequestHistory(ctx, q, id); err != nil {
			return err
		}
		waits, err = model.RequestWaits(ctx, q, id)
		return err
	})
	if err != nil {
		return requestError(err, id)
	}
	req, herr := decodeView(view, id, c.user)
	if herr != nil {
		return herr
	}
	out := api.History{Request: req, Transitions: []api.Transition{}, Waits: []api.Wait{}}
	for _, h := range hist {
		t := api.Transition{SubrequestID: h.SubrequestID, Path: h.Path, At: h.At.UTC(), To: h.ToStatus,
			Daemon: h.Daemon, Host: h.Host, Reason: h.Reason}
		if h.FromStatus != nil {
			t.From = *h.FromStatus
		}
		if h.InstanceID != nil {
			t.InstanceID = *h.InstanceID
		}
		out.Transitions = append(out.Transitions, t)
	}
	for _, wt := range waits {
		out.Waits = append(out.Waits, api.Wait{SubrequestID: wt.SubrequestID, Path: wt.Path, Status: wt.Status,
			Since: wt.Since.UTC(), WaitingFor: wt.WaitingFor, QueuePosition: wt.QueuePosition, Behind: wt.Behind})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// requestView is request_view's JSON: the API's request and who owns it.
type requestView struct {
	api.Request
	Owner string `json:"owner"`
}

// viewFor answers with the view a notification carried, and reads the request when there
// is none (see readFor) or when the view lacks what the answer needs: a READY subrequest's
// token, which a notification carries only for a request with a transfer key
// (request_changed_payload), where the token alone opens nothing. The owner's answer then
// reads it from the database; anybody else is refused on the view's owner alone.
func (s *server) viewFor(ctx context.Context, id, user string, view []byte) (api.Request, *httpError) {
	if view == nil {
		return s.readFor(ctx, id, user)
	}
	s.views.WithLabelValues("notification").Inc()
	req, herr := decodeView(view, id, user)
	if herr != nil {
		return req, herr
	}
	for _, sub := range req.Subrequests {
		if sub.Status == "READY" && sub.Token == "" {
			// Counted under both sources: the notification woke the poll and said READY,
			// the read brought the tokens.
			return s.readFor(ctx, id, user)
		}
	}
	return req, nil
}

// readFor reads a request for the user who asks: "no such request" when there is none,
// permission denied when it is somebody else's.
func (s *server) readFor(ctx context.Context, id, user string) (api.Request, *httpError) {
	ctx, cancel, herr := s.dbContext(ctx)
	if herr != nil {
		return api.Request{}, herr
	}
	defer cancel()
	var view []byte
	// One statement: request_view reads the request and its subrequests in one snapshot,
	// and a single statement needs no BEGIN and COMMIT round trips.
	err := s.db.DoIdempotent(ctx, "read request", func(q pg.Querier) (err error) {
		view, err = model.RequestView(ctx, q, id)
		return err
	})
	if err != nil {
		return api.Request{}, requestError(err, id)
	}
	s.views.WithLabelValues("database").Inc()
	return decodeView(view, id, user)
}

// decodeView shapes request_view's JSON for the user who asks.
func decodeView(view []byte, id, user string) (api.Request, *httpError) {
	if view == nil {
		return api.Request{}, userError(model.ErrorKindNotFound, "no such request: %s", id)
	}
	var v requestView
	if err := json.Unmarshal(view, &v); err != nil {
		return api.Request{}, requestError(fmt.Errorf("decode request_view of %s: %w", id, err), id)
	}
	if v.Owner != user {
		return api.Request{}, userError(model.ErrorKindPermission, "request %s belongs to another user", id)
	}
	v.UpdatedAt = v.UpdatedAt.UTC()
	return v.Request, nil
}

// pollParams reads wait (a Go duration, or seconds) and since (RFC 3339).
func (s *server) pollParams(r *http.Request) (time.Duration, time.Time, *httpError) {
	q := r.URL.Query()
	var wait time.Duration
	if v := q.Get(api.ParamWait); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			n, nerr := strconv.ParseFloat(v, 64)
			if nerr != nil {
				return 0, time.Time{}, invalid("wait=%q is not a duration: give e.g. wait=30s", v)
			}
			d = time.Duration(n * float64(time.Second))
		}
		if d < 0 {
			return 0, time.Time{}, invalid("wait=%q is negative", v)
		}
		wait = min(d, s.cfg.MaxWait)
	}
	var since time.Time
	if v := q.Get(api.ParamSince); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return 0, time.Time{}, invalid("since=%q is not an RFC 3339 time: give back the updated_at of the last answer", v)
		}
		since = t
	}
	return wait, since, nil
}

// getFile answers stager_qry: GET /v1/files?path=/pollux/... for the caller, whom
// file_query refuses (permission_denied, 403) a file it may not read. Repeating it is safe:
// it only reads, but for an administrator override's journal entry, which may then be doubled.
func (s *server) getFile(w http.ResponseWriter, r *http.Request, c *call) *httpError {
	path := r.URL.Query().Get(api.ParamPath)
	if path == "" {
		return invalid("give the file as ?path=/pollux/...")
	}
	path, herr := cleanPath("path", path)
	if herr != nil {
		return herr
	}
	if !c.grant.allows(opRead, path) {
		return c.grant.refuse(opRead, path)
	}
	ctx, cancel, herr := s.dbContext(r.Context())
	if herr != nil {
		return herr
	}
	defer cancel()
	var rows []model.FileQueryRow
	err := s.db.DoIdempotent(ctx, "query file", func(q pg.Querier) (err error) {
		rows, err = model.FileQuery(ctx, q, path, c.user)
		return err
	})
	if err != nil {
		return dbError(err)
	}
	if len(rows) == 0 {
		return userError(model.ErrorKindNotFound, "no such file: %s", path)
	}
	f := rows[0]
	out := api.File{Path: f.Path, ServiceClass: f.ServiceClass, Status: f.Status, SizeBytes: f.SizeBytes,
		ChecksumAdler32: f.ChecksumAdler32, Owner: f.Owner, UpdatedAt: f.UpdatedAt.UTC(), DiskCopies: f.DiskCopies}
	if f.Info != nil {
		out.Info = *f.Info
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// getQuotas answers stager_qry --quota: GET /v1/quotas, the caller's own usage and limits
// per service class (quota_list), never another user's. It only reads: repeating it is
// safe. A token's storage scopes do not limit it: it names no path, and tells the user
// only about itself.
func (s *server) getQuotas(w http.ResponseWriter, r *http.Request, c *call) *httpError {
	ctx, cancel, herr := s.dbContext(r.Context())
	if herr != nil {
		return herr
	}
	defer cancel()
	var rows []model.QuotaListRow
	err := s.db.DoIdempotent(ctx, "list quotas", func(q pg.Querier) (err error) {
		rows, err = model.QuotaList(ctx, q, &c.user)
		return err
	})
	if err != nil {
		return dbError(err)
	}
	out := api.Quotas{User: c.user, Quotas: []api.Quota{}}
	for _, q := range rows {
		out.Quotas = append(out.Quotas, api.Quota{ServiceClass: q.ServiceClass, Bytes: q.Bytes, Files: q.Files,
			MaxBytes: q.MaxBytes, MaxFiles: q.MaxFiles})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
