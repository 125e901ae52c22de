package schema_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/uuid"
	"github.com/pollux-storage/pollux/model"
	"github.com/pollux-storage/pollux/schema/schematest"
)

// Namespace permissions (schema/logic/permission.sql), decided by the stager's decisions and
// file_query against the requesting user. The cast: alice owns /pollux/u/alice and its file
// f, both of group physics; bob is in physics; carol is in no group; ops is an administrator.

const (
	permHome = "/pollux/u/alice"
	permFile = permHome + "/f"
)

type perm struct {
	t   *testing.T
	db  *pg.DB
	ctx context.Context
}

// newPerm makes the cast, the home with dirMode and, when fileMode >= 0, the file f.
func newPerm(t *testing.T, dirMode, fileMode int32) *perm {
	t.Helper()
	p := &perm{t: t, db: schematest.DB(t), ctx: context.Background()}
	pool := p.db.Pool()
	_, err := model.NamespaceMkhome(p.ctx, pool, "alice", "physics", "test")
	require.NoError(t, err)
	_, err = model.NamespaceEntrySet(p.ctx, pool, permHome, nil, nil, &dirMode, "test")
	require.NoError(t, err)
	_, err = model.UserGroupSet(p.ctx, pool, "bob", "physics", true, "test")
	require.NoError(t, err)
	_, err = model.AdminUserSet(p.ctx, pool, "ops", true, "test")
	require.NoError(t, err)
	if fileMode >= 0 {
		// The file as a put by alice leaves it before its write is closed would have no
		// copy; an entry with no copy is all that the decisions need here.
		_, err = pool.Exec(p.ctx, `INSERT INTO file (path, service_class_id, owner, group_name, mode)
			VALUES ($1, (SELECT id FROM service_class WHERE name = 'default'), 'alice', 'physics', $2)`, permFile, fileMode)
		require.NoError(t, err)
	}
	return p
}

// decide submits one request of typ on path as user, runs its stager pool once and
// returns the subrequest as decided.
func (p *perm) decide(typ model.RequestType, user, path string) model.Subrequest {
	p.t.Helper()
	id := uuid.New()
	_, err := model.RequestSubmit(p.ctx, p.db.Pool(), id, typ, "default", user, "", "test", []string{path}, false, nil, nil)
	require.NoError(p.t, err)
	for _, family := range model.Families() {
		require.NoError(p.t, p.db.Tx(p.ctx, "stage", func(q pg.Querier) error {
			_, err := model.SubrequestClaim(p.ctx, q, string(family), 10)
			return err
		}))
	}
	subs, err := model.SubrequestList(p.ctx, p.db.Pool(), id)
	require.NoError(p.t, err)
	require.Len(p.t, subs, 1)
	return subs[0]
}

// namespace is the namespace's state (directories, files, copies), to show a refusal
// changed nothing.
func (p *perm) namespace() string {
	p.t.Helper()
	var s string
	require.NoError(p.t, p.db.Pool().QueryRow(p.ctx, `SELECT
		coalesce((SELECT json_agg(d ORDER BY d.id) FROM directory d)::text, '') || '|' ||
		coalesce((SELECT json_agg(f ORDER BY f.id) FROM file f)::text, '') || '|' ||
		coalesce((SELECT json_agg(c ORDER BY c.id) FROM disk_copy c)::text, '')`).Scan(&s))
	return s
}

// adminEvents counts the journal's administrator overrides by user.
func (p *perm) adminEvents(user string) int {
	p.t.Helper()
	var n int
	require.NoError(p.t, p.db.Pool().QueryRow(p.ctx,
		`SELECT count(*) FROM system_event WHERE kind = 'namespace_admin' AND detail->>'user' = $1`, user).Scan(&n))
	return n
}

