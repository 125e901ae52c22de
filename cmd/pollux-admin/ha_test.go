package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// The ha command's mistakes: a bad action is a command-line error (2); acting on a
// directory with no formation fails (1) and says how to make one. The formation itself is
// exercised by framework/pgha and testsuites/failover.
func TestHACommandLine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"ha"}, 2, "say start, stop, status, dsn or kill NODE|primary"},
		{[]string{"ha", "restart"}, 2, "say start, stop, status, dsn or kill"},
		{[]string{"ha", "kill"}, 2, "say which node to kill"},
		{[]string{"ha", "kill", "node1", "node2"}, 2, "unexpected arguments for ha kill: node2"},
		{[]string{"ha", "status", "extra"}, 2, "unexpected arguments for ha status: extra"},
		{[]string{"ha", "status", "--dir", dir}, 1, "`pollux-admin ha start` creates one"},
		{[]string{"ha", "dsn", "--dir", dir}, 1, "no formation in " + dir},
		{[]string{"ha", "kill", "primary", "--dir", dir}, 1, "no formation in"},
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), tc.args, nil, &out, &errOut)
		require.Equal(t, tc.code, code, "%v: %s", tc.args, errOut.String())
		require.Contains(t, errOut.String(), tc.want, "%v", tc.args)
	}
}
