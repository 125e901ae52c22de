package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/migrate"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/pgtest"
	"github.com/pollux-storage/pollux/framework/uuid"
	"github.com/pollux-storage/pollux/model"
	"github.com/pollux-storage/pollux/schema"
)

var empty = pgtest.Template{Key: "empty", Setup: func(context.Context, string) error { return nil }}

type bundle struct {
	dsn string
	ctx context.Context
}

func setup(t *testing.T) *bundle {
	t.Helper()
	return &bundle{dsn: pgtest.NewDatabase(t, empty), ctx: context.Background()}
}

// admin runs pollux-admin in-process with the database in the environment.
func (b *bundle) admin(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(b.ctx, args, []string{"POLLUX_DATABASE_URL=" + b.dsn}, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestMigrateLogicDaemonsEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)

	code, _, stderr := b.admin(t, "migrate", "status")
	require.Equal(t, 1, code, "an empty database is not at head")
	require.Contains(t, stderr, "run `pollux-admin migrate`")

	code, out, stderr := b.admin(t, "migrate")
	require.Equal(t, 0, code, stderr)
	head, err := migrate.Head(schema.Migrations())
	require.NoError(t, err)
	require.Contains(t, out, "database: "+head.String())
	require.Contains(t, out, "logic: installed version 1")

	code, out, _ = b.admin(t, "migrate")
	require.Equal(t, 0, code)
	require.Contains(t, out, "logic: version 1 installed already")

	code, out, stderr = b.admin(t, "logic", "status")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "the database matches the files")

	// A hot patch from a directory: one function's body changes.
	dir := t.TempDir()
	files, err := os.ReadDir("../../schema/logic")
	require.NoError(t, err)
	for _, f := range files {
		body, err := os.ReadFile(filepath.Join("../../schema/logic", f.Name()))
		require.NoError(t, err)
		if f.Name() == "system_event.sql" {
			body = []byte(strings.Replace(string(body), "LIMIT greatest(p_limit, 0)", "LIMIT greatest(p_limit, 0) -- patched", 1))
		}
		require.NoError(t, os.WriteFile(filepath.Join(dir, f.Name()), body, 0o644))
	}
	code, out, stderr = b.admin(t, "logic", "apply", "--dir", dir, "--note", "test patch")
	require.Equal(t, 0, code, stderr)
	// The grants run again after it: its CREATE OR REPLACE reset SECURITY DEFINER.
	require.Contains(t, out, "installed version 2 (files run: system_event.sql, grants_gen.sql)")

	code, out, _ = b.admin(t, "logic", "status")
	require.Equal(t, 1, code, "the database no longer matches the embedded files")
	require.Contains(t, out, "changed: system_event.sql")

	code, out, stderr = b.admin(t, "logic", "rollback")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "installed version 3")
	code, _, _ = b.admin(t, "logic", "status")
	require.Equal(t, 0, code, "after the rollback the database matches the embedded files again")

	code, out, _ = b.admin(t, "logic", "history")
	require.Equal(t, 0, code)
	require.Contains(t, out, "rollback of version 2 to the content of version 1")
	require.Contains(t, out, "test patch")

	code, out, _ = b.admin(t, "events")
	require.Equal(t, 0, code)
	require.Contains(t, out, "logic_apply")
	require.Contains(t, out, "logic_rollback")

	// A registered daemon instance appears with its heartbeat age.
	db, err := pg.Open(b.ctx, pg.Config{DSN: b.dsn})
	require.NoError(t, err)
	defer db.Close()
	const id = "00000000-0000-4000-8000-000000000001"
	require.NoError(t, model.DaemonInstanceRegister(b.ctx, db.Pool(), id, "stagerd", "h1", 42, "v0", []byte(`{"put": 4}`), "http://127.0.0.1:1"))
	code, out, _ = b.admin(t, "daemons")
	require.Equal(t, 0, code)
	require.Regexp(t, `stagerd\s+h1\s+42\s+00000000\s+up\s+`, out)
	require.NoError(t, model.DaemonInstanceStop(b.ctx, db.Pool(), id))
	code, out, _ = b.admin(t, "daemons", "--json")
	require.Equal(t, 0, code)
	require.Contains(t, out, `"stopped_at": "`)

	code, _, stderr = b.admin(t, "migrate", "down")
	require.Equal(t, 0, code, stderr)
	code, _, _ = b.admin(t, "migrate", "status")
	require.Equal(t, 1, code)
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	require.Equal(t, 2, run(context.Background(), []string{"frobnicate"}, nil, &out, &errOut))
	require.Contains(t, errOut.String(), `unknown command "frobnicate"`)

	errOut.Reset()
	require.Equal(t, 2, run(context.Background(), []string{"daemons"}, nil, &out, &errOut))
	require.Contains(t, errOut.String(), "--database-url (or POLLUX_DATABASE_URL) is required")

	errOut.Reset()
	require.Equal(t, 2, run(context.Background(), []string{"logic", "explode"}, []string{"POLLUX_DATABASE_URL=postgres:///x?host=/nonexistent"}, &out, &errOut))
	require.Contains(t, errOut.String(), `unknown logic action "explode"`)

	out.Reset()
	require.Equal(t, 0, run(context.Background(), []string{"--help"}, nil, &out, &errOut))
	for name := range commands {
		require.Contains(t, out.String(), "pollux-admin "+name)
	}
}