func TestPermissionDecisions(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name              string
		typ               model.RequestType
		path              string
		dirMode, fileMode int32
		user              string
		allowed           bool
	}{
		// Reading: r on the file (0640: owner rw, group r, other nothing).
		{"get owner", model.RequestTypeGet, permFile, 0o755, 0o640, "alice", true},
		{"get group", model.RequestTypeGet, permFile, 0o755, 0o640, "bob", true},
		{"get other", model.RequestTypeGet, permFile, 0o755, 0o640, "carol", false},
		{"get admin", model.RequestTypeGet, permFile, 0o755, 0o640, "ops", true},
		{"get owner without r", model.RequestTypeGet, permFile, 0o755, 0o240, "alice", false},
		{"get other 0644", model.RequestTypeGet, permFile, 0o755, 0o644, "carol", true},
		{"prepareToGet group", model.RequestTypePrepareToGet, permFile, 0o755, 0o640, "bob", true},
		{"prepareToGet other", model.RequestTypePrepareToGet, permFile, 0o755, 0o640, "carol", false},
		{"prepareToGet admin", model.RequestTypePrepareToGet, permFile, 0o755, 0o600, "ops", true},
		// Search: x on every directory above.
		{"get group, home not searchable", model.RequestTypeGet, permFile, 0o700, 0o644, "bob", false},
		{"get admin, home not searchable", model.RequestTypeGet, permFile, 0o700, 0o644, "ops", true},
		// Writing an existing file: w on the file.
		{"put over owner", model.RequestTypePut, permFile, 0o755, 0o640, "alice", true},
		{"put over group", model.RequestTypePut, permFile, 0o755, 0o640, "bob", false},
		{"put over group 0660", model.RequestTypePut, permFile, 0o755, 0o660, "bob", true},
		{"put over other", model.RequestTypePut, permFile, 0o777, 0o664, "carol", false},
		{"put over admin", model.RequestTypePut, permFile, 0o755, 0o444, "ops", true},
		{"putdone owner", model.RequestTypePutdone, permFile, 0o755, 0o640, "alice", true},
		{"putdone group", model.RequestTypePutdone, permFile, 0o755, 0o640, "bob", false},
		{"putdone group 0660", model.RequestTypePutdone, permFile, 0o755, 0o660, "bob", true},
		{"putdone other", model.RequestTypePutdone, permFile, 0o755, 0o666 &^ 0o002, "carol", false},
		{"putdone admin", model.RequestTypePutdone, permFile, 0o755, 0o400, "ops", true},
		// Creating a file: wx on its directory.
		{"put new owner", model.RequestTypePut, permHome + "/g", 0o750, noFileMode, "alice", true},
		{"put new group", model.RequestTypePut, permHome + "/g", 0o750, noFileMode, "bob", false},
		{"put new group 0770", model.RequestTypePut, permHome + "/g", 0o770, noFileMode, "bob", true},
		{"put new other", model.RequestTypePut, permHome + "/g", 0o755, noFileMode, "carol", false},
		{"put new other 0777", model.RequestTypePut, permHome + "/g", 0o777, noFileMode, "carol", true},
		{"put new admin", model.RequestTypePut, permHome + "/g", 0o700, noFileMode, "ops", true},
		{"put new in a new subdirectory other", model.RequestTypePut, permHome + "/d/e/g", 0o755, noFileMode, "carol", false},
		{"put new in a new subdirectory owner", model.RequestTypePut, permHome + "/d/e/g", 0o755, noFileMode, "alice", true},
		// Removing: wx on the directory; when it is sticky, owning the file or the directory.
		{"rm owner", model.RequestTypeRm, permFile, 0o755, 0o644, "alice", true},
		{"rm group", model.RequestTypeRm, permFile, 0o755, 0o666, "bob", false},
		{"rm group 0770", model.RequestTypeRm, permFile, 0o770, 0o600, "bob", true},
		{"rm group sticky", model.RequestTypeRm, permFile, 0o1770, 0o666, "bob", false},
		{"rm owner sticky", model.RequestTypeRm, permFile, 0o1770, 0o600, "alice", true},
		{"rm other", model.RequestTypeRm, permFile, 0o755, 0o666, "carol", false},
		{"rm admin", model.RequestTypeRm, permFile, 0o1700, 0o400, "ops", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newPerm(t, tc.dirMode, tc.fileMode)
			before := p.namespace()
			s := p.decide(tc.typ, tc.user, tc.path)
			if !tc.allowed {
				require.Equal(t, model.SubrequestStatusFailed, s.Status)
				require.NotNil(t, s.ErrorCode)
				require.Equal(t, model.SQLStatePermissionDenied, *s.ErrorCode, "%v", s.ErrorMessage)
				require.Contains(t, *s.ErrorMessage, "permission denied: ")
				require.Contains(t, *s.ErrorMessage, "you are "+tc.user)
				require.Equal(t, before, p.namespace(), "a refusal changes nothing")
				return
			}
			if s.ErrorCode != nil {
				require.NotEqual(t, model.SQLStatePermissionDenied, *s.ErrorCode, "refused: %v", *s.ErrorMessage)
			}
			// What an allowed decision does without a disk server or a written copy.
			switch tc.typ {
			case model.RequestTypePut:
				require.Equal(t, model.SubrequestStatusWaitsched, s.Status, "%v", s.ErrorMessage)
			case model.RequestTypeRm:
				require.Equal(t, model.SubrequestStatusFinished, s.Status)
			default:
				require.Equal(t, model.SubrequestStatusFailed, s.Status)
			}
			if tc.user == "ops" {
				require.Equal(t, 1, p.adminEvents("ops"), "the override is journaled once")
			}
		})
	}
}

