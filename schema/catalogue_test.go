package schema_test

import (
	"context"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/codegen/desc"
	"github.com/pollux-storage/pollux/framework/hotpatch"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/schema"
	"github.com/pollux-storage/pollux/schema/schematest"
)

// TestCatalogueMatchesDescription migrates a fresh database, installs the logic, and checks
// that the live catalogue has exactly the tables, columns, types, nullability, enum values
// and function signatures of schema/pollux.yaml — the description the Go model is
// generated from. A migration or logic file that drifts from it fails here.
func TestCatalogueMatchesDescription(t *testing.T) {
	t.Parallel()
	s, err := desc.Load(schema.Description)
	require.NoError(t, err)
	db := schematest.DB(t)

	t.Run("tables and columns", func(t *testing.T) {
		live := query(t, db, `
			select c.relname, a.attname, format_type(a.atttypid, a.atttypmod), not a.attnotnull
			from pg_class c
			join pg_namespace n on n.oid = c.relnamespace and n.nspname = 'public'
			join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
			where c.relkind = 'r' and c.relname <> 'schema_migrations' and c.relname not like 'river\_%'
			order by c.relname, a.attnum`)
		var want []string
		for _, tb := range s.Tables {
			for _, c := range tb.Columns {
				want = append(want, fmt.Sprintf("%s.%s %s null=%t", tb.Name, c.Name, c.PGType(), c.Nullable))
			}
		}
		var got []string
		for _, r := range live {
			got = append(got, fmt.Sprintf("%s.%s %s null=%s", r[0], r[1], r[2], r[3]))
		}
		sortByTable(want)
		sortByTable(got)
		require.Equal(t, want, got, "columns (in declared order) of the live database vs schema/pollux.yaml")
	})

	t.Run("enums", func(t *testing.T) {
		live := query(t, db, `
			select t.typname, string_agg(e.enumlabel, ',' order by e.enumsortorder)
			from pg_type t join pg_enum e on e.enumtypid = t.oid
			join pg_namespace n on n.oid = t.typnamespace and n.nspname = 'public'
			where t.typname not like 'river\_%'
			group by t.typname order by t.typname`)
		got := map[string]string{}
		for _, r := range live {
			got[r[0]] = r[1]
		}
		want := map[string]string{}
		for _, e := range s.Enums {
			var vals []string
			for _, v := range e.Values {
				vals = append(vals, v.Name)
			}
			want[e.Name] = strings.Join(vals, ",")
		}
		require.Equal(t, want, got)
	})

	t.Run("functions", func(t *testing.T) {
		logic, err := hotpatch.Load(schema.Logic())
		require.NoError(t, err)
		defined := map[string]string{} // function → file defining it
		for file, sql := range logic.Files {
			for _, f := range hotpatch.Functions(sql) {
				defined[f] = file
			}
		}
		live := map[string][2]string{}
		for _, r := range query(t, db, `
			select p.proname, pg_get_function_identity_arguments(p.oid), pg_get_function_result(p.oid)
			from pg_proc p join pg_namespace n on n.oid = p.pronamespace and n.nspname = 'public'
			where p.proname not like 'river\_%'`) {
			live[r[0]] = [2]string{r[1], r[2]}
		}
		// Described functions, and those codegen writes from the description (the state
		// machines' trigger functions).
		described := map[string]bool{}
		for _, f := range s.Signatures() {
			described[f.Name] = true
			require.Equal(t, f.File, defined[f.Name], "%s is described as living in %s", f.Name, f.File)
			got, ok := live[f.Name]
			require.True(t, ok, "%s is described but not installed", f.Name)
			require.Equal(t, f.IdentityArgs, got[0], "arguments of %s", f.Name)
			require.Equal(t, f.Result, got[1], "result of %s", f.Name)
		}
		for name := range live {
			require.True(t, described[name], "function %s is installed but not described in schema/pollux.yaml", name)
		}
		for name := range defined {
			require.True(t, described[name], "function %s is defined in schema/logic but not described", name)
		}
	})

	t.Run("triggers", func(t *testing.T) {
		// Exactly the generated guards' and histories' triggers, each calling its function: a
		// trigger added by hand to a migration or a logic file belongs in the description.
		live := query(t, db, `
			select c.relname || '.' || tg.tgname || ' ' || p.proname
			from pg_trigger tg
			join pg_class c on c.oid = tg.tgrelid
			join pg_namespace n on n.oid = c.relnamespace and n.nspname = 'public'
			join pg_proc p on p.oid = tg.tgfoid
			where not tg.tgisinternal and c.relname not like 'river\_%'
			order by 1`)
		var got []string
		for _, r := range live {
			got = append(got, r[0])
		}
		var want []string
		for _, g := range s.Guards() {
			for _, tg := range []string{g.InsertTrigger, g.UpdateTrigger} {
				want = append(want, g.Table+"."+tg+" "+g.Function)
			}
		}
		for _, h := range s.Histories() {
			for _, tg := range []string{h.InsertTrigger, h.UpdateTrigger} {
				want = append(want, h.Source+"."+tg+" "+h.Function)
			}
		}
		sort.Strings(want)
		require.Equal(t, want, got)
	})

	t.Run("raised SQLSTATEs are declared", func(t *testing.T) {
		declared := map[string]bool{}
		for _, e := range s.Errors {
			declared[e.SQLState] = true
		}
		re := regexp.MustCompile(`ERRCODE\s*=\s*'([0-9A-Z]{5})'`)
		files, err := fs.Glob(schema.Logic(), "*.sql")
		require.NoError(t, err)
		for _, f := range files {
			b, err := fs.ReadFile(schema.Logic(), f)
			require.NoError(t, err)
			for _, m := range re.FindAllStringSubmatch(string(b), -1) {
				// Class 40 (transaction rollback) asks framework/pg to retry: not a user error.
				if strings.HasPrefix(m[1], "40") {
					continue
				}
				require.True(t, declared[m[1]], "%s raises SQLSTATE %s, which schema/pollux.yaml does not declare", f, m[1])
			}
		}
	})
}

func sortByTable(rows []string) {
	// Tables in name order, columns in declared order within a table.
	sort.SliceStable(rows, func(i, j int) bool {
		ti, _, _ := strings.Cut(rows[i], ".")
		tj, _, _ := strings.Cut(rows[j], ".")
		return ti < tj
	})
}

func query(t *testing.T, db *pg.DB, sql string) [][]string {
	t.Helper()
	rows, err := db.Pool().Query(context.Background(), sql)
	require.NoError(t, err)
	defer rows.Close()
	var out [][]string
	for rows.Next() {
		vals, err := rows.Values()
		require.NoError(t, err)
		var r []string
		for _, v := range vals {
			r = append(r, fmt.Sprint(v))
		}
		out = append(out, r)
	}
	require.NoError(t, rows.Err())
	return out
}
