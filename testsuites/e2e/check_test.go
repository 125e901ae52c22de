package e2e_test

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/testsuites/e2e"
)

type finding struct {
	Area, Item, State, Detail string
}

func findings(t *testing.T, r e2e.Result) map[[2]string]finding {
	t.Helper()
	var list []finding
	require.NoError(t, json.Unmarshal([]byte(r.Stdout), &list), "stdout: %s\nstderr: %s", r.Stdout, r.Stderr)
	m := map[[2]string]finding{}
	for _, f := range list {
		m[[2]string{f.Area, f.Item}] = f
	}
	return m
}

// TestCheckSeesHostsAndFileSystems: on a working instance, pollux-admin check finds every
// daemon on the database's schema and logic and ready, the hosts' clocks with the
// database's, both disk servers' file systems present and writable with the space they
// report; a data directory that vanishes under its disk server is a failure naming it.
func TestCheckSeesHostsAndFileSystems(t *testing.T) {
	t.Parallel()
	in, ctx := start(t, e2e.Options{})
	run := func() e2e.Result {
		return in.Run(ctx, nil, "pollux-admin", "check", "--json", "--database-url", in.DSN())
	}

	r := run()
	require.Equal(t, 0, r.Code, "stdout: %s\nstderr: %s", r.Stdout, r.Stderr)
	found := findings(t, r)
	for _, k := range [][2]string{{"daemons", "schema"}, {"daemons", "logic"}, {"daemons", "readiness"}, {"clock", "skew"}, {"file systems", "present"}, {"settings", "flags"}} {
		require.Equal(t, "ok", found[k].State, "%v: %+v\n%s", k, found[k], r.Stdout)
	}
	require.Contains(t, found[[2]string{"daemons", "readiness"}].Detail, "6 instance(s) ready")
	require.Contains(t, found[[2]string{"file systems", "present"}].Detail, "2 file system(s)")

	fs := scrapeSeries(t, in.Procs()["disk1"].Admin())["pollux_diskserver_file_system_present"]
	require.Len(t, fs, 1)
	dir := fs[0].labels["mount_point"]
	require.NoError(t, os.Rename(dir, dir+".away"))
	t.Cleanup(func() { _ = os.Rename(dir+".away", dir) })
	r = run()
	require.Equal(t, 1, r.Code, "stdout: %s\nstderr: %s", r.Stdout, r.Stderr)
	gone := findings(t, r)[[2]string{"file systems", "disk1:" + dir}]
	require.Equal(t, "fail", gone.State, r.Stdout)
	require.Contains(t, gone.Detail, "its data directory is missing on the disk server")
	require.NoError(t, os.Rename(dir+".away", dir))
}