func TestPermissionRefusalNamesPathOwnerModeAndUser(t *testing.T) {
	t.Parallel()
	p := newPerm(t, 0o755, 0o640)
	s := p.decide(model.RequestTypeGet, "carol", permFile)
	require.Equal(t, "permission denied: /pollux/u/alice/f is owned by alice (group physics), mode 0640; you are carol", *s.ErrorMessage)
	s = p.decide(model.RequestTypePut, "carol", permHome+"/g")
	require.Equal(t, "permission denied: cannot create /pollux/u/alice/g: /pollux/u/alice is owned by alice (group physics), mode 0755; you are carol", *s.ErrorMessage)
	_, err := model.NamespaceEntrySet(p.ctx, p.db.Pool(), permHome, nil, nil, ptr(int32(0o1777)), "test")
	require.NoError(t, err)
	s = p.decide(model.RequestTypeRm, "carol", permFile)
	require.Equal(t, "permission denied: cannot remove /pollux/u/alice/f: it is owned by alice and its directory /pollux/u/alice is sticky (owned by alice, mode 1777); you are carol", *s.ErrorMessage)
}

func TestPermissionNewEntriesInherit(t *testing.T) {
	t.Parallel()
	p := newPerm(t, 0o2775, noFileMode)
	s := p.decide(model.RequestTypePut, "bob", permHome+"/d/e/g")
	require.Equal(t, model.SubrequestStatusWaitsched, s.Status, "%v", s.ErrorMessage)
	for path, want := range map[string]model.NamespaceListRow{
		permHome + "/d":     {Kind: "dir", Owner: "bob", GroupName: "physics", Mode: "0755"},
		permHome + "/d/e":   {Kind: "dir", Owner: "bob", GroupName: "physics", Mode: "0755"},
		permHome + "/d/e/g": {Kind: "file", Owner: "bob", GroupName: "physics", Mode: "0644"},
	} {
		rows, err := model.NamespaceList(p.ctx, p.db.Pool(), path)
		require.NoError(t, err)
		require.NotEmpty(t, rows)
		got := rows[0]
		require.Equal(t, path, got.Path)
		require.Equal(t, []string{want.Kind, want.Owner, want.GroupName, want.Mode}, []string{got.Kind, got.Owner, got.GroupName, got.Mode}, path)
	}
	// The umask is policy: a stricter one gives stricter new entries.
	_, err := model.PolicySet(p.ctx, p.db.Pool(), "namespace_umask", 0o077, "test")
	require.NoError(t, err)
	s = p.decide(model.RequestTypePut, "alice", permHome+"/x/h")
	require.Equal(t, model.SubrequestStatusWaitsched, s.Status, "%v", s.ErrorMessage)
	rows, err := model.NamespaceList(p.ctx, p.db.Pool(), permHome)
	require.NoError(t, err)
	modes := map[string]string{}
	for _, r := range rows {
		modes[r.Path] = r.Mode
	}
	require.Equal(t, "0700", modes[permHome+"/x"])
	rows, err = model.NamespaceList(p.ctx, p.db.Pool(), permHome+"/x/h")
	require.NoError(t, err)
	require.Equal(t, "0600", rows[0].Mode)
}

