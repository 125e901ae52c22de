// Command pollux-certify is Pollux's certification suite: it runs every functional case
// against a live instance (--stage-host) as a client would, through the client commands'
// own library, and reports each case's evidence; exit 0 only if every case that ran
// passed. The suite is testsuites/certify; the catalogue of cases is docs/certification.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/pollux-storage/pollux/testsuites/certify"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(certify.Main(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}
