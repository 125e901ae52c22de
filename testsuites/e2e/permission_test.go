package e2e_test

import (
	"fmt"
	"hash/adler32"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/testsuites/e2e"
)

// bobToken is the harness's second user (testsuites/e2e/instance.go writes it beside alice's).
const bobToken = "bob-token-0123456789"

// Namespace permissions as users meet them, through the real clients, rhd, stagerd and
// disk servers: alice's home is hers, bob is refused with exit code 1 and a message naming
// path, owner, mode and user, a refusal changes nothing, and an administrator may do
// anything, which the journal records.
func TestNamespacePermissionsAliceAndBob(t *testing.T) {
	t.Parallel()
	in, ctx := start(t, e2e.Options{})
	dir := t.TempDir()
	bob := []string{"POLLUX_TOKEN=" + bobToken}
	admin := func(args ...string) e2e.Result {
		t.Helper()
		return ok(t, in.Run(ctx, []string{"POLLUX_DATABASE_URL=" + in.DSN()}, "pollux-admin", args...))
	}
	refused := func(r e2e.Result, want string) {
		t.Helper()
		require.Equal(t, 1, r.Code, "stdout: %s\nstderr: %s", r.Stdout, r.Stderr)
		require.Contains(t, r.Stdout+r.Stderr, want)
	}

	admin("ns", "mkhome", "alice")
	admin("ns", "mkhome", "bob")
	src, data := randomFile(t, dir, "f", 100<<10)
	ok(t, in.Run(ctx, nil, "pollux", "cp", src, "/pollux/u/alice/f"))
	staged := fmt.Sprintf("/pollux/u/alice/f STAGED %d %08x", len(data), adler32.Checksum(data))

	// 0644: bob may read alice's file, not overwrite it, close it, remove it or write beside it.
	require.Equal(t, staged, strings.TrimSpace(ok(t, in.Run(ctx, bob, "stager_qry", "-M", "/pollux/u/alice/f")).Stdout))
	refused(in.Run(ctx, bob, "pollux", "cp", src, "/pollux/u/alice/f"),
		"permission denied: /pollux/u/alice/f is owned by alice, mode 0644; you are bob")
	refused(in.Run(ctx, bob, "stager_putdone", "-M", "/pollux/u/alice/f"),
		"permission denied: /pollux/u/alice/f is owned by alice, mode 0644; you are bob")
	refused(in.Run(ctx, bob, "stager_rm", "-M", "/pollux/u/alice/f"),
		"permission denied: cannot remove /pollux/u/alice/f: /pollux/u/alice is owned by alice, mode 0755; you are bob")
	refused(in.Run(ctx, bob, "stager_put", "-M", "/pollux/u/alice/g", "--file", src),
		"permission denied: cannot create /pollux/u/alice/g: /pollux/u/alice is owned by alice, mode 0755; you are bob")

	// 0600: not even reading, nor the metadata (rhd's /v1/files answers 403).
	admin("ns", "chmod", "/pollux/u/alice/f", "0600")
	denied := "permission denied: /pollux/u/alice/f is owned by alice, mode 0600; you are bob"
	refused(in.Run(ctx, bob, "stager_qry", "-M", "/pollux/u/alice/f"), denied)
	refused(in.Run(ctx, bob, "pollux", "cp", "/pollux/u/alice/f", filepath.Join(dir, "stolen")), denied)
	refused(in.Run(ctx, bob, "stager_prepareToGet", "-M", "/pollux/u/alice/f"), denied)
	// Nothing bob tried changed alice's file.
	require.Equal(t, staged, strings.TrimSpace(ok(t, in.Run(ctx, nil, "stager_qry", "-M", "/pollux/u/alice/f")).Stdout))
	ls := admin("ns", "ls", "/pollux/u/alice").Stdout
	require.Regexp(t, `file\s+0600\s+alice\s+-\s+102400\s.*/pollux/u/alice/f\n`, ls)
	require.NotContains(t, ls, "/pollux/u/alice/g")

	// bob's own home is his; alice may read what he leaves readable.
	ok(t, in.Run(ctx, bob, "pollux", "cp", src, "/pollux/u/bob/x"))
	ok(t, in.Run(ctx, nil, "pollux", "cp", "/pollux/u/bob/x", filepath.Join(dir, "x.back")))
	refused(in.Run(ctx, nil, "stager_rm", "-M", "/pollux/u/bob/x"), "you are alice")

	// The root is like /tmp: anyone creates there, only the owner removes; a directory a
	// put made is its writer's.
	ok(t, in.Run(ctx, nil, "pollux", "cp", src, "/pollux/perm-a"))
	refused(in.Run(ctx, bob, "stager_rm", "-M", "/pollux/perm-a"),
		"permission denied: cannot remove /pollux/perm-a: it is owned by alice and its directory /pollux is sticky (owned by root, mode 1777); you are bob")
	ok(t, in.Run(ctx, nil, "pollux", "cp", src, "/pollux/shared/a"))
	refused(in.Run(ctx, bob, "stager_put", "-M", "/pollux/shared/b", "--file", src),
		"permission denied: cannot create /pollux/shared/b: /pollux/shared is owned by alice, mode 0755; you are bob")

	// An administrator may do anything, and every use of the role is journaled.
	admin("ns", "admin", "add", "bob")
	require.Equal(t, staged, strings.TrimSpace(ok(t, in.Run(ctx, bob, "stager_qry", "-M", "/pollux/u/alice/f")).Stdout))
	ok(t, in.Run(ctx, bob, "stager_rm", "-M", "/pollux/u/alice/f"))
	events := admin("events", "--limit", "20").Stdout
	require.Contains(t, events, "administrator bob may read /pollux/u/alice/f as an administrator")
	require.Contains(t, events, "administrator bob may remove /pollux/u/alice/f as an administrator")
}
