package client_test

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/cmd/client"
)

// The token is POLLUX_TOKEN, else found where WLCG Bearer Token Discovery looks, in its
// order; an explicit BEARER_TOKEN_FILE that cannot be read is an error naming it.
func TestTokenDiscovery(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(file, []byte("from-file\n"), 0o600))
	runtime := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(runtime, "bt_u"+strconv.Itoa(os.Getuid())), []byte(" from-runtime-dir \n"), 0o600))
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))

	for _, tc := range []struct {
		name string
		env  map[string]string
		want string // the token, or the error's text
		err  bool
	}{
		{"POLLUX_TOKEN first", map[string]string{client.EnvToken: "pollux", client.EnvBearerToken: "bearer", "XDG_RUNTIME_DIR": runtime}, "pollux", false},
		{"BEARER_TOKEN", map[string]string{client.EnvBearerToken: " bearer ", client.EnvBearerTokenFile: file}, "bearer", false},
		{"BEARER_TOKEN_FILE", map[string]string{client.EnvBearerTokenFile: file, "XDG_RUNTIME_DIR": runtime}, "from-file", false},
		{"XDG_RUNTIME_DIR", map[string]string{"XDG_RUNTIME_DIR": runtime}, "from-runtime-dir", false},
		{"unreadable file", map[string]string{client.EnvBearerTokenFile: filepath.Join(dir, "missing")}, "BEARER_TOKEN_FILE=" + filepath.Join(dir, "missing") + " cannot be read", true},
		{"empty file", map[string]string{client.EnvBearerTokenFile: empty}, "is empty: get a new token from your issuer", true},
		{"nothing", map[string]string{"XDG_RUNTIME_DIR": dir}, "POLLUX_TOKEN is not set and no WLCG bearer token was found (BEARER_TOKEN, BEARER_TOKEN_FILE, " + filepath.Join(dir, "bt_u"), true},
	} {
		env := map[string]string{client.EnvHost: "127.0.0.1:9000"}
		for k, v := range tc.env {
			env[k] = v
		}
		cfg, err := client.ConfigFromEnv(func(k string) string { return env[k] })
		if tc.err {
			require.ErrorContains(t, err, tc.want, tc.name)
			continue
		}
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.want, cfg.Token, tc.name)
	}
}