func TestPolicyListAndSet(t *testing.T) {
	t.Parallel()
	b := setup(t)
	code, _, stderr := b.admin(t, "migrate")
	require.Equal(t, 0, code, stderr)

	code, out, stderr := b.admin(t, "policy")
	require.Equal(t, 0, code, stderr)
	require.Regexp(t, `transfer_open_seconds\s+300\s+How long a READY transfer waits`, out)

	code, out, stderr = b.admin(t, "policy", "set", "transfer_open_seconds", "600")
	require.Equal(t, 0, code, stderr)
	require.Equal(t, "transfer_open_seconds: 300 -> 600\n", out)
	code, out, _ = b.admin(t, "policy", "list")
	require.Equal(t, 0, code)
	require.Regexp(t, `transfer_open_seconds\s+600\s`, out)

	code, _, stderr = b.admin(t, "policy", "set", "transfer_open_secs", "600")
	require.Equal(t, 1, code, "an unknown setting is the user's mistake")
	require.Contains(t, stderr, `no policy setting "transfer_open_secs": the settings are`)
	code, _, stderr = b.admin(t, "policy", "set", "transfer_open_seconds", "ten")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, `"ten" is not a whole number`)
	code, out, _ = b.admin(t, "policy")
	require.Equal(t, 0, code)
	require.Regexp(t, `transfer_open_seconds\s+600\s`, out, "refused changes change nothing")
	code, out, _ = b.admin(t, "events")
	require.Equal(t, 0, code)
	require.Contains(t, out, "policy transfer_open_seconds: 300 -> 600")
}

