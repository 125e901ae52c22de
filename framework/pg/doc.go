// Package pg is Pollux's only door to PostgreSQL: a pgx pool opened from a libpq-style DSN
// (multi-host DSNs and target_session_attrs work as in libpq), work retried by SQLSTATE
// class with bounded jittered backoff, and one LISTEN connection per process fanned out to
// any number of subscribers.
//
// # What is retried
//
// A failure is retried automatically only when the work certainly did not commit, so that
// running it again cannot do it twice:
//
//   - nothing was sent (pgconn.SafeToRetry), or no connection could be made;
//   - the server answered that it rolled back: serialization failure or deadlock (40xxx),
//     a standby reached after a failover (25006), the server stopping (57P01) or crashing
//     (57P02) before the commit was sent;
//   - the connection broke before COMMIT was sent: the server rolls the transaction back
//     when its client goes away.
//
// A failure is ambiguous when the connection broke (or the server was stopped) while the
// COMMIT was in flight, or while a statement of Do, which commits by itself, was: the
// server may have committed, and only its reply was lost. Such work is re-run only when
// the caller declared it idempotent, by calling TxIdempotent or DoIdempotent instead of Tx
// or Do: a re-run of idempotent work after its commit is a no-op that answers the same
// success (a claim claims other rows, a report finds itself already recorded, a request
// id was stored already). Otherwise the error wraps ErrOutcomeUnknown, which callers test
// with errors.Is: the outcome must then be found out from the database, not assumed
// either way. Snapshot reads only, so it is always re-run.
//
//	attempt ──▶ ok ─────────────────────────────────────────────▶ return nil
//	   │
//	   └─▶ Classify ──▶ Transient, StalePlan ──────────────────▶ retry (budget, backoff)
//	          │
//	          ├──────▶ OutcomeUnknown ──▶ idempotent ──────────▶ retry
//	          │                     └───▶ not idempotent ──────▶ return ErrOutcomeUnknown
//	          └──────▶ Permanent ──────────────────────────────▶ return the error
//
// Classify is the one place that decides which class a failure is in; work that is given
// up after an ambiguous attempt (budget spent, context done) still wraps ErrOutcomeUnknown.
// Both kinds of retry are counted, in pollux_db_retries_total{sqlstate} and
// pollux_db_outcome_unknown_total{action}.
package pg
