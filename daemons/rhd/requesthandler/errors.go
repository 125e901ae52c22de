package requesthandler

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
)

// httpError is a failure as the client sees it — status, kind, SQLSTATE, message — plus
// the cause, which is logged but never shown (it may name internals).
type httpError struct {
	status  int
	kind    model.ErrorKind
	code    string
	message string
	cause   error
	// retryAfter, when set, is sent as Retry-After: when the client should try again.
	retryAfter time.Duration
}

func (e *httpError) body() api.ErrorBody {
	return api.ErrorBody{Error: api.Error{Kind: string(e.kind), Code: e.code, Message: e.message}}
}

// userError is a failure of kind, with its status, and a message saying what to fix.
func userError(kind model.ErrorKind, format string, args ...any) *httpError {
	return &httpError{status: kind.HTTPStatus(), kind: kind, message: fmt.Sprintf(format, args...)}
}

func invalid(format string, args ...any) *httpError {
	return userError(model.ErrorKindInvalid, format, args...)
}

// unauthenticated is 401: the kind is permission (the clients' exit code 1), the status
// tells HTTP tooling that credentials are missing rather than insufficient.
func unauthenticated(message string) *httpError {
	return &httpError{status: http.StatusUnauthorized, kind: model.ErrorKindPermission, message: message}
}

// dbError turns what a transaction returned into what the client is told. A failure the
// logic raised (PXnnn) is the user's to fix and its message is meant for them; the
// database being out of reach after framework/pg's retries is worth retrying elsewhere
// (503, the clients fail over); anything else is a fault the operator must see (500, with
// a generic message: the details go to the log only).
func dbError(err error) *httpError {
	code := pg.SQLState(err)
	if kind, ok := model.KindOfSQLState(code); ok {
		return &httpError{status: kind.HTTPStatus(), kind: kind, code: code, message: pg.ServerMessage(err), cause: err}
	}
	class, _ := pg.Classify(err)
	// An outcome left unknown is worth retrying too: rhd's calls are idempotent (a request
	// carries the client's id), so the client's retry finds what committed.
	if class == pg.Transient || class == pg.OutcomeUnknown || errors.Is(err, context.DeadlineExceeded) {
		return &httpError{status: http.StatusServiceUnavailable, kind: model.ErrorKindUnavailable,
			message: "the request handler cannot reach its database now; retry later", cause: err}
	}
	return &httpError{status: http.StatusInternalServerError, kind: model.ErrorKindInternal,
		message: "internal error in the request handler; the operator will find it in rhd's log", cause: err}
}

// requestError is dbError for calls about one request: the log line carries the request
// id, so the internal message can point at it.
func requestError(err error, id string) *httpError {
	e := dbError(err)
	if e.kind == model.ErrorKindInternal && id != "" {
		e.message = fmt.Sprintf("internal error in the request handler; the operator will find it in rhd's log under request_id %s", id)
	}
	return e
}