func TestPermissionFileQuery(t *testing.T) {
	t.Parallel()
	p := newPerm(t, 0o755, 0o640)
	for user, allowed := range map[string]bool{"alice": true, "bob": true, "carol": false, "ops": true} {
		rows, err := model.FileQuery(p.ctx, p.db.Pool(), permFile, user)
		if allowed {
			require.NoError(t, err, user)
			require.Len(t, rows, 1)
			require.Equal(t, "alice", rows[0].Owner)
			continue
		}
		var pgErr *pgconn.PgError
		require.True(t, errors.As(err, &pgErr), "%s: %v", user, err)
		require.Equal(t, model.SQLStatePermissionDenied, pgErr.Code)
		require.Equal(t, "permission denied: /pollux/u/alice/f is owned by alice (group physics), mode 0640; you are carol", pgErr.Message)
	}
	require.Equal(t, 1, p.adminEvents("ops"))
	// A refusal of a user who is no administrator, and an administrator's read that the
	// bits allow anyway, journal nothing: only a use of the role does.
	_, err := model.NamespaceEntrySet(p.ctx, p.db.Pool(), permFile, nil, nil, ptr(int32(0o644)), "test")
	require.NoError(t, err)
	_, err = model.FileQuery(p.ctx, p.db.Pool(), permFile, "ops")
	require.NoError(t, err)
	require.Equal(t, 1, p.adminEvents("ops"))
	require.Zero(t, p.adminEvents("carol"))
	// Not searchable: a missing file is refused, not reported missing.
	_, err = model.NamespaceEntrySet(p.ctx, p.db.Pool(), permHome, nil, nil, ptr(int32(0o700)), "test")
	require.NoError(t, err)
	_, err = model.FileQuery(p.ctx, p.db.Pool(), permHome+"/missing", "carol")
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "%v", err)
	require.Equal(t, model.SQLStatePermissionDenied, pgErr.Code)
	require.Contains(t, pgErr.Message, "cannot reach /pollux/u/alice/missing")
}

func TestPermissionAdminTables(t *testing.T) {
	t.Parallel()
	p := newPerm(t, 0o755, noFileMode)
	pool := p.db.Pool()
	// A second mkhome of the same home is harmless; a home owned by another is a conflict.
	home, err := model.NamespaceMkhome(p.ctx, pool, "alice", "", "test")
	require.NoError(t, err)
	require.Equal(t, permHome, home)
	_, err = model.NamespaceEntrySet(p.ctx, pool, permHome, ptr("bob"), nil, nil, "test")
	require.NoError(t, err)
	_, err = model.NamespaceMkhome(p.ctx, pool, "alice", "", "test")
	requireCode(t, err, model.SQLStateConflict)
	// Bad input is refused with its reason and changes nothing.
	before := p.namespace()
	_, err = model.NamespaceMkhome(p.ctx, pool, "../etc", "", "test")
	requireCode(t, err, model.SQLStateInvalidArgument)
	_, err = model.NamespaceEntrySet(p.ctx, pool, permHome, nil, nil, ptr(int32(0o10000)), "test")
	requireCode(t, err, model.SQLStateInvalidArgument)
	_, err = model.NamespaceEntrySet(p.ctx, pool, "/pollux/nothing", ptr("bob"), nil, nil, "test")
	requireCode(t, err, model.SQLStateNotFound)
	_, err = model.NamespaceModeParse(p.ctx, pool, "0855")
	requireCode(t, err, model.SQLStateInvalidArgument)
	require.Equal(t, before, p.namespace())
	mode, err := model.NamespaceModeParse(p.ctx, pool, "1777")
	require.NoError(t, err)
	require.Equal(t, int32(0o1777), mode)
	// Membership and the role are journaled only when they change.
	changed, err := model.UserGroupSet(p.ctx, pool, "bob", "physics", true, "test")
	require.NoError(t, err)
	require.False(t, changed, "bob is in physics already")
	changed, err = model.AdminUserSet(p.ctx, pool, "ops", false, "test")
	require.NoError(t, err)
	require.True(t, changed)
	admins, err := model.AdminUserList(p.ctx, pool)
	require.NoError(t, err)
	require.Empty(t, admins)
	var n int
	require.NoError(t, pool.QueryRow(p.ctx, `SELECT count(*) FROM system_event WHERE kind IN ('admin_user_set', 'user_group_set', 'namespace_set', 'namespace_mkhome')`).Scan(&n))
	// mkhome, chmod and chown of the home, bob joining physics, ops made and unmade admin.
	require.Equal(t, 6, n)
}

const noFileMode = -1

func ptr[T any](v T) *T { return &v }

func requireCode(t *testing.T, err error, code string) {
	t.Helper()
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "want SQLSTATE %s, got %v", code, err)
	require.Equal(t, code, pgErr.Code, pgErr.Message)
}

