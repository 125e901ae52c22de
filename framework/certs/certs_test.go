package certs_test

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/certs"
	"github.com/pollux-storage/pollux/framework/certs/certstest"
)

func TestServer(t *testing.T) {
	t.Parallel()
	f := certstest.Write(t, "127.0.0.1")
	cfg, err := certs.Server("", "")
	require.NoError(t, err)
	require.Nil(t, cfg, "neither file: plain HTTP")

	cfg, err = certs.Server(f.Cert, f.Key)
	require.NoError(t, err)
	require.Len(t, cfg.Certificates, 1)
	require.Equal(t, uint16(tls.VersionTLS12), cfg.MinVersion)

	_, err = certs.Server(f.Cert, "")
	require.ErrorContains(t, err, "--tls-cert-file is given without --tls-key-file")
	_, err = certs.Server("", f.Key)
	require.ErrorContains(t, err, "--tls-key-file is given without --tls-cert-file")
	other := certstest.Write(t, "127.0.0.1")
	_, err = certs.Server(f.Cert, other.Key)
	require.ErrorContains(t, err, "load TLS certificate", "a key that is not the certificate's")
	_, err = certs.Server(f.CA, f.Cert)
	require.ErrorContains(t, err, "load TLS certificate", "a certificate in place of a key")
}

func TestClient(t *testing.T) {
	t.Parallel()
	cfg, err := certs.Client("")
	require.NoError(t, err)
	require.Nil(t, cfg.RootCAs, "the system's pool")
	require.False(t, cfg.InsecureSkipVerify)

	f := certstest.Write(t, "127.0.0.1")
	cfg, err = certs.Client(f.CA)
	require.NoError(t, err)
	require.NotNil(t, cfg.RootCAs)

	_, err = certs.Client(filepath.Join(t.TempDir(), "missing.pem"))
	require.ErrorContains(t, err, "read CA file")
	junk := filepath.Join(t.TempDir(), "junk.pem")
	require.NoError(t, os.WriteFile(junk, []byte("not a certificate\n"), 0o644))
	_, err = certs.Client(junk)
	require.ErrorContains(t, err, "holds no PEM certificate")
}

func TestLoopback(t *testing.T) {
	t.Parallel()
	require.True(t, certs.Loopback(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}))
	require.True(t, certs.Loopback(&net.TCPAddr{IP: net.IPv6loopback}))
	require.False(t, certs.Loopback(&net.TCPAddr{IP: net.IPv4zero}), "every interface")
	require.False(t, certs.Loopback(&net.TCPAddr{IP: net.IPv4(192, 0, 2, 1)}))
}