// The sanity check on a migrated database with nothing running: it fails, and says what
// is missing, role by role.
func TestCheckNamesWhatIsMissing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	code, _, stderr := b.admin(t, "migrate")
	require.Equal(t, 0, code, stderr)

	code, out, stderr := b.admin(t, "check")
	require.Equal(t, 1, code, out)
	require.Contains(t, stderr, "failure(s)")
	for _, role := range []string{"rhd", "stagerd", "schedulerd", "jobmanagerd", "diskserverd"} {
		require.Regexp(t, `FAIL\s+daemons\s+`+role+`\s+no instance up`, out)
	}
	require.Regexp(t, `OK\s+database\s+role\s+primary`, out)
	require.Regexp(t, `WARN\s+database\s+standby\s+no streaming standby`, out)
	require.Regexp(t, `FAIL\s+disk servers\s+available\s+0 of 0`, out)
	for _, role := range []string{"rhd", "stagerd", "schedulerd", "jobmanagerd", "diskserverd"} {
		require.Regexp(t, `OK\s+database roles\s+pollux_`+role+`\s+may call \d+ function\(s\), all as the owner role, and no table`, out)
	}

	// A lease whose leader died with nobody standing by is a failure of its own.
	db, err := pg.Open(b.ctx, pg.Config{DSN: b.dsn})
	require.NoError(t, err)
	defer db.Close()
	_, err = model.LeaderLeaseAcquire(b.ctx, db.Pool(), "jobmanagerd.expire", "00000000-0000-4000-8000-000000000009", "h9", 1, false)
	require.NoError(t, err)
	_, err = db.Pool().Exec(b.ctx, "update leader_lease set expires_at = clock_timestamp() - interval '5 seconds'")
	require.NoError(t, err)
	// roles shows each role and what it may call, as PostgreSQL has granted it.
	code, out, stderr = b.admin(t, "roles")
	require.Equal(t, 0, code, stderr)
	require.Regexp(t, `owner\s+pollux_owner\s+true\s+false\s+\(owns every logic function`, out)
	require.Regexp(t, `rhd\s+pollux_rhd\s+true\s+true\s+.*request_submit`, out)
	require.NotRegexp(t, `rhd\s+pollux_rhd\s+.*policy_set`, out)

	// A grant made by hand around the generated ones is a failure.
	_, err = db.Pool().Exec(b.ctx, "grant insert on file to pollux_rhd")
	require.NoError(t, err)
	_, out, _ = b.admin(t, "check")
	require.Regexp(t, `FAIL\s+database roles\s+pollux_rhd\s+may use tables directly: file`, out)

	code, out, _ = b.admin(t, "check", "--json")
	require.Equal(t, 1, code)
	var found []finding
	require.NoError(t, json.Unmarshal([]byte(out), &found), out)
	var lease *finding
	for i := range found {
		if found[i].Item == "jobmanagerd.expire" {
			lease = &found[i]
		}
	}
	require.NotNil(t, lease, out)
	require.Equal(t, "fail", lease.State)
	require.Contains(t, lease.Detail, "no live leader: the lease of h9 (epoch 1) expired")
	require.Contains(t, lease.Detail, "its work has stopped")
}

