// Package pgcluster runs a private PostgreSQL server in a directory of its own, reachable
// only on a Unix socket inside that directory. `make db`, `make run` and the test harness
// share it, so a developer has exactly one local cluster (under ./var/pg) to think about.
//
// A cluster made with EnsureWith may also listen on one TCP address (Options.Listen):
// tests that run daemons in network namespaces need it, because a Unix socket is a file
// and reaches a process across any cut link, while TCP goes over the test's network.
//
// PostgreSQL refuses to run as root. When the caller is root, the server binaries run as the
// unprivileged `postgres` account (created by Debian's postgresql package), the cluster
// directory is handed to that account, and directories above it that the account could not
// traverse are given search (x) permission only — never read permission.
package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// SuperUser is the database superuser initdb creates; local connections are trusted.
const SuperUser = "pollux"

// Port numbers the socket file (.s.PGSQL.<port>); nothing listens on TCP.
const Port = 5432

// settings are written to postgresql.auto.conf at initdb time. They size the server for a
// 2-core, 24 GiB machine running the test suite (many parallel databases and pools) and the
// benchmarks (shared_buffers as in the reference pgbench figures).
var settings = map[string]string{
	"listen_addresses":          "''",
	"max_connections":           "500",
	"shared_buffers":            "2GB",
	"max_locks_per_transaction": "256",
	"log_min_messages":          "warning",
	"log_min_error_statement":   "panic",
	"log_checkpoints":           "off",
	"log_connections":           "off",
	"log_disconnections":        "off",
}

// Cluster is a private PostgreSQL server rooted at Dir:
//
//	Dir/data  PGDATA
//	Dir/run   Unix socket directory
//	Dir/log   server log
type Cluster struct {
	Dir    string
	BinDir string
	// runAs is the account the server binaries run as; nil means the current user.
	runAs *syscall.Credential
	opts  Options
}

// Options shape a cluster beyond the development cluster's defaults. Trust and Settings
// take effect when the cluster is created (initdb), Listen and Port when it starts: a
// cluster found running is used as it runs.
type Options struct {
	// Listen is an IP address on which the server also takes TCP connections, besides its
	// Unix socket; empty means none.
	Listen string
	// Port is the TCP port on Listen and the number of the socket file; 0 means Port.
	Port int
	// Trust are networks (CIDR, e.g. 10.213.4.0/24) whose TCP clients are trusted without a
	// password, as local clients are.
	Trust []string
	// Settings override the server settings written at initdb (e.g. a smaller
	// shared_buffers for a cluster of a single test).
	Settings map[string]string
	// Launch starts the command that starts the server (pg_ctl start) in place of
	// exec.Cmd.Start, so that the caller decides where the server runs: a test host's
	// Start (testsuites/netns), to run it on that host and kill it with the host. nil
	// starts it here.
	Launch func(cmd *exec.Cmd) error
}

func (o Options) check() error {
	if o.Listen != "" {
		if _, err := netip.ParseAddr(o.Listen); err != nil {
			return fmt.Errorf("pgcluster: listen address %q is not an IP address", o.Listen)
		}
	}
	if o.Port < 0 || o.Port > 65535 {
		return fmt.Errorf("pgcluster: port %d is out of range", o.Port)
	}
	for _, n := range o.Trust {
		if _, err := netip.ParsePrefix(n); err != nil {
			return fmt.Errorf("pgcluster: trusted network %q is not a CIDR prefix (e.g. 10.213.4.0/24)", n)
		}
	}
	return nil
}

func (o Options) port() int {
	if o.Port == 0 {
		return Port
	}
	return o.Port
}

// Ensure makes the cluster at dir exist and run, and returns it. It is idempotent and safe
// to call from several processes at once (go test runs packages in parallel): a file lock
// inside dir serialises initdb and start.
func Ensure(ctx context.Context, dir string, progress io.Writer) (*Cluster, error) {
	return EnsureWith(ctx, dir, Options{}, progress)
}

