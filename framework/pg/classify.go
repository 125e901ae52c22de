package pg

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
)

// Class says what the retry loop may do with an error.
type Class int

const (
	// Permanent errors are returned to the caller at once: constraint violations, syntax
	// errors, user-facing failures raised by the logic, anything unknown.
	Permanent Class = iota
	// Transient errors are retried with jittered backoff: PostgreSQL said the transaction
	// may succeed if run again (serialization failure, deadlock), or the connection went
	// away (restart, failover, network).
	Transient
	// StalePlan is "cached plan must not change result type": a hot patch changed a
	// function's result type under a prepared statement. pgx drops the statement from the
	// failing connection's cache, so the transaction is retried at once; other pooled
	// connections may still hold a stale copy, so it may take one retry per connection.
	StalePlan
)

// Classify decides whether err is worth retrying and returns the SQLSTATE it saw ("" when
// the error did not come from the server). It is the only place in Pollux that decides what
// is transient.
func Classify(err error) (Class, string) {
	if err == nil {
		return Permanent, ""
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return Permanent, ""
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		code := pgErr.Code
		switch {
		case code == pgerrcode.FeatureNotSupported && strings.Contains(pgErr.Message, "cached plan must not change result type"):
			return StalePlan, code
		case pgerrcode.IsTransactionRollback(code), // 40xxx: serialization failure, deadlock
			pgerrcode.IsConnectionException(code),    // 08xxx
			code == pgerrcode.AdminShutdown,          // 57P01: server stopping, failover
			code == pgerrcode.CrashShutdown,          // 57P02
			code == pgerrcode.CannotConnectNow,       // 57P03: server starting up or in recovery
			code == pgerrcode.ReadOnlySQLTransaction, // 25006: we reached a standby after a failover
			code == pgerrcode.TooManyConnections:     // 53300: another daemon will let go soon
			return Transient, code
		}
		return Permanent, code
	}
	if pgconn.SafeToRetry(err) {
		return Transient, ""
	}
	// No SQLSTATE: the connection broke (server killed, network cut, failover in progress).
	var netErr net.Error
	var connectErr *pgconn.ConnectError
	switch {
	case errors.As(err, &connectErr), errors.As(err, &netErr),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return Transient, ""
	}
	if msg := err.Error(); strings.Contains(msg, "conn closed") || strings.Contains(msg, "unexpected EOF") ||
		strings.Contains(msg, "connection reset") || strings.Contains(msg, "broken pipe") {
		return Transient, ""
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