func TestDiskServersShowAvailability(t *testing.T) {
	t.Parallel()
	b := setup(t)
	code, _, stderr := b.admin(t, "migrate")
	require.Equal(t, 0, code, stderr)
	db, err := pg.Open(b.ctx, pg.Config{DSN: b.dsn})
	require.NoError(t, err)
	defer db.Close()
	up, err := model.DiskServerRegister(b.ctx, db.Pool(), "disk1", "http://disk1:9100", 0)
	require.NoError(t, err)
	_, err = model.FileSystemRegister(b.ctx, db.Pool(), up, "/data/disk1", "default", 1<<40, 1<<30)
	require.NoError(t, err)
	silent, err := model.DiskServerRegister(b.ctx, db.Pool(), "disk2", "http://disk2:9100", 0)
	require.NoError(t, err)
	stopped, err := model.DiskServerRegister(b.ctx, db.Pool(), "disk3", "http://disk3:9100", 0)
	require.NoError(t, err)
	_, err = db.Pool().Exec(b.ctx, "update disk_server set heartbeat_at = timestamptz '2026-12-02 05:40:12+00' where id = $1", silent)
	require.NoError(t, err)
	// As a job manager that has swept without a gap for a while: silence is judged at once.
	_, err = db.Pool().Exec(b.ctx, "update sweep_clock set last_sweep_at = now(), available_since = now() - interval '1 hour'")
	require.NoError(t, err)
	_, err = model.DiskServerExpire(b.ctx, db.Pool(), 10)
	require.NoError(t, err)
	_, err = model.DiskServerStop(b.ctx, db.Pool(), stopped)
	require.NoError(t, err)

	code, out, stderr := b.admin(t, "diskservers")
	require.Equal(t, 0, code, stderr)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 4, out)
	require.Regexp(t, `^NAME\s+STATUS\s+AVAILABILITY\s+SINCE\s+HEARTBEAT AGE`, lines[0])
	require.Regexp(t, `^disk1\s+PRODUCTION\s+AVAILABLE\s+-\s+\S+\s+0\s+0\s+1\s+1\.0 GiB\s+http://disk1:9100\s+-$`, lines[1])
	require.Regexp(t, `^disk2\s+PRODUCTION\s+SILENT\s+2026-12-02 05:40:12 UTC\s.*unavailable since 2026-12-02 05:40:12 UTC \(it stopped answering\)$`, lines[2])
	require.Regexp(t, `^disk3\s+PRODUCTION\s+STOPPED\s.*\(its diskserverd was stopped\)$`, lines[3])

	code, out, _ = b.admin(t, "events")
	require.Equal(t, 0, code)
	require.Contains(t, out, "disk server disk2 stopped answering: no heartbeat since 2026-12-02 05:40:12 UTC")
	require.Contains(t, out, "disk server disk3 is stopping: out of placement")

	code, out, _ = b.admin(t, "diskservers", "--json")
	require.Equal(t, 0, code)
	require.Contains(t, out, `"availability": "SILENT"`)

	// Drained, it takes no new write: a put of a class whose only server is disk1 waits;
	// returned, it takes the put at once. Each switch is journaled; asking again for the
	// status it has changes nothing; an unknown name is refused.
	code, out, stderr = b.admin(t, "diskservers", "drain", "disk1")
	require.Equal(t, 0, code, stderr)
	require.Equal(t, "disk server disk1: DRAINING (was PRODUCTION)\n", out)
	code, out, _ = b.admin(t, "diskservers", "drain", "disk1")
	require.Equal(t, 0, code)
	require.Equal(t, "disk server disk1 is DRAINING already\n", out)
	id := uuid.New()
	_, err = model.RequestSubmit(b.ctx, db.Pool(), id, model.RequestTypePut, "default", "alice", "", "", []string{"/pollux/drained"}, false, nil, nil)
	require.NoError(t, err)
	_, err = model.SubrequestClaim(b.ctx, db.Pool(), "put", 10)
	require.NoError(t, err)
	subs, err := model.SubrequestList(b.ctx, db.Pool(), id)
	require.NoError(t, err)
	require.Equal(t, model.SubrequestStatusWaitsched, subs[0].Status, "a drained server takes no new write")
	code, out, stderr = b.admin(t, "diskservers", "return", "disk1")
	require.Equal(t, 0, code, stderr)
	require.Equal(t, "disk server disk1: PRODUCTION (was DRAINING)\n", out)
	placed, err := model.SubrequestClaimWaitsched(b.ctx, db.Pool(), 10)
	require.NoError(t, err)
	require.Len(t, placed, 1, "returned, it takes the waiting write")
	code, out, _ = b.admin(t, "events")
	require.Equal(t, 0, code)
	require.Contains(t, out, "disk server disk1 set DRAINING (was PRODUCTION) by")
	require.Contains(t, out, "disk server disk1 set PRODUCTION (was DRAINING) by")
	code, _, stderr = b.admin(t, "diskservers", "drain", "nosuch")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, `no disk server named "nosuch"`)
	code, _, stderr = b.admin(t, "diskservers", "shrink", "disk1")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "use diskservers [--json], or diskservers drain|return|disable NAME")
}

