package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseSize(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{"0": 0, "1000": 1000, "500GB": 500e9, "1.5TB": 1.5e12, "2TiB": 2 << 40,
		"10 kB": 10_000, "3MiB": 3 << 20, "7B": 7} {
		got, err := parseSize(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "-1", "ten", "1XB", "1e30PB", "NaN"} {
		_, err := parseSize(bad)
		require.Error(t, err, bad)
	}
}

func TestQuotaSetListRemove(t *testing.T) {
	t.Parallel()
	b := setup(t)
	code, _, stderr := b.admin(t, "migrate")
	require.Equal(t, 0, code, stderr)

	code, out, stderr := b.admin(t, "quota", "set", "alice", "--bytes", "10GB", "--files", "1000")
	require.Equal(t, 0, code, stderr)
	require.Regexp(t, `USER\s+SVCCLASS\s+BYTES\s+MAX BYTES\s+USED\s+FILES\s+MAX FILES\s+USED\n`, out)
	require.Regexp(t, `alice\s+default\s+0 B\s+10 GB\s+0%\s+0\s+1000\s+0%\n`, out)
	// A limit not given stays; none lifts one.
	code, out, stderr = b.admin(t, "quota", "set", "alice", "--files", "none")
	require.Equal(t, 0, code, stderr)
	require.Regexp(t, `alice\s+default\s+0 B\s+10 GB\s+0%\s+0\s+unlimited\s+-\n`, out)
	code, _, stderr = b.admin(t, "quota", "set", "bob", "--bytes", "2TiB")
	require.Equal(t, 0, code, stderr)

	code, out, stderr = b.admin(t, "quota", "ls")
	require.Equal(t, 0, code, stderr)
	require.Regexp(t, `alice\s+default\s+0 B\s+10 GB\s`, out)
	require.Regexp(t, `bob\s+default\s+0 B\s+2.2 TB\s`, out)
	code, out, stderr = b.admin(t, "quota", "ls", "bob", "--json")
	require.Equal(t, 0, code, stderr)
	require.JSONEq(t, `[{"user_name":"bob","service_class":"default","bytes":0,"files":0,"max_bytes":2199023255552,"max_files":null}]`, out)

	for _, c := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"quota", "set", "alice"}, 2, "give --bytes, --files or both"},
		{[]string{"quota", "set", "alice", "--bytes", "lots"}, 2, `"lots" is not a size`},
		{[]string{"quota", "set", "alice", "--files", "-3"}, 2, `"-3" is not a number of files`},
		{[]string{"quota", "set", "alice", "--bytes", "1GB", "--service-class", "tape"}, 1, `unknown service class "tape"`},
		{[]string{"quota", "set", "al ice", "--bytes", "1GB"}, 1, `user name "al ice" is not valid`},
		{[]string{"quota", "explode"}, 2, "unknown action"},
		{[]string{"quota", "rm", "carol"}, 1, "user carol has no quota in service class default"},
	} {
		code, _, stderr := b.admin(t, c.args...)
		require.Equal(t, c.code, code, "%v: %s", c.args, stderr)
		require.Contains(t, stderr, c.says, c.args)
	}

	code, out, stderr = b.admin(t, "quota", "rm", "bob")
	require.Equal(t, 0, code, stderr)
	require.Equal(t, "bob has no quota in default now: unlimited\n", out)
	code, out, _ = b.admin(t, "quota", "ls")
	require.Equal(t, 0, code)
	require.NotContains(t, out, "bob", "no quota and nothing held")
	code, out, _ = b.admin(t, "events")
	require.Equal(t, 0, code)
	require.Contains(t, out, "quota of alice in default: 10 GB, 1000 files (was unlimited, unlimited files)")
	require.Contains(t, out, "quota of bob in default removed")
}
