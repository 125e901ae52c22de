package e2e_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
	"github.com/pollux-storage/pollux/schema/schematest"
	"github.com/pollux-storage/pollux/testsuites/e2e"
)

// Every daemon of an instance connects as its own database role (which may only call its
// own functions), and a put and a get go through all of them: the grants are enough for
// the whole request path, which the other end-to-end tests then exercise in depth.
func TestDaemonsRunAsTheirDatabaseRoles(t *testing.T) {
	t.Parallel()
	in, ctx := start(t, e2e.Options{Monitors: 1})
	dir := t.TempDir()
	src, _ := randomFile(t, dir, "f", 64<<10)
	ok(t, in.Run(ctx, nil, "pollux", "cp", src, "/pollux/roles/f"))
	ok(t, in.Run(ctx, nil, "pollux", "cp", "/pollux/roles/f", filepath.Join(dir, "back")))

	db, err := pg.Open(ctx, pg.Config{DSN: in.DSN(), MaxConns: 1})
	require.NoError(t, err)
	defer db.Close()
	rows, err := db.Pool().Query(ctx, `
		SELECT split_part(application_name, ' ', 1), usename::text FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name <> ''`)
	require.NoError(t, err)
	seen := map[string]string{}
	for rows.Next() {
		var app, user string
		require.NoError(t, rows.Scan(&app, &user))
		if prev, dup := seen[app]; dup {
			require.Equal(t, prev, user, "every connection of %s is the same role", app)
		}
		seen[app] = user
	}
	require.NoError(t, rows.Err())
	for _, kind := range model.DaemonRoles {
		require.Equal(t, schematest.RolePrefix+kind, seen[kind], "%s's connections (all seen: %v)", kind, seen)
	}
	require.Len(t, seen, len(model.DaemonRoles), "no connection but the daemons': %v", seen)
}
