package e2e_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/testsuites/e2e"
)

// Quotas and the lease of an unclosed write as users meet them, through the real clients,
// rhd, stagerd, jobmanagerd and a disk server: an upload past the quota is refused with
// exit code 1 and the quota's numbers; stager_qry --quota shows usage and limits; a
// rewrite left unclosed does not hold up a reader of the previous content, and once its
// lease (policy put_lease_seconds) ends the job manager gives it up: stager_qry says why,
// its bytes leave the quota, and there is nothing left to close.
func TestQuotaAndUnclosedWriteLease(t *testing.T) {
	t.Parallel()
	in, ctx := start(t, e2e.Options{ExtraArgs: map[string][]string{"jobmanagerd": {"--expire-interval", "200ms"}}})
	dir := t.TempDir()
	admin := func(args ...string) e2e.Result {
		t.Helper()
		return ok(t, in.Run(ctx, []string{"POLLUX_DATABASE_URL=" + in.DSN()}, "pollux-admin", args...))
	}
	admin("quota", "set", "alice", "--bytes", "300kB", "--files", "10")

	old, oldData := randomFile(t, dir, "old", 200_000)
	ok(t, in.Run(ctx, nil, "pollux", "cp", old, "/pollux/q/f"))
	refused := in.Run(ctx, nil, "pollux", "cp", old, "/pollux/q/g")
	require.Equal(t, 1, refused.Code, "stdout: %s\nstderr: %s", refused.Stdout, refused.Stderr)
	require.Contains(t, refused.Stderr, "quota exceeded: user alice in service class default has 200 kB of 300 kB, this write of 200 kB needs 100 kB more")
	require.Equal(t, "quota alice default: bytes 200 kB of 300 kB (67%), files 1 of 10 (10%)\n",
		ok(t, in.Run(ctx, nil, "stager_qry", "--quota")).Stdout, "the refused write holds nothing")

	// A rewrite uploaded and left unclosed: readers still get the previous content.
	newer, _ := randomFile(t, dir, "new", 50_000)
	ok(t, in.Run(ctx, nil, "stager_put", "-M", "/pollux/q/f", "--file", newer))
	require.Equal(t, "quota alice default: bytes 250 kB of 300 kB (83%), files 1 of 10 (10%)\n",
		ok(t, in.Run(ctx, nil, "stager_qry", "--quota")).Stdout, "old content and unclosed rewrite both on disk")
	back := filepath.Join(dir, "back")
	ok(t, in.Run(ctx, nil, "pollux", "cp", "/pollux/q/f", back))
	got, err := os.ReadFile(back)
	require.NoError(t, err)
	require.True(t, bytes.Equal(oldData, got), "the reader got the previous content at once")

	// Its lease ends: the job manager gives the write up.
	admin("policy", "set", "put_lease_seconds", "1")
	var qry e2e.Result
	require.Eventually(t, func() bool {
		qry = in.Run(ctx, nil, "stager_qry", "-M", "/pollux/q/f")
		return strings.Contains(qry.Stdout, "expired:")
	}, time.Minute, 50*time.Millisecond, "stager_qry never said the write expired: %s%s", qry.Stdout, qry.Stderr)
	require.Regexp(t, `^/pollux/q/f STAGED 200000 [0-9a-f]{8} \(expired: the write of /pollux/q/f was not closed within policy put_lease_seconds \(1 s\) of its put at .* and was given up; write it again; the file keeps its previous content\)\n$`,
		qry.Stdout)
	require.Equal(t, "quota alice default: bytes 200 kB of 300 kB (67%), files 1 of 10 (10%)\n",
		ok(t, in.Run(ctx, nil, "stager_qry", "--quota")).Stdout, "the expired write's bytes are released")
	done := in.Run(ctx, nil, "stager_putdone", "-M", "/pollux/q/f")
	require.Equal(t, 1, done.Code, "stdout: %s\nstderr: %s", done.Stdout, done.Stderr)
	require.Contains(t, done.Stdout, "is not being written: there is nothing to close")
	require.Contains(t, admin("events").Stdout, "write_expired")
}
