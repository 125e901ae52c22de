package pg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
)

// TestClassifyByPhase: the same failure is transient before the commit was sent and of
// unknown outcome while it was in flight, unless the server's answer says it rolled back.
func TestClassifyByPhase(t *testing.T) {
	t.Parallel()
	server := func(code string) error { return &pgconn.PgError{Code: code, Message: "x"} }
	for _, tc := range []struct {
		name               string
		err                error
		before, committing Class
	}{
		{"connection lost", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), Transient, OutcomeUnknown},
		{"connection reset", errors.New("read tcp: connection reset by peer"), Transient, OutcomeUnknown},
		{"admin shutdown", server(pgerrcode.AdminShutdown), Transient, OutcomeUnknown},
		{"crash shutdown", server(pgerrcode.CrashShutdown), Transient, OutcomeUnknown},
		{"connection exception", server(pgerrcode.ConnectionFailure), Transient, OutcomeUnknown},
		{"serialization failure", server(pgerrcode.SerializationFailure), Transient, Transient},
		{"deadlock", server(pgerrcode.DeadlockDetected), Transient, Transient},
		{"read-only standby", server(pgerrcode.ReadOnlySQLTransaction), Transient, Transient},
		{"unique violation", server(pgerrcode.UniqueViolation), Permanent, Permanent},
		{"logic's own failure", server("PX003"), Permanent, Permanent},
		{"cancelled", context.Canceled, Permanent, OutcomeUnknown},
		{"a bug", errors.New("some bug"), Permanent, Permanent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := Classify(tc.err)
			require.Equal(t, tc.before, got, "before the commit was sent")
			got, _ = Classify(fmt.Errorf("wrapped: %w", &commitInFlight{err: tc.err}))
			require.Equal(t, tc.committing, got, "while the commit was in flight")
		})
	}
}

// pgx reports a COMMIT whose reply broke off as "conn closed", which it says is safe to
// retry; in flight it is not.
func TestClassifyConnClosedDuringCommit(t *testing.T) {
	t.Parallel()
	closed := fmt.Errorf("lock: %w", pgconn.ErrConnClosed)
	got, _ := Classify(closed)
	require.Equal(t, Transient, got)
	got, _ = Classify(&commitInFlight{err: closed})
	require.Equal(t, OutcomeUnknown, got)
}
