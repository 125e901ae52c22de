package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/model/wire"
)

// Error is a failure as the user sees it: its kind decides the exit code (1 for what the
// user must fix, 2 for what the service must), its message says what was wrong and what
// to do.
type Error struct {
	Kind wire.ErrorKind
	// Code is the SQLSTATE when the service's logic decided (PXnnn).
	Code    string
	Message string
}

// Error returns the message.
func (e *Error) Error() string { return e.Message }

func errorf(kind wire.ErrorKind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// ExitCode is the exit code for err: 0 for none, the kind's code for an *Error, 2 (a
// service error) for anything unclassified.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Kind.ExitCode()
	}
	return wire.ErrorKindInternal.ExitCode()
}

// fromBody turns a failed answer into an Error: the service's own description when it
// sent one, else one made from the status (a proxy or a server that is not Pollux's).
func fromBody(status int, body []byte, who string) *Error {
	var eb api.ErrorBody
	// Leniently, unlike a success: from a server of another version, its message is still
	// the best account of the failure, and the kind falls back to the status.
	if json.Unmarshal(body, &eb) == nil && eb.Error.Message != "" {
		kind := wire.ErrorKind(eb.Error.Kind)
		if !kind.Valid() {
			kind = kindOfStatus(status)
		}
		return &Error{Kind: kind, Code: eb.Error.Code, Message: eb.Error.Message}
	}
	return errorf(kindOfStatus(status), "%s answered %d %s", who, status, http.StatusText(status))
}

func kindOfStatus(status int) wire.ErrorKind {
	switch {
	case status == http.StatusNotFound:
		return wire.ErrorKindNotFound
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return wire.ErrorKindPermission
	case status == http.StatusConflict:
		return wire.ErrorKindConflict
	case status >= 400 && status < 500:
		return wire.ErrorKindInvalid
	case status == http.StatusInternalServerError:
		return wire.ErrorKindInternal
	default:
		return wire.ErrorKindUnavailable
	}
}

// subrequestError is the Error of a failed subrequest.
func subrequestError(s api.Subrequest) *Error {
	kind, ok := wire.KindOfSQLState(s.ErrorCode)
	if !ok {
		kind = wire.ErrorKindInternal
	}
	msg := s.ErrorMessage
	if msg == "" {
		msg = "failed without a reason; the operator will find it in the daemons' logs"
	}
	return &Error{Kind: kind, Code: s.ErrorCode, Message: fmt.Sprintf("%s: %s", s.Path, msg)}
}