// The namespace's permissions from the command line: a home, owner, group and mode, group
// membership and administrators, each journaled; bad input is refused and changes nothing.
func TestNamespacePermissions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	code, _, stderr := b.admin(t, "migrate")
	require.Equal(t, 0, code, stderr)

	code, out, stderr := b.admin(t, "ns", "mkhome", "alice", "--group", "physics")
	require.Equal(t, 0, code, stderr)
	require.Regexp(t, `dir\s+0755\s+alice\s+physics\s+-\s+\S+ \S+\s+/pollux/u/alice\n`, out)
	code, _, stderr = b.admin(t, "ns", "mkhome", "alice")
	require.Equal(t, 0, code, "a second mkhome of the user's own home is harmless: %s", stderr)

	code, out, stderr = b.admin(t, "ns", "chmod", "/pollux/u/alice", "0750")
	require.Equal(t, 0, code, stderr)
	require.Regexp(t, `dir\s+0750\s+alice\s+physics\s`, out)
	code, out, stderr = b.admin(t, "ns", "chown", "/pollux/u/alice", "bob:cms")
	require.Equal(t, 0, code, stderr)
	require.Regexp(t, `dir\s+0750\s+bob\s+cms\s`, out)
	code, out, stderr = b.admin(t, "ns", "chown", "/pollux/u/alice", ":physics")
	require.Equal(t, 0, code, stderr)
	require.Regexp(t, `dir\s+0750\s+bob\s+physics\s`, out)

	code, out, stderr = b.admin(t, "ns", "ls", "/pollux/u")
	require.Equal(t, 0, code, stderr)
	require.Regexp(t, `dir\s+0755\s+root\s+-\s.*/pollux/u\n`, out)
	require.Regexp(t, `dir\s+0750\s+bob\s+physics\s.*/pollux/u/alice\n`, out)

	code, _, stderr = b.admin(t, "ns", "chmod", "/pollux/u/alice", "rwx")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, `"rwx" is not octal mode bits`)
	code, _, stderr = b.admin(t, "ns", "chown", "/pollux/nothing", "bob")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "no such file or directory: /pollux/nothing")
	code, _, stderr = b.admin(t, "ns", "mkhome", "al/ice")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, `user name "al/ice" is not valid`)
	code, _, stderr = b.admin(t, "ns", "frobnicate")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "unknown action")
	code, out, _ = b.admin(t, "ns", "ls", "/pollux/u/alice")
	require.Equal(t, 0, code)
	require.Regexp(t, `dir\s+0750\s+bob\s+physics\s`, out, "refused changes change nothing")

	code, out, stderr = b.admin(t, "ns", "group", "add", "carol", "physics")
	require.Equal(t, 0, code, stderr)
	require.Equal(t, "carol in group physics\n", out)
	code, out, _ = b.admin(t, "ns", "group", "add", "carol", "physics")
	require.Equal(t, 0, code)
	require.Equal(t, "carol in group physics (already)\n", out)
	code, out, _ = b.admin(t, "ns", "group", "list")
	require.Equal(t, 0, code)
	require.Regexp(t, `carol\s+physics\s`, out)
	code, out, stderr = b.admin(t, "ns", "admin", "add", "ops")
	require.Equal(t, 0, code, stderr)
	require.Equal(t, "ops is an administrator\n", out)
	code, out, _ = b.admin(t, "ns", "admin", "list", "--json")
	require.Equal(t, 0, code)
	var admins []model.AdminUser
	require.NoError(t, json.Unmarshal([]byte(out), &admins))
	require.Len(t, admins, 1)
	require.Equal(t, "ops", admins[0].UserName)
	require.Contains(t, admins[0].AddedBy, "pollux-admin (")

	code, out, _ = b.admin(t, "events")
	require.Equal(t, 0, code)
	for _, want := range []string{"home /pollux/u/alice created for alice", "/pollux/u/alice: owner bob, group cms, mode 0750",
		"carol joined group physics", "ops is now an administrator"} {
		require.Contains(t, out, want)
	}
}
