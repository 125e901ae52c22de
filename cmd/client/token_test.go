package client_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/cmd/client"
	"github.com/pollux-storage/pollux/daemons/rhd/rhdtest"
	"github.com/pollux-storage/pollux/schema/schematest"
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

// A grid user's JWT, found where their token agent put it, is sent to rhd: its scopes
// decide, and a refusal is exit 1 with rhd's reason.
func TestJWTFromTheClient(t *testing.T) {
	t.Parallel()
	is := rhdtest.NewIssuer(t)
	rhd := rhdtest.Start(t, schematest.DSN(t), rhdtest.WriteTokens(t, map[string]string{"static": "alice"}), rhdtest.JWTFlags(is.WriteJWKS())...)
	dir := t.TempDir()
	run := func(tok string, cmd func(context.Context, client.Env) int, args ...string) (int, string) {
		file := filepath.Join(dir, "bt")
		require.NoError(t, os.WriteFile(file, []byte(tok+"\n"), 0o600))
		env := map[string]string{client.EnvHost: rhd.Addr, client.EnvBearerTokenFile: file}
		var stdout, stderr strings.Builder
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		code := cmd(ctx, client.Env{Args: args, Getenv: func(k string) string { return env[k] }, Stdout: &stdout, Stderr: &stderr})
		return code, stderr.String()
	}
	reader := is.Sign("ec1", rhdtest.Good("alice", "storage.read:/u/alice"))
	code, msg := run(reader, client.Qry, "-M", "/pollux/u/alice/f")
	require.Equal(t, 1, code, msg)
	require.Contains(t, msg, "no such file: /pollux/u/alice/f", "the token passed, the file is missing")

	code, msg = run(reader, client.Rm, "-M", "/pollux/u/alice/f")
	require.Equal(t, 1, code, msg)
	require.Contains(t, msg, "permission denied: /pollux/u/alice/f needs a token with storage.modify covering it")

	expired := rhdtest.Good("alice", "storage.read:/")
	expired.Expiry = jwt.NewNumericDate(time.Now().Add(-time.Hour))
	code, msg = run(is.Sign("rsa1", expired), client.Qry, "-M", "/pollux/u/alice/f")
	require.Equal(t, 1, code, msg)
	require.Contains(t, msg, "the token expired at ")
}
