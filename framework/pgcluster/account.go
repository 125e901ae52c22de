package pgcluster

import (
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// ServerAccount returns the credentials that PostgreSQL's programs (and tools that refuse
// root as they do, such as pg_autoctl) must run under: nil when the caller is not root, so
// that they run as the caller, and the unprivileged `postgres` account when it is.
func ServerAccount() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL must run as an unprivileged account but user \"postgres\" does not exist " +
			"(create it with `useradd --system postgres`, or install the postgresql package)")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// AllowTraverse makes dir reachable by the server account: the server chdirs into its data
// directory, so every ancestor needs search permission. A fresh `mktemp -d` checkout is
// 0700; AllowTraverse adds o+x (never o+r) to each directory from dir up to / that lacks
// it, and says so on progress.
func AllowTraverse(dir string, progress io.Writer) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for d := abs; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("stat %s: %w", d, err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o001); err != nil {
				return fmt.Errorf("let the postgres account traverse %s: %w", d, err)
			}
			fmt.Fprintf(progress, "pgcluster: added search permission (o+x) to %s so the postgres account can reach the cluster\n", d)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}
