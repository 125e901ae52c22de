package schema_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
	"github.com/pollux-storage/pollux/schema/schematest"
)

// PostgreSQL 15 plans the body of a LANGUAGE sql function at every call it does not inline,
// and a SET clause (every logic function pins its search_path) prevents inlining: 60-120 µs
// a call on this machine, where the same body in PL/pgSQL keeps its plan for the session.
// No function that a put, its putdone, a get or an rm runs may be LANGUAGE sql. The test
// runs those lives on one connection that tracks every function call, and reads what ran.
func TestRequestPathRunsNoSQLFunction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	base := schematest.DSN(t)
	setup, err := pg.Open(ctx, pg.Config{DSN: base})
	require.NoError(t, err)
	t.Cleanup(setup.Close)
	// Registering a disk server is no request's path: it is done on another connection.
	(&life{t: t, db: setup, ctx: ctx}).diskServer("ds1")
	dsn, err := pg.WithParam(base, "options", "-c track_functions=all")
	require.NoError(t, err)
	db, err := pg.Open(ctx, pg.Config{DSN: dsn, MaxConns: 1})
	require.NoError(t, err)
	t.Cleanup(db.Close)
	l := &life{t: t, db: db, ctx: ctx, tokens: map[int64]string{}}

	l.put("/pollux/u/alice/f", 10, "0000000a")
	cp := l.submit(model.RequestTypePut, true, "/pollux/u/alice/g")
	l.stage()
	s := l.sub(cp)
	l.transfer(s)
	require.NoError(t, model.TransferPutEnded(ctx, db.Pool(), s.ID, l.token(s.ID), 3, "00000003", new("00000003")))
	get := l.submit(model.RequestTypeGet, false, "/pollux/u/alice/f")
	l.stage()
	s = l.sub(get)
	l.transfer(s)
	require.NoError(t, model.TransferGetEnded(ctx, db.Pool(), s.ID, l.token(s.ID), 10))
	rm := l.submit(model.RequestTypeRm, false, "/pollux/u/alice/g")
	l.stage()
	require.Equal(t, model.SubrequestStatusFinished, l.sub(rm).Status, l.sub(rm).ErrorMessage)

	// The one connection's counts reach the shared statistics at the end of the next
	// transaction once a flush is forced; the read after it sees them.
	_, err = db.Pool().Exec(ctx, "select pg_stat_force_next_flush()")
	require.NoError(t, err)
	rows, err := db.Pool().Query(ctx, `select p.proname, l.lanname from pg_stat_user_functions f
		join pg_proc p on p.oid = f.funcid join pg_language l on l.oid = p.prolang where f.calls > 0`)
	require.NoError(t, err)
	byLanguage := map[string][]string{}
	for rows.Next() {
		var name, lang string
		require.NoError(t, rows.Scan(&name, &lang))
		byLanguage[lang] = append(byLanguage[lang], name)
	}
	require.NoError(t, rows.Err())
	require.Contains(t, byLanguage["plpgsql"], "subrequest_decide_put", "the statistics show the decisions ran")
	require.Contains(t, byLanguage["plpgsql"], "namespace_ancestors")
	require.Empty(t, byLanguage["sql"], "LANGUAGE sql functions on the request path: write them in PL/pgSQL")
}
