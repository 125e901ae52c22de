package schema_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/codegen/desc"
	"github.com/pollux-storage/pollux/framework/hotpatch"
	"github.com/pollux-storage/pollux/framework/migrate"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/pgtest"
	"github.com/pollux-storage/pollux/model"
	"github.com/pollux-storage/pollux/schema"
	"github.com/pollux-storage/pollux/schema/schematest"
)

// Each daemon role, connected as itself, can touch no table (bar SELECT on the
// bookkeeping its readiness check reads), can create or replace nothing, and can call
// exactly the functions whose callers name it: each of those gets past the permission
// check (whatever its NULL arguments then make it answer), every other function is refused
// with insufficient_privilege. Every logic function runs as the owner role, pinned to
// public, pg_temp, and PUBLIC may call none.
func TestDaemonRolesMayOnlyCallTheirFunctions(t *testing.T) {
	t.Parallel()
	checkRoles(t, schematest.DSN(t), schematest.RolePrefix)
}

// A database of main's day (migrations up to 11, the logic of before roles, every function
// callable by anyone) comes to the same state with one `migrate` and logic apply.
func TestRolesUpgradeAnOldDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn, err := pg.WithParam(pgtest.NewDatabase(t, emptyTemplate), "options", "-c pollux.role_prefix="+schematest.RolePrefix)
	require.NoError(t, err)
	db, err := pg.Open(ctx, pg.Config{DSN: dsn})
	require.NoError(t, err)
	defer db.Close()

	// The schema at head, with the logic as it was installed before the roles: functions
	// owned by the installing role, not SECURITY DEFINER, callable by PUBLIC. (The logic of
	// older schema versions is not kept; the roles' own migration changes no table the
	// logic uses, so head's schema stands for it.)
	_, err = migrate.Up(ctx, db, schema.Migrations())
	require.NoError(t, err)
	logic, err := hotpatch.Load(schema.Logic())
	require.NoError(t, err)
	old := map[string]string{}
	for name, sql := range logic.Files {
		if name != model.LogicFinalFile && name != "roles.sql" {
			old[name] = sql
		}
	}
	_, err = hotpatch.New(db, schematest.LogicTable).Apply(ctx, hotpatch.NewBundle(old), "test", "the logic before roles", false)
	require.NoError(t, err)

	res, err := hotpatch.New(db, schematest.LogicTable, hotpatch.Final(model.LogicFinalFile)).Apply(ctx, logic, "test", "", false)
	require.NoError(t, err)
	require.Equal(t, []string{"roles.sql", model.LogicFinalFile}, res.Files, "only the new files run, the grants last")
	checkRoles(t, dsn, schematest.RolePrefix)

	// A hot patch of one file (CREATE OR REPLACE, which resets SECURITY DEFINER) leaves the
	// grants whole: the grants file runs again after it.
	patched := copyFiles(logic.Files)
	patched["system_event.sql"] += "\n-- a comment of a hot patch\n"
	res, err = hotpatch.New(db, schematest.LogicTable, hotpatch.Final(model.LogicFinalFile)).Apply(ctx, hotpatch.NewBundle(patched), "test", "", false)
	require.NoError(t, err)
	require.Equal(t, []string{"system_event.sql", model.LogicFinalFile}, res.Files)
	checkRoles(t, dsn, schematest.RolePrefix)
}

