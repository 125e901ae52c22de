package client_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/cmd/client"
	"github.com/pollux-storage/pollux/daemons/rhd/rhdtest"
	"github.com/pollux-storage/pollux/framework/certs/certstest"
	"github.com/pollux-storage/pollux/schema/schematest"
)

// TestTLSRequestHandler: a command reaches an rhd serving HTTPS through an https://
// STAGE_HOST entry, verifying it against POLLUX_CA_FILE; without that file (the system's
// pool) the certificate is not trusted and the command says so; a CA file that is not one
// is a usage error naming the variable.
func TestTLSRequestHandler(t *testing.T) {
	t.Parallel()
	f := certstest.Write(t, "127.0.0.1")
	rhd := rhdtest.Start(t, schematest.DSN(t), rhdtest.WriteTokens(t, map[string]string{token: "alice"}),
		"--tls-cert-file", f.Cert, "--tls-key-file", f.Key)
	vars := map[string]string{client.EnvHost: "https://" + rhd.Addr, client.EnvToken: token, client.EnvCAFile: f.CA,
		"POLLUX_SERVICE_TIMEOUT": "2s"}
	q := runCommand(client.Qry, vars, nil, nil, "-M", "/pollux/u/alice/nope")
	require.Equal(t, 1, q.code, "answered by rhd over TLS: %s", q.stderr)
	require.Contains(t, q.stderr, "no such file: /pollux/u/alice/nope")

	delete(vars, client.EnvCAFile)
	q = runCommand(client.Qry, vars, nil, nil, "-M", "/pollux/u/alice/nope")
	require.NotEqual(t, 0, q.code)
	require.NotContains(t, q.stderr, "no such file", "never served")
	require.Contains(t, q.stderr, "certificate")

	junk := filepath.Join(t.TempDir(), "junk.pem")
	require.NoError(t, os.WriteFile(junk, []byte("junk\n"), 0o644))
	vars[client.EnvCAFile] = junk
	q = runCommand(client.Qry, vars, nil, nil, "-M", "/pollux/u/alice/nope")
	require.Equal(t, 1, q.code, q.stderr)
	require.Contains(t, q.stderr, "POLLUX_CA_FILE: CA file "+junk+" holds no PEM certificate")
}
