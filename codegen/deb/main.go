// Command deb builds Pollux's Debian package (`make deb`): the binaries, a systemd unit and
// an /etc/pollux/<daemon>.env settings file per daemon, a man page per program, and the
// example configuration (Prometheus scrape configuration and alert rules, the HAProxy
// template), packed with dpkg-deb.
//
// Man pages and settings files are made from each program's --help, which its flag
// definitions print (framework/flagenv for the daemons, cmd/client for the clients,
// pollux-admin's own): the package never carries a second copy of the flags' text, and a
// flag added to a program is in its page at the next build.
//
//	go run ./codegen/deb -bin var/bin -out var/deb [-version 0.1.0]
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

func main() {
	bin := flag.String("bin", "var/bin", "Directory of the built programs (make build).")
	out := flag.String("out", "var/deb", "Directory to write the package (and its staging tree) into.")
	version := flag.String("version", "", "Package version (default: from git describe, or 0.0.0).")
	root := flag.String("root", ".", "The repository (docs/prometheus and testsuites/e2e hold the example configuration).")
	flag.Parse()
	v := *version
	if v == "" {
		v = gitVersion(*root)
	}
	deb, err := Build(Options{Bin: *bin, Out: *out, Version: v, Root: *root})
	if err != nil {
		fmt.Fprintln(os.Stderr, "deb:", err)
		os.Exit(1)
	}
	abs, _ := filepath.Abs(deb)
	fmt.Println(abs)
}
