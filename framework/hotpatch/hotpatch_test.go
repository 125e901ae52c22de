package hotpatch_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pollux-storage/pollux/framework/claim"
	"github.com/pollux-storage/pollux/framework/hotpatch"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/pgtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var base = pgtest.SQLTemplate(`
		create table logic_bundle (version bigint generated always as identity primary key, checksum text not null,
			catalog_checksum text not null, files jsonb not null, applied_at timestamptz not null default now(),
			applied_by text not null, note text not null default '');
		create table item (id bigint generated always as identity primary key, handled_by text);
		create index item_new_idx on item (id) where handled_by is null;`)

// claimLogic is version v of a claim-and-decide function; resultType is the type of its
// "n" column, so changing it changes the function's result type.
func claimLogic(v, resultType string) map[string]string {
	return map[string]string{
		"item.sql": fmt.Sprintf(`
-- item_claim marks up to p_batch items handled by logic %[1]s.
CREATE OR REPLACE FUNCTION item_claim(p_batch integer)
RETURNS TABLE (id bigint, n %[2]s)
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
BEGIN
    RETURN QUERY
    WITH c AS (SELECT i.id FROM item i WHERE i.handled_by IS NULL ORDER BY i.id FOR UPDATE SKIP LOCKED LIMIT p_batch)
    UPDATE item i SET handled_by = '%[1]s' FROM c WHERE i.id = c.id RETURNING i.id, 1::%[2]s;
END;
$$;`, v, resultType),
		"helpers.sql": "CREATE OR REPLACE FUNCTION item_pending() RETURNS bigint LANGUAGE sql STABLE AS 'SELECT count(*) FROM item WHERE handled_by IS NULL';",
	}
}

type bundle struct {
	db  *pg.DB
	p   *hotpatch.Patcher
	ctx context.Context
}

func setup(t *testing.T) *bundle {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	db, err := pg.Open(ctx, pg.Config{DSN: pgtest.NewDatabase(t, base), MaxConns: 24})
	require.NoError(t, err)
	t.Cleanup(db.Close)
	return &bundle{db: db, p: hotpatch.New(db, "logic_bundle"), ctx: ctx}
}

func (b *bundle) apply(t *testing.T, files map[string]string) hotpatch.Result {
	t.Helper()
	res, err := b.p.Apply(b.ctx, hotpatch.NewBundle(files), "test", "", false)
	require.NoError(t, err)
	return res
}

func TestApplyStatusRollback(t *testing.T) {
	t.Parallel()
	b := setup(t)
	v1, v2 := claimLogic("v1", "integer"), claimLogic("v2", "integer")

	st, err := b.p.Status(b.ctx, hotpatch.NewBundle(v1))
	require.NoError(t, err)
	require.Nil(t, st.Installed)
	require.False(t, st.Matches)

	r1 := b.apply(t, v1)
	require.Equal(t, []string{"helpers.sql", "item.sql"}, r1.Files)
	again := b.apply(t, v1)
	require.True(t, again.Unchanged)
	require.Equal(t, r1.Version, again.Version)

	r2 := b.apply(t, v2)
	require.Equal(t, []string{"item.sql"}, r2.Files, "only changed files run")
	st, err = b.p.Status(b.ctx, hotpatch.NewBundle(v1))
	require.NoError(t, err)
	require.False(t, st.Matches)
	require.Equal(t, []string{"item.sql"}, st.Changed)

	// A function edited by hand behind apply's back is reported.
	_, err = b.db.Pool().Exec(b.ctx, "CREATE OR REPLACE FUNCTION item_pending() RETURNS bigint LANGUAGE sql STABLE AS 'SELECT 42::bigint'")
	require.NoError(t, err)
	st, err = b.p.Status(b.ctx, hotpatch.NewBundle(v2))
	require.NoError(t, err)
	require.True(t, st.HandEdited)
	require.False(t, st.Matches)

	rb, err := b.p.Rollback(b.ctx, "test")
	require.NoError(t, err)
	require.Greater(t, rb.Version, r2.Version)
	st, err = b.p.Status(b.ctx, hotpatch.NewBundle(v1))
	require.NoError(t, err)
	require.Contains(t, st.Installed.Note, fmt.Sprintf("rollback of version %d", r2.Version))
	_, err = b.db.Pool().Exec(b.ctx, "insert into item default values")
	require.NoError(t, err)
	var id int64
	var handledBy string
	require.NoError(t, b.db.Pool().QueryRow(b.ctx, "select id from item_claim(1)").Scan(&id))
	require.NoError(t, b.db.Pool().QueryRow(b.ctx, "select handled_by from item where id = $1", id).Scan(&handledBy))
	require.Equal(t, "v1", handledBy, "rollback restored v1's body")

	// A function no file defines any more is dropped.
	delete(v1, "helpers.sql")
	r := b.apply(t, v1)
	require.Equal(t, []string{"item_pending"}, r.Dropped)

	// A broken file changes nothing: the transaction rolls back whole.
	broken := claimLogic("v9", "integer")
	broken["zz_broken.sql"] = "-- a comment\n\nCREATE FUNCTION broken() RETURNS int LANGUAGE plpgsql AS $$\nBEGIN\n    RETURN 1\n    RETURN 2;\nEND;\n$$;\n"
	_, err = b.p.Apply(b.ctx, hotpatch.NewBundle(broken), "test", "", false)
	// The operator is told the file and the line: the missing ";" shows on line 6's RETURN.
	require.ErrorContains(t, err, "logic file zz_broken.sql, line 6, column 12:")
	require.ErrorContains(t, err, `syntax error at or near "2"`)
	cur, err := b.p.Current(b.ctx)
	require.NoError(t, err)
	require.Equal(t, r.Version, cur.Version)
}

