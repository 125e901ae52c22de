package schema_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/hotpatch"
	"github.com/pollux-storage/pollux/framework/migrate"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/pgtest"
	"github.com/pollux-storage/pollux/model"
	"github.com/pollux-storage/pollux/schema"
	"github.com/pollux-storage/pollux/schema/schematest"
)

// emptyTemplate is a database with nothing installed, to exercise migrations themselves.
var emptyTemplate = pgtest.Template{Key: "empty", Setup: func(context.Context, string) error { return nil }}

func TestMigrationsUpDownUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := pg.Open(ctx, pg.Config{DSN: pgtest.NewDatabase(t, emptyTemplate)})
	require.NoError(t, err)
	defer db.Close()

	head, err := migrate.Head(schema.Migrations())
	require.NoError(t, err)
	require.Positive(t, head.Schema)
	require.Positive(t, head.River)

	v, err := migrate.Up(ctx, db, schema.Migrations())
	require.NoError(t, err)
	require.Equal(t, head, v)
	logic, err := hotpatch.Load(schema.Logic())
	require.NoError(t, err)
	patcher := hotpatch.New(db, schematest.LogicTable, hotpatch.Final(model.LogicFinalFile))
	_, err = patcher.Apply(ctx, logic, "test", "", false)
	require.NoError(t, err)

	// Logic functions depend on table row types: they go first, after the triggers that
	// call them.
	dropped, err := patcher.Uninstall(ctx)
	require.NoError(t, err)
	var want []string
	for _, tg := range logic.Triggers() {
		want = append(want, "trigger "+tg.String())
	}
	require.NotEmpty(t, want, "the state machines' triggers are part of the logic")
	require.Equal(t, append(want, logic.Functions()...), dropped)
	require.NoError(t, migrate.Down(ctx, db, schema.Migrations()))
	v, err = migrate.Current(ctx, db, schema.Migrations())
	require.NoError(t, err)
	require.Equal(t, migrate.Versions{}, v)
	// Down must leave nothing behind but golang-migrate's own bookkeeping.
	var leftovers []string
	rows, err := db.Pool().Query(ctx, `
		select relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
		where n.nspname = 'public' and c.relkind in ('r','v','m','S') and relname <> 'schema_migrations'
		union all
		select typname from pg_type t join pg_namespace n on n.oid = t.typnamespace
		where n.nspname = 'public' and t.typtype = 'e'
		union all
		select proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'public'`)
	require.NoError(t, err)
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		leftovers = append(leftovers, s)
	}
	require.NoError(t, rows.Err())
	require.Empty(t, leftovers, "objects left after migrating down")

	v, err = migrate.Up(ctx, db, schema.Migrations())
	require.NoError(t, err)
	require.Equal(t, head, v)
}

func TestTemplateDatabaseIsAtHead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := schematest.DB(t)
	head, err := migrate.Head(schema.Migrations())
	require.NoError(t, err)
	v, err := migrate.Current(ctx, db, schema.Migrations())
	require.NoError(t, err)
	require.Equal(t, head, v)
}