// Two users' puts make the same new directory at once: the first to commit owns it, and
// the other is then authorised against it (0755, alice's) and refused, changing nothing,
// rather than writing into it on the strength of the root's 01777.
func TestPermissionRaceForANewDirectory(t *testing.T) {
	t.Parallel()
	p := newPerm(t, 0o755, noFileMode)
	pool := p.db.Pool()
	submit := func(user, path string) string {
		id := uuid.New()
		_, err := model.RequestSubmit(p.ctx, pool, id, model.RequestTypePut, "default", user, "", "test", []string{path}, false, nil, nil)
		require.NoError(t, err)
		return id
	}
	alice := submit("alice", "/pollux/new/a")
	first, err := pool.Begin(p.ctx)
	require.NoError(t, err)
	defer func() { _ = first.Rollback(p.ctx) }()
	// alice's decision makes /pollux/new and holds it uncommitted.
	_, err = model.SubrequestClaim(p.ctx, first, string(model.FamilyPut), 10)
	require.NoError(t, err)

	bob := submit("bob", "/pollux/new/b")
	second := make(chan error, 1)
	go func() {
		// bob's claim passes alice's locked subrequest over and waits on the directory.
		_, err := model.SubrequestClaim(p.ctx, pool, string(model.FamilyPut), 10)
		second <- err
	}()
	require.Eventually(t, func() bool {
		var waiting int
		err := pool.QueryRow(p.ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%subrequest_claim%'`).Scan(&waiting)
		return err == nil && waiting == 1
	}, 10*time.Second, 10*time.Millisecond, "bob's decision never waited on alice's directory")
	require.NoError(t, first.Commit(p.ctx))
	require.NoError(t, <-second)

	subs, err := model.SubrequestList(p.ctx, pool, alice)
	require.NoError(t, err)
	require.Equal(t, model.SubrequestStatusWaitsched, subs[0].Status, "%v", subs[0].ErrorMessage)
	subs, err = model.SubrequestList(p.ctx, pool, bob)
	require.NoError(t, err)
	require.Equal(t, model.SubrequestStatusFailed, subs[0].Status)
	require.Equal(t, "permission denied: cannot create /pollux/new/b: /pollux/new is owned by alice, mode 0755; you are bob", *subs[0].ErrorMessage)
	rows, err := model.NamespaceList(p.ctx, pool, "/pollux/new")
	require.NoError(t, err)
	require.Len(t, rows, 2, "the directory and alice's file, nothing of bob's")
	require.Equal(t, "alice", rows[0].Owner)
	require.Equal(t, "/pollux/new/a", rows[1].Path)
}

// A put whose token may create but not modify a path (rhd passes its create-only paths)
// is refused by the put decision when the file exists by then, however late it appeared
// (after rhd looked), with a permission error naming the scope, changing nothing; a
// create-only put of a new file is decided as any put, and the file it created is its own,
// so taking the write back and deciding it again does not refuse it.
func TestCreateOnlyPutNeverOverwrites(t *testing.T) {
	t.Parallel()
	p := newPerm(t, 0o755, 0o644)
	decide := func(path string) model.Subrequest {
		t.Helper()
		id := uuid.New()
		_, err := model.RequestSubmit(p.ctx, p.db.Pool(), id, model.RequestTypePut, "default", "alice", "", "test", []string{path}, false, nil, []string{path})
		require.NoError(t, err)
		require.NoError(t, p.db.Tx(p.ctx, "stage", func(q pg.Querier) error {
			_, err := model.SubrequestClaim(p.ctx, q, "put", 10)
			return err
		}))
		subs, err := model.SubrequestList(p.ctx, p.db.Pool(), id)
		require.NoError(t, err)
		require.Len(t, subs, 1)
		return subs[0]
	}
	before := p.namespace()
	over := decide(permFile)
	require.Equal(t, model.SubrequestStatusFailed, over.Status)
	require.Equal(t, model.SQLStatePermissionDenied, *over.ErrorCode)
	require.Equal(t, "permission denied: "+permFile+" exists, and the token this put came with may only create files there (storage.create): overwriting it needs storage.modify", *over.ErrorMessage)
	require.Equal(t, before, p.namespace(), "the refusal changed nothing")

	fresh := decide(permHome + "/new")
	require.NotEqual(t, model.SubrequestStatusFailed, fresh.Status, "%+v", fresh)
	var createOnly bool
	require.NoError(t, p.db.Pool().QueryRow(p.ctx, "select create_only from subrequest where id = $1", fresh.ID).Scan(&createOnly))
	require.False(t, createOnly, "the file it created is its own")
}
