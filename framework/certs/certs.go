// Package certs loads what TLS needs from files: a listener's certificate and key, and the
// certificate authorities a client trusts. It uses only crypto/tls and crypto/x509: no
// cryptography of its own.
package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
)

// Server returns the TLS configuration of a listener serving the certificate (with its
// chain) and key in the PEM files certFile and keyFile, or nil when both are empty (plain
// HTTP). One without the other is an error, as is a pair that does not load or match:
// a daemon told to serve TLS must not fall back to plain text. The files are read once;
// a restart picks up a renewed certificate.
func Server(certFile, keyFile string) (*tls.Config, error) {
	switch {
	case certFile == "" && keyFile == "":
		return nil, nil
	case certFile == "":
		return nil, errors.New("--tls-key-file is given without --tls-cert-file: give both, or neither for plain HTTP")
	case keyFile == "":
		return nil, errors.New("--tls-cert-file is given without --tls-key-file: give both, or neither for plain HTTP")
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate %s and key %s: %w", certFile, keyFile, err)
	}
	// TLS 1.2 is the oldest version without known protocol breaks; Go's defaults choose
	// the cipher suites.
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

// Client returns the TLS configuration of a client: it trusts exactly the certificate
// authorities in the PEM file caFile (a site's own CA), or the system's pool when caFile
// is empty. Server certificates are always verified.
func Client(caFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// Loopback says whether a listener's address is reachable only from this machine, where
// plain HTTP exposes its tokens to nobody but the machine's own users.
func Loopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
