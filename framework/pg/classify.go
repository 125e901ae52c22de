package pg

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
)

// Class says what the retry loop may do with an error.
type Class int

const (
	// Permanent errors are returned to the caller at once: constraint violations, syntax
	// errors, user-facing failures raised by the logic, a cancelled context, anything
	// unknown.
	Permanent Class = iota
	// Transient errors are retried with jittered backoff: the work certainly did not
	// commit, and PostgreSQL said it may succeed if run again (serialization failure,
	// deadlock), or the connection went away before the commit was sent (restart,
	// failover, network).
	Transient
	// StalePlan is "cached plan must not change result type": a hot patch changed a
	// function's result type under a prepared statement. pgx drops the statement from the
	// failing connection's cache, so the transaction is retried at once; other pooled
	// connections may still hold a stale copy, so it may take one retry per connection.
	StalePlan
	// OutcomeUnknown is a connection that broke, or a server that was stopped, while a
	// commit was in flight (a COMMIT, or a statement of Do, which commits by itself): the
	// work may have committed. Only work declared idempotent is retried; other work fails
	// with ErrOutcomeUnknown.
	OutcomeUnknown
)

// String names the class in logs and test failures.
func (c Class) String() string {
	switch c {
	case Permanent:
		return "permanent"
	case Transient:
		return "transient"
	case StalePlan:
		return "stale plan"
	case OutcomeUnknown:
		return "outcome unknown"
	}
	return "class(" + strconv.Itoa(int(c)) + ")"
}

// commitInFlight marks an error that came while a statement that commits was on its way to
// the server or its reply on the way back: the COMMIT of Tx, any statement of Do.
type commitInFlight struct{ err error }

func (e *commitInFlight) Error() string { return e.err.Error() }
func (e *commitInFlight) Unwrap() error { return e.err }

// Classify decides whether err is worth retrying and returns the SQLSTATE it saw ("" when
// the error did not come from the server). It is the only place in Pollux that decides what
// is transient, and what leaves the outcome of a commit unknown.
func Classify(err error) (Class, string) {
	if err == nil {
		return Permanent, ""
	}
	var inFlight *commitInFlight
	committing := errors.As(err, &inFlight)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// The caller gave up. If the commit was already on its way, pgx cut it short
		// without knowing whether the server committed.
		if committing && !pgconn.SafeToRetry(err) {
			return OutcomeUnknown, ""
		}
		return Permanent, ""
	}
	// lost is the class of a broken connection: before the commit was sent it took the
	// transaction with it; during the commit nobody can tell.
	lost := Transient
	if committing {
		lost = OutcomeUnknown
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		code := pgErr.Code
		switch {
		case code == pgerrcode.FeatureNotSupported && strings.Contains(pgErr.Message, "cached plan must not change result type"):
			return StalePlan, code
		case pgerrcode.IsConnectionException(code), // 08xxx
			code == pgerrcode.AdminShutdown, // 57P01: server stopping, failover; during a commit it may have committed (a synchronous standby's wait cut short)
			code == pgerrcode.CrashShutdown: // 57P02
			return lost, code
		case pgerrcode.IsTransactionRollback(code), // 40xxx: serialization failure, deadlock; rolled back, even at commit
			code == pgerrcode.CannotConnectNow,       // 57P03: server starting up or in recovery
			code == pgerrcode.ReadOnlySQLTransaction, // 25006: we reached a standby after a failover
			code == pgerrcode.TooManyConnections:     // 53300: another daemon will let go soon
			return Transient, code
		}
		return Permanent, code
	}
	if committing && errors.Is(err, pgconn.ErrConnClosed) {
		// pgx says "conn closed" and SafeToRetry when a simple query's reply broke off
		// (it closes the connection on the failed read, then fails the next read on the
		// closed connection): for a COMMIT that is the lost reply itself.
		return OutcomeUnknown, ""
	}
	if pgconn.SafeToRetry(err) {
		// Nothing was sent, whatever the statement.
		return Transient, ""
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		// No connection, so nothing was sent either.
		return Transient, ""
	}
	// No SQLSTATE: the connection broke (server killed, network cut, failover in progress).
	var netErr net.Error
	switch {
	case errors.As(err, &netErr), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return lost, ""
	}
	if msg := err.Error(); strings.Contains(msg, "conn closed") || strings.Contains(msg, "unexpected EOF") ||
		strings.Contains(msg, "connection reset") || strings.Contains(msg, "broken pipe") {
		return lost, ""
	}
	return Permanent, ""
}

// SQLState returns the SQLSTATE of err, or "" when it did not come from the server.
func SQLState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// ServerMessage returns the message PostgreSQL gave with err (without the SQLSTATE), or
// err's own text when it did not come from the server.
func ServerMessage(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Message
	}
	return err.Error()
}
