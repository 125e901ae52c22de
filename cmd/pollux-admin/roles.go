package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/pgcluster"
	"github.com/pollux-storage/pollux/model"
)

func init() {
	commands["roles"] = command{
		"list the database roles: the owner and one per daemon kind, whether each exists and logs in, what it may call",
		"roles [--json]", cmdRoles}
}

// cmdRoles shows the database roles `migrate` made and, per daemon role, the functions
// of this database it may EXECUTE.
func cmdRoles(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("roles", true)
	if _, err := c.parse(fs, args); err != nil {
		return err
	}
	db, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	list, err := listRoles(ctx, db)
	if err != nil {
		return err
	}
	if c.jsonOut {
		return c.printJSON(list)
	}
	var rows [][]string
	for _, r := range list {
		fns := strings.Join(r.Functions, ", ")
		if r.Kind == "owner" {
			fns = "(owns every logic function; they run as it)"
		}
		rows = append(rows, []string{r.Kind, r.Name, fmt.Sprint(r.RoleExists), fmt.Sprint(r.CanLogin), fns})
	}
	c.table("KIND\tROLE\tEXISTS\tLOGIN\tMAY CALL", rows)
	return nil
}

func listRoles(ctx context.Context, db *pg.DB) ([]model.DbRoleListRow, error) {
	var list []model.DbRoleListRow
	err := db.Do(ctx, "list database roles", func(q pg.Querier) (err error) {
		list, err = model.DbRoleList(ctx, q)
		return err
	})
	return list, err
}

// localPassfile is where the local instance keeps its daemon roles' passwords, in the
// format of libpq's .pgpass; the daemons' DSNs name it (passfile=), so no password is on a
// command line, in an environment or in a log.
func localPassfile(dir string) string { return filepath.Join(dir, "pgpass") }

// localDaemonDSNs gives every daemon role of the local instance a password (kept in
// localPassfile, mode 0600, made once), requires it of those roles on the cluster
// (scram-sha-256 ahead of the trust lines, which stay for the superuser that pollux-admin
// uses), and returns each daemon kind's DSN: the instance's database, as that role.
func localDaemonDSNs(ctx context.Context, cl *pgcluster.Cluster, dsn, dir string) (map[string]string, error) {
	db, err := pg.Open(ctx, pg.Config{DSN: dsn})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	list, err := listRoles(ctx, db)
	if err != nil {
		return nil, err
	}
	passfile := localPassfile(dir)
	passwords, err := readPassfile(passfile)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	var names []string
	for _, r := range list {
		if !slices.Contains(model.DaemonRoles, r.Kind) {
			continue // the owner logs in nowhere
		}
		if !r.RoleExists || !r.CanLogin {
			return nil, fmt.Errorf("database role %s (%s) is missing or may not log in: run `pollux-admin migrate`", r.Name, r.Kind)
		}
		if passwords[r.Name] == "" {
			var raw [24]byte
			if _, err := rand.Read(raw[:]); err != nil {
				return nil, err
			}
			passwords[r.Name] = hex.EncodeToString(raw[:])
		}
		names = append(names, r.Name)
		d, err := pg.WithUser(dsn, r.Name)
		if err != nil {
			return nil, err
		}
		if out[r.Kind], err = pg.WithParam(d, "passfile", passfile); err != nil {
			return nil, err
		}
	}
	if len(names) != len(model.DaemonRoles) {
		return nil, fmt.Errorf("the database has %d daemon roles, this binary knows %d: run `pollux-admin migrate`", len(names), len(model.DaemonRoles))
	}
	if err := writePassfile(passfile, passwords); err != nil {
		return nil, err
	}
	// Set every time: the passfile is the truth, and a role's password may have been
	// changed or dropped since. The server hashes it (password_encryption is scram-sha-256).
	for _, n := range names {
		stmt := fmt.Sprintf("ALTER ROLE %s PASSWORD '%s'", pgx.Identifier{n}.Sanitize(), passwords[n]) // hex: nothing to escape
		if _, err := db.Pool().Exec(ctx, stmt); err != nil {
			return nil, fmt.Errorf("set the password of database role %s: %w", n, err)
		}
	}
	if err := cl.RequirePassword(ctx, names); err != nil {
		return nil, err
	}
	return out, nil
}

// readPassfile reads the role → password lines of a .pgpass file written by
// writePassfile (host, port and database are *); a missing file is an empty one.
func readPassfile(path string) (map[string]string, error) {
	out := map[string]string{}
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.Split(line, ":")
		if len(parts) != 5 || parts[3] == "" || parts[4] == "" {
			return nil, fmt.Errorf("%s:%d: not a *:*:*:ROLE:PASSWORD line (delete the file to make new passwords)", path, n)
		}
		out[parts[3]] = parts[4]
	}
	return out, sc.Err()
}

func writePassfile(path string, passwords map[string]string) error {
	var b strings.Builder
	b.WriteString("# The local instance's database roles (pollux-admin local start; libpq .pgpass format).\n")
	names := make([]string, 0, len(passwords))
	for n := range passwords {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(&b, "*:*:*:%s:%s\n", n, passwords[n])
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return err
	}
	// WriteFile keeps the mode of a file that exists already: make sure of 0600, which
	// libpq also insists on.
	if err := os.Chmod(tmp, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