func TestNothingToRollBackTo(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.apply(t, claimLogic("v1", "integer"))
	_, err := b.p.Rollback(b.ctx, "test")
	require.ErrorContains(t, err, "no earlier logic version")
}

func TestHotPatchUnderLoad(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.apply(t, claimLogic("v1", "integer"))
	const items = 40_000
	_, err := b.db.Pool().Exec(b.ctx, "insert into item (handled_by) select null from generate_series(1, $1)", items)
	require.NoError(t, err)

	var claimed, failures atomic.Int64
	var firstFailure atomic.Pointer[error] // what failed first, for the message
	pool, err := claim.New(claim.Config{Name: "patched", Workers: 16, Batch: 5, PollInterval: 20 * time.Millisecond,
		Step: func(ctx context.Context) (int, error) {
			n := 0
			err := b.db.Tx(ctx, "claim items", func(q pg.Querier) error {
				n = 0
				// Selecting the column whose type the patch changes: the cached plan goes stale.
				rows, err := q.Query(ctx, "select id, n from item_claim($1::integer)", 5)
				if err != nil {
					return err
				}
				defer rows.Close()
				for rows.Next() {
					var id, k int64
					if err := rows.Scan(&id, &k); err != nil {
						return err
					}
					n++
				}
				return rows.Err()
			})
			if err != nil {
				failures.Add(1)
				firstFailure.CompareAndSwap(nil, &err)
			}
			claimed.Add(int64(n))
			return n, err
		}}, nil, nil, nil)
	require.NoError(t, err)
	require.NoError(t, pool.Start(b.ctx))

	waitFor := func(n int64) {
		require.Eventually(t, func() bool { return claimed.Load() >= n }, time.Minute, time.Millisecond)
	}
	waitFor(items / 5)
	b.apply(t, claimLogic("v2", "integer")) // body change: replaced in place
	waitFor(2 * items / 5)
	r := b.apply(t, claimLogic("v3", "bigint")) // result type change: dropped and recreated
	require.Equal(t, []string{"item_claim"}, r.Recreated)
	waitFor(3 * items / 5)
	_, err = b.p.Rollback(b.ctx, "test") // back to v2's integer result
	require.NoError(t, err)
	waitFor(items)
	require.NoError(t, pool.Stop(b.ctx))

	if first := firstFailure.Load(); first != nil {
		t.Errorf("%d operations failed during the patches, the first: %v", failures.Load(), *first)
	}
	rows, err := b.db.Pool().Query(b.ctx, "select coalesce(handled_by, 'none'), count(*) from item group by 1")
	require.NoError(t, err)
	by := map[string]int{}
	for rows.Next() {
		var v string
		var n int
		require.NoError(t, rows.Scan(&v, &n))
		by[v] = n
	}
	require.NoError(t, rows.Err())
	require.Zero(t, by["none"], "every item handled")
	for _, v := range []string{"v1", "v2", "v3"} {
		require.Positive(t, by[v], "running workers used logic %s without a restart (%v)", v, by)
	}
}

