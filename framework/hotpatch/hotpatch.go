package hotpatch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"

	"github.com/pollux-storage/pollux/framework/pg"
)

// Bundle is a set of logic files and their checksum.
type Bundle struct {
	Files    map[string]string
	Checksum string
}

// Load reads every *.sql file at the root of fsys.
func Load(fsys fs.FS) (Bundle, error) {
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return Bundle{}, fmt.Errorf("list logic files: %w", err)
	}
	if len(names) == 0 {
		return Bundle{}, errors.New("list logic files: no *.sql files")
	}
	files := map[string]string{}
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return Bundle{}, fmt.Errorf("read logic file: %w", err)
		}
		files[n] = string(b)
	}
	return NewBundle(files), nil
}

// NewBundle computes the checksum of files.
func NewBundle(files map[string]string) Bundle {
	h := sha256.New()
	for _, n := range sortedKeys(files) {
		h.Write([]byte(n))
		h.Write([]byte{0})
		h.Write([]byte(files[n]))
		h.Write([]byte{0})
	}
	return Bundle{Files: files, Checksum: hex.EncodeToString(h.Sum(nil))}
}

var functionName = regexp.MustCompile(`(?is)\bcreate\s+(?:or\s+replace\s+)?function\s+(?:"?[a-z_][a-z0-9_]*"?\.)?"?([a-z_][a-z0-9_]*)"?\s*\(`)

