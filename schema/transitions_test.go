package schema_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/codegen/desc"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
	"github.com/pollux-storage/pollux/schema"
	"github.com/pollux-storage/pollux/schema/schematest"
)

// The database enforces the state machines of schema/pollux.yaml (the generated
// schema/logic/transitions_gen.sql): an undeclared change of status, or a new row that does
// not start in its enum's initial status, fails with invalid_transition, whoever makes it.

type transitions struct {
	t   *testing.T
	db  *pg.DB
	ctx context.Context
	// A subrequest (of a PUT) and its disk copy, created by the logic as a put creates them.
	subrequest, diskCopy int64
}

func setupTransitions(t *testing.T) *transitions {
	t.Helper()
	b := &transitions{t: t, db: schematest.DB(t), ctx: context.Background()}
	l := &life{t: t, db: b.db, ctx: b.ctx}
	req := l.submit(model.RequestTypePut, false, "/pollux/t/f")
	l.stage()
	s := l.sub(req)
	require.Equal(t, model.SubrequestStatusWaitsched, s.Status)
	b.subrequest, b.diskCopy = s.ID, *s.DiskCopyID
	return b
}

// exec runs sql with args and returns its SQLSTATE, "" when it succeeded.
func (b *transitions) exec(sql string, args ...any) string {
	b.t.Helper()
	_, err := b.db.Pool().Exec(b.ctx, sql, args...)
	if err != nil {
		require.Equal(b.t, model.SQLStateInvalidTransition, pg.SQLState(err), "%v", err)
		return pg.SQLState(err)
	}
	return ""
}

// force puts a row in a value of a guarded column past its guard: the walk over every
// pair of values starts each pair from its first value. Disabling a trigger inside a
// transaction needs only the table's owner, which the test's role is, and ends with the
// transaction.
func (b *transitions) force(g desc.Guard, id any, value string) {
	b.t.Helper()
	require.NoError(b.t, b.db.Tx(b.ctx, "force status", func(q pg.Querier) error {
		if _, err := q.Exec(b.ctx, "alter table "+g.Table+" disable trigger "+g.UpdateTrigger); err != nil {
			return err
		}
		if _, err := q.Exec(b.ctx, "update "+g.Table+" set "+g.Column+" = $1 where id = $2", value, id); err != nil {
			return err
		}
		_, err := q.Exec(b.ctx, "alter table "+g.Table+" enable trigger "+g.UpdateTrigger)
		return err
	}))
}

func (b *transitions) setSubrequest(status model.SubrequestStatus) string {
	return b.exec("update subrequest set status = $1 where id = $2", status, b.subrequest)
}

func (b *transitions) setDiskCopy(status model.DiskCopyStatus) string {
	return b.exec("update disk_copy set status = $1 where id = $2", status, b.diskCopy)
}

func TestTransitionsRefused(t *testing.T) {
	t.Parallel()
	b := setupTransitions(t)
	refused := model.SQLStateInvalidTransition

	// Declared: WAITSCHED -> SCHEDULED -> READY -> FINISHED.
	require.Empty(t, b.setSubrequest(model.SubrequestStatusScheduled))
	require.Empty(t, b.setSubrequest(model.SubrequestStatusReady))
	require.Empty(t, b.setSubrequest(model.SubrequestStatusFinished))
	// Undeclared: a finished subrequest never starts again.
	require.Equal(t, refused, b.setSubrequest(model.SubrequestStatusStart))
	// Leaving the status as it is, or changing other columns, is always allowed.
	require.Empty(t, b.setSubrequest(model.SubrequestStatusFinished))
	require.Empty(t, b.exec("update subrequest set info = 'x' where id = $1", b.subrequest))
	// A NULL status is the column's NOT NULL's to refuse, with its own error, not a
	// transition's (disk_copy: it has no history, whose log row would refuse it first).
	_, err := b.db.Pool().Exec(b.ctx, "update disk_copy set status = NULL where id = $1", b.diskCopy)
	require.Equal(t, "23502", pg.SQLState(err), "%v", err)

	// A write's copy: STAGEOUT -> STAGED is declared, STAGED -> STAGEOUT is not.
	require.Empty(t, b.setDiskCopy(model.DiskCopyStatusStaged))
	require.Equal(t, refused, b.setDiskCopy(model.DiskCopyStatusStageout))
	require.Empty(t, b.setDiskCopy(model.DiskCopyStatusInvalid))
	require.Equal(t, refused, b.setDiskCopy(model.DiskCopyStatusStaged), "an invalidated copy stays invalid")

	// A request's summary only moves on from PENDING.
	var request string
	require.NoError(t, b.db.Pool().QueryRow(b.ctx, "select request_id from subrequest where id = $1", b.subrequest).Scan(&request))
	require.Empty(t, b.exec("update request set status = 'FAILED' where id = $1", request))
	require.Equal(t, refused, b.exec("update request set status = 'PENDING' where id = $1", request))
}