func TestTriggers(t *testing.T) {
	t.Parallel()
	sql := `
-- CREATE TRIGGER commented_out BEFORE INSERT ON nowhere
CREATE OR REPLACE TRIGGER item_guard
    BEFORE UPDATE OF handled_by ON item
    FOR EACH ROW EXECUTE FUNCTION item_guard();
create trigger "Audit" after insert or delete on public.item_log for each statement execute function audit();
CREATE CONSTRAINT TRIGGER item_check AFTER INSERT ON item DEFERRABLE FOR EACH ROW EXECUTE FUNCTION item_check();`
	require.Equal(t, []hotpatch.Trigger{
		{Name: "item_guard", Table: "item"},
		{Name: "audit", Table: "item_log"},
		{Name: "item_check", Table: "item"},
	}, hotpatch.Triggers(sql))
	require.Equal(t, []hotpatch.Trigger{
		{Name: "item_check", Table: "item"},
		{Name: "item_guard", Table: "item"},
		{Name: "audit", Table: "item_log"},
	}, hotpatch.NewBundle(map[string]string{"a.sql": sql}).Triggers(), "sorted by table, then name")
}

// guardLogic is a trigger refusing to mark an item handled by refused, in its own file
// beside claimLogic's.
func guardLogic(v, refused string) map[string]string {
	files := claimLogic(v, "integer")
	files["guard.sql"] = fmt.Sprintf(`
-- item_guard refuses handled_by = '%[1]s'.
CREATE OR REPLACE FUNCTION item_guard() RETURNS trigger LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'refused by the guard of %[2]s' USING ERRCODE = 'PX999';
END;
$$;
CREATE OR REPLACE TRIGGER item_guard BEFORE UPDATE OF handled_by ON item
    FOR EACH ROW WHEN (NEW.handled_by = '%[1]s') EXECUTE FUNCTION item_guard();`, refused, v)
	return files
}

func TestTriggersApplyStatusRollback(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.db.Pool().Exec(b.ctx, "insert into item default values")
	require.NoError(t, err)
	mark := func(handledBy string) error {
		_, err := b.db.Pool().Exec(b.ctx, "update item set handled_by = $1", handledBy)
		return err
	}
	refused := func(handledBy string) {
		t.Helper()
		err := mark(handledBy)
		require.Error(t, err, "the guard refuses %q", handledBy)
		require.Equal(t, "PX999", pg.SQLState(err), "%v", err)
	}
	matches := func(files map[string]string) bool {
		t.Helper()
		st, err := b.p.Status(b.ctx, hotpatch.NewBundle(files))
		require.NoError(t, err)
		return st.Matches
	}

	b.apply(t, claimLogic("v0", "integer"))
	require.NoError(t, mark("a"), "no guard yet")

	v1, v2 := guardLogic("v1", "x"), guardLogic("v2", "y")
	b.apply(t, v1)
	refused("x")
	require.NoError(t, mark("y"))
	require.True(t, matches(v1))

	// A trigger disabled or dropped by hand is reported, as an edited function is.
	_, err = b.db.Pool().Exec(b.ctx, "alter table item disable trigger item_guard")
	require.NoError(t, err)
	require.False(t, matches(v1), "a disabled trigger is a hand edit")
	_, err = b.p.Apply(b.ctx, hotpatch.NewBundle(v1), "test", "", true)
	require.NoError(t, err)
	require.True(t, matches(v1), "a forced apply enables it again")
	refused("x")
	_, err = b.db.Pool().Exec(b.ctx, "drop trigger item_guard on item")
	require.NoError(t, err)
	require.False(t, matches(v1), "a dropped trigger is a hand edit")
	_, err = b.p.Apply(b.ctx, hotpatch.NewBundle(v1), "test", "", true)
	require.NoError(t, err)

	// A new version replaces the trigger and its function in place; rollback restores both.
	b.apply(t, v2)
	require.NoError(t, mark("x"))
	refused("y")
	_, err = b.p.Rollback(b.ctx, "test")
	require.NoError(t, err)
	refused("x")
	require.NoError(t, mark("y"))
	require.True(t, matches(v1))

	// A version without the trigger drops it before its function, which it uses.
	r := b.apply(t, claimLogic("v3", "integer"))
	require.Equal(t, []string{"item_guard on item"}, r.DroppedTriggers)
	require.Equal(t, []string{"item_guard"}, r.Dropped)
	require.NoError(t, mark("x"))
	require.True(t, matches(claimLogic("v3", "integer")))

	// Rolling back to the guarded version brings the trigger back.
	_, err = b.p.Rollback(b.ctx, "test")
	require.NoError(t, err)
	refused("x")

	dropped, err := b.p.Uninstall(b.ctx)
	require.NoError(t, err)
	require.Contains(t, dropped, "trigger item_guard on item")
	require.Contains(t, dropped, "item_guard")
	require.NoError(t, mark("x"))
}

