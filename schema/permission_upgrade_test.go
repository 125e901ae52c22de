package schema_test

import (
	"context"
	"io/fs"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/migrate"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/pgtest"
	"github.com/pollux-storage/pollux/schema"
)

// A database that ran the logic before permissions has file_query(text), which answers
// anyone. The hot patch drops functions by name, and file_query keeps its name, so
// migration 000008 must drop the old form; the existing files and the root's mode follow.
func TestPermissionMigrationUpgradesAnOldDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := pg.Open(ctx, pg.Config{DSN: pgtest.NewDatabase(t, emptyTemplate)})
	require.NoError(t, err)
	defer db.Close()

	before := fstest.MapFS{}
	require.NoError(t, fs.WalkDir(schema.Migrations(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path >= "000008_" {
			return err // the migrations up to 7: a database from before namespace permissions
		}
		b, err := fs.ReadFile(schema.Migrations(), path)
		before[path] = &fstest.MapFile{Data: b}
		return err
	}))
	v, err := migrate.Up(ctx, db, before)
	require.NoError(t, err)
	require.Equal(t, uint(7), uint(v.Schema))
	_, err = db.Pool().Exec(ctx, `
		CREATE FUNCTION file_query(p_path text) RETURNS SETOF file LANGUAGE sql AS $$ SELECT * FROM file WHERE path = p_path $$;
		INSERT INTO file (path, service_class_id, owner) VALUES ('/pollux/old/f', 1, 'alice')`)
	require.NoError(t, err)

	_, err = migrate.Up(ctx, db, schema.Migrations())
	require.NoError(t, err)
	var overloads int
	require.NoError(t, db.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_proc WHERE proname = 'file_query'`).Scan(&overloads))
	require.Zero(t, overloads, "the one-argument file_query is gone; the logic brings the new one")
	var owner, group string
	var mode int
	require.NoError(t, db.Pool().QueryRow(ctx, `SELECT owner, group_name, mode FROM file WHERE path = '/pollux/old/f'`).Scan(&owner, &group, &mode))
	require.Equal(t, []any{"alice", "", 0o644}, []any{owner, group, mode}, "an existing file keeps its owner and is 0644")
	require.NoError(t, db.Pool().QueryRow(ctx, `SELECT owner, group_name, mode FROM directory WHERE path = '/pollux'`).Scan(&owner, &group, &mode))
	require.Equal(t, []any{"root", "", 0o1777}, []any{owner, group, mode})
}