// Functions returns the names of the functions a file defines.
func Functions(sql string) []string {
	var out []string
	for _, m := range functionName.FindAllStringSubmatch(stripComments(sql), -1) {
		name := strings.ToLower(m[1])
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// Functions returns the names of every function the bundle defines, sorted.
func (b Bundle) Functions() []string {
	var out []string
	for _, sql := range b.Files {
		for _, f := range Functions(sql) {
			if !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Trigger is a trigger a logic file defines: triggers are named per table, so the table
// is part of its identity (DROP TRIGGER needs it too).
type Trigger struct {
	Name  string `json:"name"`
	Table string `json:"table"`
}

// String is the trigger as "name on table".
func (t Trigger) String() string { return t.Name + " on " + t.Table }

var triggerName = regexp.MustCompile(`(?is)\bcreate\s+(?:or\s+replace\s+)?(?:constraint\s+)?trigger\s+"?([a-z_][a-z0-9_]*)"?\s.*?\bon\s+(?:"?[a-z_][a-z0-9_]*"?\.)?"?([a-z_][a-z0-9_]*)"?`)

// Triggers returns the triggers a file defines.
func Triggers(sql string) []Trigger {
	var out []Trigger
	for _, m := range triggerName.FindAllStringSubmatch(stripComments(sql), -1) {
		t := Trigger{Name: strings.ToLower(m[1]), Table: strings.ToLower(m[2])}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// Triggers returns every trigger the bundle defines, sorted by table then name.
func (b Bundle) Triggers() []Trigger {
	var out []Trigger
	for _, sql := range b.Files {
		for _, t := range Triggers(sql) {
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	sortTriggers(out)
	return out
}

func sortTriggers(ts []Trigger) {
	slices.SortFunc(ts, func(a, b Trigger) int {
		if c := strings.Compare(a.Table, b.Table); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
}

var lineComment = regexp.MustCompile(`--[^\n]*`)

func stripComments(sql string) string { return lineComment.ReplaceAllString(sql, "") }

// Installed is one row of the bookkeeping table.
type Installed struct {
	Version         int64             `json:"version"`
	Checksum        string            `json:"checksum"`
	CatalogChecksum string            `json:"catalog_checksum"`
	Files           map[string]string `json:"-"`
	AppliedAt       time.Time         `json:"applied_at"`
	AppliedBy       string            `json:"applied_by"`
	Note            string            `json:"note"`
}

// Result says what Apply or Rollback did.
type Result struct {
	Version   int64    `json:"version"`             // the version now installed
	Unchanged bool     `json:"unchanged,omitempty"` // the bundle was installed already; nothing ran
	Files     []string `json:"files,omitempty"`     // files executed
	Recreated []string `json:"recreated,omitempty"` // functions dropped and created anew (signature change)
	Dropped   []string `json:"dropped,omitempty"`   // functions no file defines any more
	// DroppedTriggers are the triggers no file defines any more, as "name on table".
	DroppedTriggers []string `json:"dropped_triggers,omitempty"`
}

// Patcher applies bundles to one database.
type Patcher struct {
	db    *pg.DB
	table string
	final string
}

// Option changes how a Patcher applies bundles.
type Option func(*Patcher)

// Final names a file of the bundle that runs after every other file, each time an apply
// runs any file (changed or not itself). It is for SQL that restates what running the
// other files undoes: CREATE OR REPLACE FUNCTION resets attributes such as SECURITY
// DEFINER, and a function dropped and created anew to change its signature loses its
// grants. A bundle without that file applies as if no file were final.
func Final(name string) Option { return func(p *Patcher) { p.final = name } }

// New returns a patcher keeping its records in table (e.g. "logic_bundle").
func New(db *pg.DB, table string, opts ...Option) *Patcher {
	p := &Patcher{db: db, table: pgx.Identifier{table}.Sanitize()}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Apply installs b in one transaction unless it is installed already (force re-runs it).
func (p *Patcher) Apply(ctx context.Context, b Bundle, by, note string, force bool) (Result, error) {
	var res Result
	err := p.db.Tx(ctx, "apply logic", func(q pg.Querier) error {
		res = Result{}
		return p.apply(ctx, q, b, by, note, force, &res)
	})
	return res, err
}

func (p *Patcher) apply(ctx context.Context, q pg.Querier, b Bundle, by, note string, force bool, res *Result) error {
	// Two operators applying at once would interleave DROPs and CREATEs; serialise them.
	if _, err := q.Exec(ctx, "lock table "+p.table+" in exclusive mode"); err != nil {
		return fmt.Errorf("lock %s: %w", p.table, err)
	}
	cur, err := p.current(ctx, q)
	if err != nil {
		return err
	}
	if cur != nil && cur.Checksum == b.Checksum && !force {
		res.Version, res.Unchanged = cur.Version, true
		return nil
	}
	old := Bundle{Files: map[string]string{}}
	if cur != nil {
		old = Bundle{Files: cur.Files}
	}
	for _, name := range sortedKeys(b.Files) {
		if name == p.final || (!force && cur != nil && old.Files[name] == b.Files[name]) {
			continue
		}
		recreated, err := execFile(ctx, q, name, b.Files[name])
		if err != nil {
			return err
		}
		res.Files = append(res.Files, name)
		res.Recreated = append(res.Recreated, recreated...)
	}
	if sql, ok := b.Files[p.final]; ok && (len(res.Files) > 0 || force || cur == nil || old.Files[p.final] != sql) {
		recreated, err := execFile(ctx, q, p.final, sql)
		if err != nil {
			return err
		}
		res.Files = append(res.Files, p.final)
		res.Recreated = append(res.Recreated, recreated...)
	}
	// Triggers go before functions: a trigger's function cannot be dropped while the
	// trigger uses it.
	keepTriggers := b.Triggers()
	for _, t := range old.Triggers() {
		if slices.Contains(keepTriggers, t) {
			continue
		}
		if err := dropTrigger(ctx, q, t); err != nil {
			return fmt.Errorf("drop trigger %s, which no logic file defines any more: %w", t, err)
		}
		res.DroppedTriggers = append(res.DroppedTriggers, t.String())
	}
	keep := b.Functions()
	for _, f := range old.Functions() {
		if slices.Contains(keep, f) {
			continue
		}
		if _, err := q.Exec(ctx, "drop function if exists "+pgx.Identifier{f}.Sanitize()); err != nil {
			return fmt.Errorf("drop function %s, which no logic file defines any more: %w", f, err)
		}
		res.Dropped = append(res.Dropped, f)
	}
	catalog, err := catalogChecksum(ctx, q, keep, keepTriggers)
	if err != nil {
		return err
	}
	files, _ := json.Marshal(b.Files)
	return q.QueryRow(ctx, "insert into "+p.table+" (checksum, catalog_checksum, files, applied_by, note) values ($1, $2, $3, $4, $5) returning version",
		b.Checksum, catalog, files, by, note).Scan(&res.Version)
}

// execFile runs one file inside a savepoint. PostgreSQL refuses CREATE OR REPLACE when the
// result type or an argument name changes (42P13); then the file's functions are dropped
// and the file runs again. A change of argument types is no refusal: CREATE OR REPLACE then
// makes a second function of the same name beside the old one, which callers of the old
// signature would go on reaching and a later patch could not drop by name. A bundle defines
// one function per name, so once the file ran, an overload that existed before it and that
// it did not create or replace is the old signature, and goes.
func execFile(ctx context.Context, q pg.Querier, name, sql string) ([]string, error) {
	fns := Functions(sql)
	before, err := overloads(ctx, q, fns)
	if err != nil {
		return nil, fmt.Errorf("logic file %s: %w", name, err)
	}
	if _, err := q.Exec(ctx, "savepoint logic_file"); err != nil {
		return nil, fmt.Errorf("savepoint: %w", err)
	}
	var recreated []string
	_, err = q.Exec(ctx, sql)
	switch {
	case err == nil:
		if _, err := q.Exec(ctx, "release savepoint logic_file"); err != nil {
			return nil, err
		}
	case pg.SQLState(err) != pgerrcode.InvalidFunctionDefinition:
		return nil, fileError(name, sql, err)
	default:
		if _, err := q.Exec(ctx, "rollback to savepoint logic_file"); err != nil {
			return nil, fmt.Errorf("rollback to savepoint: %w", err)
		}
		// The file's own triggers may use the functions about to be dropped; the file creates
		// them again.
		for _, t := range Triggers(sql) {
			if err := dropTrigger(ctx, q, t); err != nil {
				return nil, fmt.Errorf("logic file %s: drop trigger %s to change a function's signature: %w", name, t, err)
			}
		}
		for _, sigs := range before {
			for _, sig := range sigs {
				if _, err := q.Exec(ctx, "drop function if exists "+sig); err != nil {
					return nil, fmt.Errorf("logic file %s: drop function %s to change its signature: %w", name, sig, err)
				}
			}
		}
		before = nil
		if _, err := q.Exec(ctx, sql); err != nil {
			return nil, fileError(name, sql, err)
		}
		recreated = fns
	}
	after, err := overloads(ctx, q, fns)
	if err != nil {
		return nil, fmt.Errorf("logic file %s: %w", name, err)
	}
	for fn, sigs := range after {
		var added, old []string
		for oid, sig := range sigs {
			if _, existed := before[fn][oid]; existed {
				old = append(old, sig)
			} else {
				added = append(added, sig)
			}
		}
		if len(added) == 0 {
			continue // replaced in place, or untouched
		}
		for _, sig := range old {
			if _, err := q.Exec(ctx, "drop function "+sig); err != nil {
				return nil, fmt.Errorf("logic file %s: drop %s, the old signature of %s: %w", name, sig, fn, err)
			}
			recreated = append(recreated, fn)
		}
	}
	return recreated, nil
}

// overloads returns, by function name, the functions of those names in the search path:
// oid → signature (regprocedure, ready for DROP FUNCTION).
func overloads(ctx context.Context, q pg.Querier, names []string) (map[string]map[uint32]string, error) {
	rows, err := q.Query(ctx, `select p.proname, p.oid, p.oid::regprocedure::text from pg_proc p
		where p.proname = any($1)
		  and p.pronamespace in (select oid from pg_namespace where nspname = any(current_schemas(false)))`, names)
	if err != nil {
		return nil, fmt.Errorf("list functions: %w", err)
	}
	defer rows.Close()
	out := map[string]map[uint32]string{}
	for rows.Next() {
		var name, sig string
		var oid uint32
		if err := rows.Scan(&name, &oid, &sig); err != nil {
			return nil, err
		}
		if out[name] == nil {
			out[name] = map[uint32]string{}
		}
		out[name][oid] = sig
	}
	return out, rows.Err()
}

// dropTrigger drops t if it and its table exist: a table taken down by a migration has
// taken its triggers with it.
func dropTrigger(ctx context.Context, q pg.Querier, t Trigger) error {
	var exists bool
	if err := q.QueryRow(ctx, "select to_regclass($1) is not null", pgx.Identifier{t.Table}.Sanitize()).Scan(&exists); err != nil || !exists {
		return err
	}
	_, err := q.Exec(ctx, "drop trigger if exists "+pgx.Identifier{t.Name}.Sanitize()+" on "+pgx.Identifier{t.Table}.Sanitize())
	return err
}

// catalogChecksum hashes the installed definitions of the named functions and triggers. A
// trigger counts with its enabled state, so that one disabled by hand (ALTER TABLE ...
// DISABLE TRIGGER) shows as edited. With no triggers the hash is the one of the functions
// alone, as versions recorded before triggers were hashed have it.
func catalogChecksum(ctx context.Context, q pg.Querier, names []string, triggers []Trigger) (string, error) {
	tables, tnames := make([]string, len(triggers)), make([]string, len(triggers))
	for i, t := range triggers {
		tables[i], tnames[i] = t.Table, t.Name
	}
	var sum string
	err := q.QueryRow(ctx, `
		select md5(coalesce(f.defs, '') || coalesce(E'\n' || t.defs, ''))
		from (select string_agg(pg_get_functiondef(p.oid), E'\n' order by p.proname, p.oid) as defs
		      from pg_proc p
		      where p.proname = any($1)
		        and p.pronamespace in (select oid from pg_namespace where nspname = any(current_schemas(false)))) f,
		     (select string_agg(pg_get_triggerdef(tg.oid) || ' enabled=' || tg.tgenabled::text, E'\n' order by c.relname, tg.tgname) as defs
		      from pg_trigger tg join pg_class c on c.oid = tg.tgrelid
		      where not tg.tgisinternal
		        and (c.relname::text, tg.tgname::text) in (select * from unnest($2::text[], $3::text[]))
		        and c.relnamespace in (select oid from pg_namespace where nspname = any(current_schemas(false)))) t`,
		names, tables, tnames).Scan(&sum)
	if err != nil {
		return "", fmt.Errorf("checksum installed functions and triggers: %w", err)
	}
	return sum, nil
}

// Current returns the installed version, or nil when no logic was ever installed.
func (p *Patcher) Current(ctx context.Context) (*Installed, error) {
	var cur *Installed
	err := p.db.DoIdempotent(ctx, "read installed logic", func(q pg.Querier) (err error) {
		cur, err = p.current(ctx, q)
		return err
	})
	return cur, err
}

func (p *Patcher) current(ctx context.Context, q pg.Querier) (*Installed, error) {
	list, err := p.history(ctx, q, 1)
	if err != nil || len(list) == 0 {
		return nil, err
	}
	return &list[0], nil
}

// History returns the newest limit versions, newest first.
func (p *Patcher) History(ctx context.Context, limit int) ([]Installed, error) {
	var list []Installed
	err := p.db.DoIdempotent(ctx, "read logic history", func(q pg.Querier) (err error) {
		list, err = p.history(ctx, q, limit)
		return err
	})
	return list, err
}

func (p *Patcher) history(ctx context.Context, q pg.Querier, limit int) ([]Installed, error) {
	rows, err := q.Query(ctx, "select version, checksum, catalog_checksum, files, applied_at, applied_by, note from "+p.table+" order by version desc limit $1", limit)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p.table, err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Installed, error) {
		var in Installed
		var files []byte
		if err := r.Scan(&in.Version, &in.Checksum, &in.CatalogChecksum, &files, &in.AppliedAt, &in.AppliedBy, &in.Note); err != nil {
			return in, err
		}
		return in, json.Unmarshal(files, &in.Files)
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p.table, err)
	}
	return list, nil
}

// Status compares the database with a bundle.
type Status struct {
	Installed *Installed `json:"installed"`
	// Matches is true when the installed version is this bundle and nobody changed its
	// functions by hand since.
	Matches bool `json:"matches"`
	// HandEdited is true when a function's definition differs from what apply installed.
	HandEdited bool     `json:"hand_edited"`
	Changed    []string `json:"changed,omitempty"` // files whose content differs
	Added      []string `json:"added,omitempty"`   // files the database does not have
	Removed    []string `json:"removed,omitempty"` // installed files the bundle lacks
}

// Status reports how the database stands against b.
func (p *Patcher) Status(ctx context.Context, b Bundle) (Status, error) {
	var st Status
	err := p.db.DoIdempotent(ctx, "logic status", func(q pg.Querier) error {
		st = Status{}
		cur, err := p.current(ctx, q)
		if err != nil || cur == nil {
			st.Added = sortedKeys(b.Files)
			return err
		}
		installed := Bundle{Files: cur.Files}
		catalog, err := catalogChecksum(ctx, q, installed.Functions(), installed.Triggers())
		if err != nil {
			return err
		}
		st = Compare(cur, catalog != cur.CatalogChecksum, b)
		return nil
	})
	return st, err
}

// Compare is Status from what is installed (cur, with its files), whether its functions
// were changed by hand (HandEdited), and the bundle: for a caller that read the installed
// version through a function rather than the bookkeeping table.
func Compare(cur *Installed, handEdited bool, b Bundle) Status {
	st := Status{Installed: cur, HandEdited: handEdited}
	for _, n := range sortedKeys(b.Files) {
		old, ok := cur.Files[n]
		switch {
		case !ok:
			st.Added = append(st.Added, n)
		case old != b.Files[n]:
			st.Changed = append(st.Changed, n)
		}
	}
	for _, n := range sortedKeys(cur.Files) {
		if _, ok := b.Files[n]; !ok {
			st.Removed = append(st.Removed, n)
		}
	}
	st.Matches = cur.Checksum == b.Checksum && !handEdited
	return st
}

// HandEdited reports whether the functions and triggers of an installed version (its
// files) differ from what apply recorded of them (its catalogue checksum): someone changed
// them outside apply. It reads only the catalogue, so that a caller without access to the
// bookkeeping table (a daemon's role, given the version by a function) can check.
func HandEdited(ctx context.Context, q pg.Querier, in Installed) (bool, error) {
	b := Bundle{Files: in.Files}
	catalog, err := catalogChecksum(ctx, q, b.Functions(), b.Triggers())
	if err != nil {
		return false, err
	}
	return catalog != in.CatalogChecksum, nil
}

// Rollback re-installs the version that preceded the current one, as a new version.
func (p *Patcher) Rollback(ctx context.Context, by string) (Result, error) {
	var res Result
	err := p.db.Tx(ctx, "rollback logic", func(q pg.Querier) error {
		res = Result{}
		if _, err := q.Exec(ctx, "lock table "+p.table+" in exclusive mode"); err != nil {
			return fmt.Errorf("lock %s: %w", p.table, err)
		}
		list, err := p.history(ctx, q, 2)
		if err != nil {
			return err
		}
		if len(list) < 2 {
			return errors.New("rollback: there is no earlier logic version to go back to")
		}
		note := fmt.Sprintf("rollback of version %d to the content of version %d", list[0].Version, list[1].Version)
		return p.apply(ctx, q, NewBundle(list[1].Files), by, note, false, &res)
	})
	return res, err
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Uninstall drops every trigger and function the installed bundle defines, so that
// migrations can take the tables they depend on down, and returns what it dropped. The
// bookkeeping rows stay (the migrations own the table).
func (p *Patcher) Uninstall(ctx context.Context) ([]string, error) {
	var dropped []string
	err := p.db.Tx(ctx, "uninstall logic", func(q pg.Querier) error {
		dropped = nil
		var exists bool
		if err := q.QueryRow(ctx, "select to_regclass($1) is not null", p.table).Scan(&exists); err != nil || !exists {
			return err
		}
		cur, err := p.current(ctx, q)
		if err != nil || cur == nil {
			return err
		}
		installed := Bundle{Files: cur.Files}
		for _, t := range installed.Triggers() {
			if err := dropTrigger(ctx, q, t); err != nil {
				return fmt.Errorf("drop trigger %s: %w", t, err)
			}
			dropped = append(dropped, "trigger "+t.String())
		}
		for _, f := range installed.Functions() {
			if _, err := q.Exec(ctx, "drop function if exists "+pgx.Identifier{f}.Sanitize()); err != nil {
				return fmt.Errorf("drop function %s: %w", f, err)
			}
			dropped = append(dropped, f)
		}
		return nil
	})
	return dropped, err
}

// Names are the bundle's file names, sorted.
func (b Bundle) Names() []string { return sortedKeys(b.Files) }