// A function whose argument types change is not refused by CREATE OR REPLACE: it would make a
// second function beside the first, which callers of the old signature would go on using
// and a later patch could not drop by name. The apply leaves one function of each name, the
// file's; an overload an earlier version left behind goes too.
func TestArgumentTypeChangeLeavesNoOldSignature(t *testing.T) {
	t.Parallel()
	b := setup(t)
	fn := func(args string) map[string]string {
		return map[string]string{"f.sql": "CREATE OR REPLACE FUNCTION pick(" + args + ") RETURNS integer LANGUAGE sql AS 'SELECT 1';"}
	}
	signatures := func() []string {
		t.Helper()
		rows, err := b.db.Pool().Query(b.ctx, "select oid::regprocedure::text from pg_proc where proname = 'pick' order by 1")
		require.NoError(t, err)
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s string
			require.NoError(t, rows.Scan(&s))
			out = append(out, s)
		}
		return out
	}
	b.apply(t, fn("p_a integer"))
	require.Equal(t, []string{"pick(integer)"}, signatures())
	r := b.apply(t, fn("p_a integer, p_b text"))
	require.Equal(t, []string{"pick(integer,text)"}, signatures(), "the old signature went")
	require.Contains(t, r.Recreated, "pick")

	// A stray overload, as an earlier apply without this rule left: the next change of the
	// file removes it, and a change that needs the drop-and-recreate path (a result type)
	// is not stopped by it.
	_, err := b.db.Pool().Exec(b.ctx, "CREATE FUNCTION pick(p_a bigint) RETURNS integer LANGUAGE sql AS 'SELECT 2'")
	require.NoError(t, err)
	b.apply(t, map[string]string{"f.sql": "CREATE OR REPLACE FUNCTION pick(p_a integer, p_b text) RETURNS bigint LANGUAGE sql AS 'SELECT 3::bigint';"})
	require.Equal(t, []string{"pick(integer,text)"}, signatures())
}

// A Final file runs after every other file each time an apply runs any, even when it is
// unchanged itself, and so restates what CREATE OR REPLACE resets (here SECURITY
// DEFINER); an apply that runs nothing does not run it either.
func TestFinalFileRunsLastWheneverAnyFileRuns(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Named to sort first, yet run last: it needs item_claim to exist.
	p := hotpatch.New(b.db, "logic_bundle", hotpatch.Final("aa_final.sql"))
	files := claimLogic("v1", "integer")
	files["aa_final.sql"] = "ALTER FUNCTION item_claim(integer) SECURITY DEFINER;"
	definer := func() bool {
		var d bool
		require.NoError(t, b.db.Pool().QueryRow(b.ctx, "SELECT prosecdef FROM pg_proc WHERE proname = 'item_claim'").Scan(&d))
		return d
	}

	res, err := p.Apply(b.ctx, hotpatch.NewBundle(files), "test", "", false)
	require.NoError(t, err)
	require.Equal(t, []string{"helpers.sql", "item.sql", "aa_final.sql"}, res.Files)
	require.True(t, definer())

	// Only item.sql changed; its CREATE OR REPLACE makes item_claim SECURITY INVOKER again,
	// and the final file, unchanged, runs after it.
	files["item.sql"] = claimLogic("v2", "integer")["item.sql"]
	res, err = p.Apply(b.ctx, hotpatch.NewBundle(files), "test", "", false)
	require.NoError(t, err)
	require.Equal(t, []string{"item.sql", "aa_final.sql"}, res.Files)
	require.True(t, definer())

	res, err = p.Apply(b.ctx, hotpatch.NewBundle(files), "test", "", false)
	require.NoError(t, err)
	require.True(t, res.Unchanged)
	require.Empty(t, res.Files)

	// Without the option the same bundle leaves the function as the last file made it.
	files["item.sql"] = claimLogic("v3", "integer")["item.sql"]
	res, err = hotpatch.New(b.db, "logic_bundle").Apply(b.ctx, hotpatch.NewBundle(files), "test", "", false)
	require.NoError(t, err)
	require.Equal(t, []string{"item.sql"}, res.Files)
	require.False(t, definer())
}