func copyFiles(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func checkRoles(t *testing.T, dsn, prefix string) {
	t.Helper()
	ctx := context.Background()
	s, err := desc.Load(schema.Description)
	require.NoError(t, err)
	db, err := pg.Open(ctx, pg.Config{DSN: dsn})
	require.NoError(t, err)
	t.Cleanup(db.Close)

	list, err := model.DbRoleList(ctx, db.Pool())
	require.NoError(t, err)
	names := map[string]string{}
	for _, r := range list {
		names[r.Kind] = r.Name
		require.True(t, r.RoleExists, r.Name)
		require.Equal(t, r.Kind != s.Roles.Owner, r.CanLogin, "%s: daemon roles log in, the owner does not", r.Name)
		require.Equal(t, prefix+r.Kind, r.Name)
	}
	require.Len(t, names, 1+len(s.Roles.Daemons))
	owner := names[s.Roles.Owner]

	t.Run("functions run as the owner", func(t *testing.T) {
		var wrong []string
		for _, sig := range s.Signatures() {
			var definer bool
			var fnOwner string
			var config []string
			require.NoError(t, db.Pool().QueryRow(ctx, `
				SELECT prosecdef, proowner::regrole::text, coalesce(proconfig, '{}')
				FROM pg_proc WHERE proname = $1 AND pronamespace = 'public'::regnamespace`, sig.Name).Scan(&definer, &fnOwner, &config), sig.Name)
			if !definer || fnOwner != owner || !slices.Contains(config, "search_path=public, pg_temp") {
				wrong = append(wrong, fmt.Sprintf("%s: security definer %t, owner %s, config %v", sig.Name, definer, fnOwner, config))
			}
		}
		require.Empty(t, wrong)
		public := query(t, db, `
			SELECT p.proname FROM pg_proc p
			WHERE p.pronamespace = 'public'::regnamespace
			  AND (p.proacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'))`)
		require.Empty(t, public, "functions PUBLIC may call")
	})

	for _, role := range s.Roles.Daemons {
		// Not parallel: a caller checks again after changing the database, and parallel
		// subtests would only run once the caller had returned.
		t.Run(role.Name, func(t *testing.T) {
			rdsn, err := pg.WithUser(dsn, names[role.Name])
			require.NoError(t, err)
			conn, err := pgx.Connect(ctx, rdsn)
			require.NoError(t, err, "connect as %s", names[role.Name])
			t.Cleanup(func() { conn.Close(context.Background()) })
			var user string
			require.NoError(t, conn.QueryRow(ctx, "SELECT current_user").Scan(&user))
			require.Equal(t, names[role.Name], user)

			// try runs sql in a transaction it rolls back, and returns its SQLSTATE ("" for
			// success).
			try := func(sql string) string {
				tx, err := conn.Begin(ctx)
				require.NoError(t, err)
				defer tx.Rollback(ctx) //nolint:errcheck // the rollback is the point
				_, err = tx.Exec(ctx, "SET LOCAL statement_timeout = '10s'")
				require.NoError(t, err)
				rows, err := tx.Query(ctx, sql)
				if err == nil {
					for rows.Next() {
					}
					rows.Close()
					err = rows.Err()
				}
				return pg.SQLState(err)
			}
			denied := pgerrcode.InsufficientPrivilege

			tables := append(s.Tables, desc.Table{Name: "schema_migrations"}, desc.Table{Name: "river_migration"}, desc.Table{Name: "river_job"})
			for _, tb := range tables {
				want := denied
				if slices.Contains(s.Roles.Readable, tb.Name) {
					want = ""
				}
				require.Equal(t, want, try("SELECT * FROM "+tb.Name+" LIMIT 1"), "SELECT from %s", tb.Name)
				require.Equal(t, denied, try("INSERT INTO "+tb.Name+" DEFAULT VALUES"), "INSERT into %s", tb.Name)
				require.Equal(t, denied, try("DELETE FROM "+tb.Name), "DELETE from %s", tb.Name)
				require.Equal(t, denied, try("TRUNCATE "+tb.Name), "TRUNCATE %s", tb.Name)
				if len(tb.Columns) > 0 {
					c := tb.Columns[len(tb.Columns)-1].Name // the first is often an identity column, which no UPDATE may set
					require.Equal(t, denied, try(fmt.Sprintf("UPDATE %s SET %s = %s", tb.Name, c, c)), "UPDATE %s", tb.Name)
				}
			}
			require.Equal(t, denied, try("CREATE TABLE role_probe (x int)"), "CREATE TABLE")
			require.Equal(t, denied, try("CREATE FUNCTION role_probe() RETURNS int LANGUAGE sql AS 'SELECT 1'"), "CREATE FUNCTION")
			require.Equal(t, denied, try("CREATE OR REPLACE FUNCTION daemon_instance_heartbeat(p_id uuid) RETURNS void LANGUAGE sql AS ''"),
				"CREATE OR REPLACE of a function it may call")
			require.Equal(t, denied, try("CREATE SCHEMA role_probe"), "CREATE SCHEMA")
			require.Equal(t, denied, try("ALTER FUNCTION daemon_instance_heartbeat(uuid) SECURITY INVOKER"), "ALTER FUNCTION")

			var mine, others []string
			for _, f := range s.Functions {
				args := make([]string, len(f.Args))
				for i, a := range f.Args {
					args[i] = "NULL::" + a.PGType()
				}
				call := fmt.Sprintf("SELECT * FROM %s(%s)", f.Name, strings.Join(args, ", "))
				got := try(call)
				if slices.Contains(f.Callers, role.Name) {
					mine = append(mine, f.Name)
					require.NotEqual(t, denied, got, "%s may call %s, and nothing it reaches may refuse it", role.Name, f.Name)
				} else {
					others = append(others, f.Name)
					require.Equal(t, denied, got, "%s may not call %s", role.Name, f.Name)
				}
			}
			require.NotEmpty(t, mine)
			require.NotEmpty(t, others)
			// And nothing else of the schema, River's functions included.
			var callable []string
			rows, err := conn.Query(ctx, `
				SELECT p.proname::text FROM pg_proc p
				WHERE p.pronamespace = 'public'::regnamespace AND has_function_privilege(p.oid, 'EXECUTE')
				ORDER BY 1`)
			require.NoError(t, err)
			callable, err = pgx.CollectRows(rows, pgx.RowTo[string])
			require.NoError(t, err)
			slices.Sort(mine)
			require.Equal(t, mine, callable)
		})
	}
}

// The role that migrates need not be a superuser: one with CREATEROLE that owns the
// database (what docs/operations.md tells an operator to make) installs the roles and
// grants, and the daemon roles come out the same.
func TestRolesInstalledByANonSuperuser(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t, emptyTemplate)
	admin, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer admin.Close(ctx)
	const migrator = schematest.RolePrefix + "migrator"
	// Role names are cluster-wide: a parallel run of this test may be creating it too.
	_, err = admin.Exec(ctx, `DO $$ BEGIN
		IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '`+migrator+`') THEN
			CREATE ROLE `+migrator+` LOGIN CREATEROLE;
		END IF;
	EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
	END $$`)
	require.NoError(t, err)
	_, err = admin.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{admin.Config().Database}.Sanitize()+" OWNER TO "+migrator)
	require.NoError(t, err)
	var super bool
	require.NoError(t, admin.QueryRow(ctx, "SELECT rolsuper FROM pg_roles WHERE rolname = $1", migrator).Scan(&super))
	require.False(t, super)

	mdsn, err := pg.WithUser(dsn, migrator)
	require.NoError(t, err)
	mdsn, err = pg.WithParam(mdsn, "options", "-c pollux.role_prefix="+schematest.RolePrefix)
	require.NoError(t, err)
	db, err := pg.Open(ctx, pg.Config{DSN: mdsn})
	require.NoError(t, err)
	defer db.Close()
	_, err = migrate.Up(ctx, db, schema.Migrations())
	require.NoError(t, err)
	logic, err := hotpatch.Load(schema.Logic())
	require.NoError(t, err)
	_, err = hotpatch.New(db, schematest.LogicTable, hotpatch.Final(model.LogicFinalFile)).Apply(ctx, logic, "test", "", false)
	require.NoError(t, err)
	checkRoles(t, mdsn, schematest.RolePrefix)
}

