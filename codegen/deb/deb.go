package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
)

// Options say what to package and where.
type Options struct {
	// Bin holds the built programs (every one of cmd/ and daemons/).
	Bin string
	// Out receives the staging tree (Out/root) and the .deb.
	Out string
	// Version is the package's version.
	Version string
	// Root is the repository, for the example configuration.
	Root string
}

// examples are copied from the repository to /usr/share/doc/pollux/examples.
var examples = []string{
	"docs/prometheus/prometheus.yml",
	"docs/prometheus/pollux.rules.yml",
	"testsuites/e2e/haproxy.cfg.tmpl",
}

// Build stages the package's tree under o.Out/root and packs it with dpkg-deb; it returns
// the .deb's path.
func Build(o Options) (string, error) {
	entries, err := os.ReadDir(o.Bin)
	if err != nil {
		return "", fmt.Errorf("read %s (make build first): %w", o.Bin, err)
	}
	var programs []string
	for _, e := range entries {
		if !e.IsDir() && e.Type().IsRegular() {
			programs = append(programs, e.Name())
		}
	}
	slices.Sort(programs)
	for d := range daemons {
		if !slices.Contains(programs, d) {
			return "", fmt.Errorf("%s has no %s: build every program (make build)", o.Bin, d)
		}
	}
	stage := filepath.Join(o.Out, "root")
	if err := os.RemoveAll(stage); err != nil {
		return "", err
	}
	put := func(rel string, data []byte, mode os.FileMode) error {
		p := filepath.Join(stage, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		return os.WriteFile(p, data, mode)
	}
	var conffiles []string
	for _, name := range programs {
		src := filepath.Join(o.Bin, name)
		b, err := os.ReadFile(src)
		if err != nil {
			return "", err
		}
		if err := put("usr/bin/"+name, b, 0o755); err != nil {
			return "", err
		}
		h, err := helpOf(src)
		if err != nil {
			return "", err
		}
		page, err := gzipped(manPage(h, o.Version, programs))
		if err != nil {
			return "", err
		}
		sec := manSection(name)
		if err := put(fmt.Sprintf("usr/share/man/man%s/%s.%s.gz", sec, name, sec), page, 0o644); err != nil {
			return "", err
		}
		if !isDaemon(name) {
			continue
		}
		u, err := unit(h)
		if err != nil {
			return "", err
		}
		if err := put("lib/systemd/system/pollux-"+name+".service", []byte(u), 0o644); err != nil {
			return "", err
		}
		env := "/etc/pollux/" + name + ".env"
		// 0640, root:pollux (postinst): the database URL may carry a password.
		if err := put(env[1:], []byte(settingsFile(h)), 0o640); err != nil {
			return "", err
		}
		conffiles = append(conffiles, env)
	}
	for _, ex := range examples {
		b, err := os.ReadFile(filepath.Join(o.Root, ex))
		if err != nil {
			return "", err
		}
		if err := put("usr/share/doc/pollux/examples/"+filepath.Base(ex), b, 0o644); err != nil {
			return "", err
		}
	}
	if err := put("DEBIAN/control", []byte(control(o.Version, stage)), 0o644); err != nil {
		return "", err
	}
	if err := put("DEBIAN/conffiles", []byte(strings.Join(conffiles, "\n")+"\n"), 0o644); err != nil {
		return "", err
	}
	if err := put("DEBIAN/postinst", []byte(postinst), 0o755); err != nil {
		return "", err
	}
	deb := filepath.Join(o.Out, fmt.Sprintf("pollux_%s_%s.deb", o.Version, arch()))
	cmd := exec.Command("dpkg-deb", "--root-owner-group", "-Zgzip", "--build", stage, deb)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("dpkg-deb: %w\n%s", err, out)
	}
	return deb, nil
}

func control(version, stage string) string {
	var size int64
	_ = filepath.Walk(stage, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			size += fi.Size()
		}
		return nil
	})
	// No Depends: the programs are static Go binaries; PostgreSQL runs elsewhere (under its
	// HA manager), and the account is made with useradd, which every Debian has.
	return fmt.Sprintf(`Package: pollux
Version: %s
Architecture: %s
Maintainer: Pollux developers <pollux@localhost>
Section: net
Priority: optional
Installed-Size: %d
Recommends: postgresql-client
Suggests: prometheus, haproxy
Homepage: https://github.com/pollux-storage/pollux
Description: CASTOR-style, database-centric storage request system
 Pollux keeps every request's state in PostgreSQL; its stateless daemons (rhd, stagerd,
 schedulerd, jobmanagerd, diskserverd) claim their work from shared tables, any number of
 each. This package holds the daemons with a systemd unit and a settings file each
 (/etc/pollux/<daemon>.env), the client commands (pollux, stager_*), the operator's tool
 pollux-admin, their man pages, and example Prometheus and HAProxy configuration.
`, version, arch(), (size+1023)/1024)
}

// postinst makes the account the daemons run as and lets it read the settings. Under
// DPKG_ROOT (an installation into a directory, as the package's test makes) it leaves the
// machine's accounts alone.
const postinst = `#!/bin/sh
set -e
if [ "$1" = configure ] && [ -z "$DPKG_ROOT" ]; then
	if ! getent passwd pollux >/dev/null; then
		useradd --system --user-group --home-dir /var/lib/pollux --no-create-home --shell /usr/sbin/nologin pollux
	fi
	chgrp pollux /etc/pollux/*.env
	mkdir -p /srv/pollux
	chown pollux:pollux /srv/pollux
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
	fi
fi
exit 0
`

// arch is the Debian architecture of the build.
func arch() string {
	if runtime.GOARCH == "arm" {
		return "armhf"
	}
	return runtime.GOARCH // amd64, arm64, ppc64le, s390x, riscv64 agree with Debian's names
}

func gzipped(s string) ([]byte, error) {
	var b bytes.Buffer
	// Best compression, no name or time in the header: the same page gives the same bytes.
	z, err := gzip.NewWriterLevel(&b, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(z, s); err != nil {
		return nil, err
	}
	if err := z.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// gitVersion is a Debian version from git describe (tags v1.2.3), or 0.0.0+g<commit>.
func gitVersion(root string) string {
	out, err := exec.Command("git", "-C", root, "describe", "--tags", "--always", "--dirty").Output()
	v := strings.TrimSpace(string(out))
	switch {
	case err != nil || v == "":
		return "0.0.0"
	case strings.HasPrefix(v, "v") && len(v) > 1 && v[1] >= '0' && v[1] <= '9':
		return strings.ReplaceAll(v[1:], "-", "+")
	}
	return "0.0.0+g" + strings.ReplaceAll(v, "-", "+")
}