// EnsureWith is Ensure with options.
func EnsureWith(ctx context.Context, dir string, o Options, progress io.Writer) (*Cluster, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	c, err := open(dir)
	if err != nil {
		return nil, err
	}
	c.opts = o
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create cluster directory: %w", err)
	}
	unlock, err := lockFile(filepath.Join(c.Dir, ".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()

	if err := c.prepareOwnership(progress); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(c.dataDir(), "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		if err := c.initdb(ctx, progress); err != nil {
			return nil, err
		}
	}
	running, err := c.Running(ctx)
	if err != nil {
		return nil, err
	}
	if !running {
		if err := c.start(ctx, progress); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Open returns the cluster at dir without starting it (for stop and status).
func Open(dir string) (*Cluster, error) { return open(dir) }

func open(dir string) (*Cluster, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("cluster directory %q: %w", dir, err)
	}
	bin, err := FindBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := ServerAccount()
	if err != nil {
		return nil, err
	}
	return &Cluster{Dir: abs, BinDir: bin, runAs: cred}, nil
}

// FindBinDir locates the PostgreSQL server binaries: $POLLUX_PG_BINDIR, else the newest
// /usr/lib/postgresql/<major>/bin (Debian's layout), else the directory of initdb on PATH.
func FindBinDir() (string, error) {
	if d := os.Getenv("POLLUX_PG_BINDIR"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err != nil {
			return "", fmt.Errorf("POLLUX_PG_BINDIR=%s has no initdb: %w", d, err)
		}
		return d, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Slice(matches, func(i, j int) bool { return majorOf(matches[i]) > majorOf(matches[j]) })
	if len(matches) > 0 {
		return filepath.Dir(matches[0]), nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("no PostgreSQL server binaries found (looked in $POLLUX_PG_BINDIR, /usr/lib/postgresql/*/bin and PATH): " +
		"install them with `apt-get install -y postgresql` (make db does this) or set POLLUX_PG_BINDIR")
}

func majorOf(initdbPath string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdbPath))))
	return n
}

func (c *Cluster) dataDir() string   { return filepath.Join(c.Dir, "data") }
func (c *Cluster) socketDir() string { return filepath.Join(c.Dir, "run") }
func (c *Cluster) logFile() string   { return filepath.Join(c.Dir, "log", "postgres.log") }

// LogFile is the server's log.
func (c *Cluster) LogFile() string { return c.logFile() }

// DSN is the libpq-style URL of database dbname on this cluster, over its Unix socket.
func (c *Cluster) DSN(dbname string) string {
	q := url.Values{}
	q.Set("host", c.socketDir())
	q.Set("port", strconv.Itoa(c.opts.port()))
	q.Set("sslmode", "disable")
	return (&url.URL{Scheme: "postgres", User: url.User(SuperUser), Path: "/" + dbname, RawQuery: q.Encode()}).String()
}

// TCPDSN is the URL of database dbname over TCP on Options.Listen; it fails when the
// cluster was not asked to listen.
func (c *Cluster) TCPDSN(dbname string) (string, error) {
	if c.opts.Listen == "" {
		return "", errors.New("pgcluster: the cluster listens on no TCP address (Options.Listen)")
	}
	q := url.Values{}
	q.Set("sslmode", "disable")
	host := net.JoinHostPort(c.opts.Listen, strconv.Itoa(c.opts.port()))
	return (&url.URL{Scheme: "postgres", User: url.User(SuperUser), Host: host, Path: "/" + dbname, RawQuery: q.Encode()}).String(), nil
}