// Installs on several databases of one cluster at once, all naming the same new roles (as
// parallel test packages and a template built beside another do), all succeed: a CREATE
// ROLE that loses the race to another database's is taken as done.
func TestRolesInstallConcurrentlyOnOneCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var raw [4]byte
	_, err := rand.Read(raw[:])
	require.NoError(t, err)
	prefix := fmt.Sprintf("pollux_race%x_", raw)
	grants, err := fs.ReadFile(schema.Logic(), model.LogicFinalFile)
	require.NoError(t, err)

	// Registered first, so it runs after the databases are dropped: the roles are this
	// test's alone, and go with it.
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, pgtest.ServerDSN(t))
		if err != nil {
			t.Errorf("drop the test's roles: %v", err)
			return
		}
		defer conn.Close(ctx)
		for _, kind := range append([]string{"owner"}, model.DaemonRoles...) {
			if _, err := conn.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{prefix + kind}.Sanitize()); err != nil {
				t.Errorf("drop role %s%s: %v", prefix, kind, err)
			}
		}
	})
	const n = 4
	dbs := make([]*pg.DB, n)
	for i := range dbs {
		dsn, err := pg.WithParam(pgtest.NewDatabase(t, emptyTemplate), "options", "-c pollux.role_prefix="+prefix)
		require.NoError(t, err)
		dbs[i], err = pg.Open(ctx, pg.Config{DSN: dsn})
		require.NoError(t, err)
		defer dbs[i].Close()
		_, err = migrate.Up(ctx, dbs[i], schema.Migrations())
		require.NoError(t, err)
	}
	start := make(chan struct{})
	errs := make(chan error, n)
	for _, db := range dbs {
		go func() {
			<-start
			_, err := db.Pool().Exec(ctx, string(grants))
			errs <- err
		}()
	}
	close(start)
	for range n {
		require.NoError(t, <-errs)
	}
	for _, db := range dbs {
		// The logic is not installed (only the grants file ran): read the table itself.
		got := query(t, db, `SELECT r.kind, r.name, a.rolcanlogin FROM db_role r JOIN pg_roles a ON a.rolname = r.name ORDER BY r.kind`)
		require.Len(t, got, 1+len(model.DaemonRoles))
		for _, r := range got {
			require.Equal(t, prefix+r[0], r[1])
			require.Equal(t, fmt.Sprint(r[0] != "owner"), r[2], r[1])
		}
	}
}