func TestTransitionsInitial(t *testing.T) {
	t.Parallel()
	b := setupTransitions(t)
	refused := model.SQLStateInvalidTransition
	var request string
	require.NoError(t, b.db.Pool().QueryRow(b.ctx, "select request_id from subrequest where id = $1", b.subrequest).Scan(&request))

	// A new row starts in its enum's initial status, given or by default.
	require.Equal(t, refused, b.exec("insert into subrequest (request_id, type, path, status) values ($1, 'PUT', '/pollux/t/g', 'READY')", request))
	require.Empty(t, b.exec("insert into subrequest (request_id, type, path, status) values ($1, 'PUT', '/pollux/t/g', 'START')", request))
	require.Empty(t, b.exec("insert into subrequest (request_id, type, path) values ($1, 'PUT', '/pollux/t/h')", request))
	require.Equal(t, refused, b.exec("insert into disk_copy (status) values ('STAGED')"))
	require.Empty(t, b.exec("insert into disk_copy (status) values ($1)", model.DiskCopyStatusInitial))
}

// TestTransitionsMatchCanBecome walks every pair of values of every guarded column: the
// database allows exactly what the generated CanBecome says, so Go and SQL read one state
// machine.
func TestTransitionsMatchCanBecome(t *testing.T) {
	t.Parallel()
	s, err := desc.Load(schema.Description)
	require.NoError(t, err)
	b := setupTransitions(t)
	var request string
	require.NoError(t, b.db.Pool().QueryRow(b.ctx, "select request_id from subrequest where id = $1", b.subrequest).Scan(&request))
	diskServer, err := model.DiskServerRegister(b.ctx, b.db.Pool(), "ds-walk", "http://ds-walk:9000", 0)
	require.NoError(t, err)

	walks := map[string]struct {
		id        any
		values    []string
		canBecome func(from, to string) bool
	}{
		"subrequest.status": {b.subrequest, labels(model.SubrequestStatusValues()), func(from, to string) bool {
			return model.SubrequestStatus(from).CanBecome(model.SubrequestStatus(to))
		}},
		"disk_copy.status": {b.diskCopy, labels(model.DiskCopyStatusValues()), func(from, to string) bool {
			return model.DiskCopyStatus(from).CanBecome(model.DiskCopyStatus(to))
		}},
		"request.status": {request, labels(model.RequestStatusValues()), func(from, to string) bool {
			return model.RequestStatus(from).CanBecome(model.RequestStatus(to))
		}},
		"disk_server.availability": {diskServer, labels(model.DiskServerAvailabilityValues()), func(from, to string) bool {
			return model.DiskServerAvailability(from).CanBecome(model.DiskServerAvailability(to))
		}},
	}
	guards := s.Guards()
	require.Len(t, guards, len(walks), "every guarded column is walked")
	for _, g := range guards {
		w, ok := walks[g.Table+"."+g.Column]
		require.True(t, ok, "no walk for %s.%s", g.Table, g.Column)
		for _, from := range w.values {
			for _, to := range w.values {
				b.force(g, w.id, from)
				_, err := b.db.Pool().Exec(b.ctx, "update "+g.Table+" set "+g.Column+" = $1 where id = $2", to, w.id)
				if err != nil {
					require.Equal(t, model.SQLStateInvalidTransition, pg.SQLState(err), "%v", err)
				}
				require.Equal(t, from == to || w.canBecome(from, to), err == nil, "%s.%s %s -> %s: %v", g.Table, g.Column, from, to, err)
			}
		}
	}
}

func labels[T ~string](values []T) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = string(v)
	}
	return out
}