// prepareOwnership hands the cluster directory to the server account and makes sure that
// account can reach it.
func (c *Cluster) prepareOwnership(progress io.Writer) error {
	for _, d := range []string{c.dataDir(), c.socketDir(), filepath.Dir(c.logFile())} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	if c.runAs == nil {
		return nil
	}
	uid, gid := int(c.runAs.Uid), int(c.runAs.Gid)
	// Only the three top-level directories: initdb and the server create everything inside
	// them as the server account already, and the server may be creating and deleting files
	// in there right now (another test process started it).
	for _, d := range []string{c.dataDir(), c.socketDir(), filepath.Dir(c.logFile())} {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("stat %s: %w", d, err)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) == uid {
			continue
		}
		if err := os.Chown(d, uid, gid); err != nil {
			return fmt.Errorf("hand %s to the postgres account: %w", d, err)
		}
	}
	return AllowTraverse(c.Dir, progress)
}

func (c *Cluster) initdb(ctx context.Context, progress io.Writer) error {
	fmt.Fprintf(progress, "pgcluster: initdb %s\n", c.dataDir())
	if err := c.run(ctx, "initdb", "-D", c.dataDir(), "-U", SuperUser, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"); err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	var conf strings.Builder
	conf.WriteString("# Written by pollux pgcluster at initdb time.\n")
	all := map[string]string{}
	for k, v := range settings {
		all[k] = v
	}
	for k, v := range c.opts.Settings {
		all[k] = v
	}
	keys := make([]string, 0, len(all))
	for k := range all {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&conf, "%s = %s\n", k, all[k])
	}
	if err := c.writeConf("postgresql.auto.conf", conf.String(), false); err != nil {
		return err
	}
	if len(c.opts.Trust) > 0 {
		var hba strings.Builder
		hba.WriteString("\n# Written by pollux pgcluster: networks of the test's hosts.\n")
		for _, n := range c.opts.Trust {
			fmt.Fprintf(&hba, "host all all %s trust\n", n)
		}
		if err := c.writeConf("pg_hba.conf", hba.String(), true); err != nil {
			return err
		}
	}
	return nil
}

// writeConf writes (or appends to) a file of the data directory, owned by the server's
// account.
func (c *Cluster) writeConf(name, content string, appendTo bool) error {
	p := filepath.Join(c.dataDir(), name)
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if appendTo {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	f, err := os.OpenFile(p, flags, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	_, err = f.WriteString(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if c.runAs != nil {
		if err := os.Chown(p, int(c.runAs.Uid), int(c.runAs.Gid)); err != nil {
			return fmt.Errorf("chown %s: %w", p, err)
		}
	}
	return nil
}

func (c *Cluster) start(ctx context.Context, progress io.Writer) error {
	fmt.Fprintf(progress, "pgcluster: starting server (log %s)\n", c.logFile())
	opts := fmt.Sprintf("-k %s -p %d", c.socketDir(), c.opts.port())
	if c.opts.Listen != "" {
		// The command line wins over postgresql.auto.conf's listen_addresses = ''.
		opts += " -c listen_addresses=" + c.opts.Listen
	}
	if err := c.runWith(ctx, c.opts.Launch, "pg_ctl", "start", "-w", "-t", "120", "-D", c.dataDir(), "-l", c.logFile(), "-o", opts); err != nil {
		tail, _ := tailFile(c.logFile(), 20)
		return fmt.Errorf("start server: %w\nlast lines of %s:\n%s", err, c.logFile(), tail)
	}
	return nil
}

// Running reports whether the server of this cluster is up.
func (c *Cluster) Running(ctx context.Context) (bool, error) {
	if _, err := os.Stat(filepath.Join(c.dataDir(), "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	err := c.run(ctx, "pg_ctl", "status", "-D", c.dataDir())
	var exit *exec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &exit) && exit.ExitCode() == 3:
		return false, nil
	default:
		return false, fmt.Errorf("pg_ctl status: %w", err)
	}
}

// Stop stops the server (fast shutdown) if it runs.
func (c *Cluster) Stop(ctx context.Context) error {
	running, err := c.Running(ctx)
	if err != nil || !running {
		return err
	}
	if err := c.run(ctx, "pg_ctl", "stop", "-w", "-m", "fast", "-D", c.dataDir()); err != nil {
		return fmt.Errorf("stop server: %w", err)
	}
	return nil
}

func (c *Cluster) run(ctx context.Context, tool string, args ...string) error {
	return c.runWith(ctx, nil, tool, args...)
}

// runWith runs a server tool, started by launch when it is not nil.
func (c *Cluster) runWith(ctx context.Context, launch func(*exec.Cmd) error, tool string, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(c.BinDir, tool), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Dir = "/"
	if c.runAs != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.runAs}
		cmd.Env = append(os.Environ(), "HOME=/tmp")
	}
	var err error
	if launch == nil {
		err = cmd.Run()
	} else if err = launch(cmd); err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		return &toolError{tool: tool, err: err, output: strings.TrimSpace(out.String())}
	}
	return nil
}

type toolError struct {
	tool   string
	err    error
	output string
}

func (e *toolError) Error() string { return fmt.Sprintf("%s: %v: %s", e.tool, e.err, e.output) }
func (e *toolError) Unwrap() error { return e.err }

func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock %s: still held by another process after 5m", path)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tailFile(path string, n int) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n"), nil
}

// The block of pg_hba.conf that RequirePassword manages.
const (
	hbaBegin = "# BEGIN pollux pgcluster: roles that must give a password"
	hbaEnd   = "# END pollux pgcluster"
)

// RequirePassword makes the roles authenticate with a password (scram-sha-256) over the
// socket and TCP, whatever the trust lines after them say, and reloads the server's
// configuration. pg_hba.conf is read top down and the first line that matches decides,
// so the lines go in a block at the top, which a later call replaces. Other roles (the
// superuser, the tests' roles) keep the cluster's trust.
func (c *Cluster) RequirePassword(ctx context.Context, roles []string) error {
	for _, r := range roles {
		if r == "" || strings.ContainsAny(r, " \t\n,\"#@+") {
			return fmt.Errorf("pgcluster: role name %q cannot be written into pg_hba.conf", r)
		}
	}
	p := filepath.Join(c.dataDir(), "pg_hba.conf")
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	rest := string(b)
	if i := strings.Index(rest, hbaBegin); i >= 0 {
		if j := strings.Index(rest[i:], hbaEnd+"\n"); j >= 0 {
			rest = rest[:i] + rest[i+j+len(hbaEnd)+1:]
		}
	}
	var hba strings.Builder
	if len(roles) > 0 {
		list := strings.Join(roles, ",")
		fmt.Fprintf(&hba, "%s\nlocal all %s scram-sha-256\nhost all %s all scram-sha-256\n%s\n", hbaBegin, list, list, hbaEnd)
	}
	hba.WriteString(rest)
	if hba.String() == string(b) {
		return nil
	}
	if err := c.writeConf("pg_hba.conf", hba.String(), false); err != nil {
		return err
	}
	return c.reload(ctx)
}

// reload makes the server re-read its configuration files and returns once it has: the
// signal pg_ctl sends is acted on later, and a connection made before then would still be
// judged by the old pg_hba.conf. A new session's pg_conf_load_time() is the server's
// last load.
func (c *Cluster) reload(ctx context.Context) error {
	loaded := func() (time.Time, error) {
		conn, err := pgx.Connect(ctx, c.DSN("postgres"))
		if err != nil {
			return time.Time{}, err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		var at time.Time
		err = conn.QueryRow(ctx, "SELECT pg_conf_load_time()").Scan(&at)
		return at, err
	}
	before, err := loaded()
	if err != nil {
		return fmt.Errorf("reload server configuration: %w", err)
	}
	if err := c.run(ctx, "pg_ctl", "reload", "-D", c.dataDir()); err != nil {
		return fmt.Errorf("reload server configuration: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		at, err := loaded()
		if err != nil {
			return fmt.Errorf("reload server configuration: %w", err)
		}
		if at.After(before) {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("reload server configuration: the server did not re-read it within 30s (see its log)")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
