package pgha

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pollux-storage/pollux/framework/pgcluster"
)

// DefaultPort is the TCP port of every member, each at its own loopback address.
const DefaultPort = 5432

// DefaultDatabase is the database created on the data nodes.
const DefaultDatabase = "pollux"

// MonitorName names the monitor among the members.
const MonitorName = "monitor"

const (
	stateFile = "formation.json"
	// maxSocketPath is the room for a Unix socket's path (sun_path less its terminator).
	maxSocketPath = 107
)

// InstallHint says how to get pg_autoctl; errors about a missing one end with it.
const InstallHint = "install Debian's postgresql-15-auto-failover package (`make ha/install` does it)"

// Options shapes a new formation.
type Options struct {
	// Dir holds everything: formation.json, one directory per member, logs and pid files.
	Dir string
	// Database is created on the data nodes; default DefaultDatabase.
	Database string
	// Port is every member's TCP port; default DefaultPort.
	Port int
	// Timing is the failure detection; zero means FastTiming.
	Timing Timing
	// Progress receives one line per step; nil means none.
	Progress io.Writer
}

// Member is the monitor or a data node.
type Member struct {
	Name string `json:"name"`
	Host string `json:"host"`
	Port int    `json:"port"`
}

// Addr is host:port.
func (m Member) Addr() string { return net.JoinHostPort(m.Host, strconv.Itoa(m.Port)) }

// Formation is a monitor and its data nodes under Dir, as formation.json records them.
type Formation struct {
	Dir      string   `json:"-"`
	Database string   `json:"database"`
	User     string   `json:"user"` // the data nodes' superuser (initdb's: the account they run as)
	Monitor  Member   `json:"monitor"`
	Nodes    []Member `json:"nodes"`
	Timing   Timing   `json:"timing"`

	bin      string              // PostgreSQL's server binaries
	autoctl  string              // pg_autoctl
	runAs    *syscall.Credential // nil: as the caller
	progress io.Writer
}

// Create makes a new formation under o.Dir and starts it: the monitor, a primary and a
// standby, waiting until the standby is in sync. If the chosen loopback addresses are
// taken, it starts over at others. On another failure it stops what it started and leaves
// the directory for a look at the logs (Remove clears it).
func Create(ctx context.Context, o Options) (*Formation, error) {
	if o.Database == "" {
		o.Database = DefaultDatabase
	}
	if o.Port == 0 {
		o.Port = DefaultPort
	}
	if o.Timing == (Timing{}) {
		o.Timing = FastTiming()
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if err := o.Timing.Validate(); err != nil {
		return nil, fmt.Errorf("timing: %w", err)
	}
	if o.Port < 1 || o.Port > 65535 {
		return nil, fmt.Errorf("port %d is not a TCP port", o.Port)
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, stateFile)); err == nil {
		return nil, fmt.Errorf("a formation already exists in %s: start it, or remove it first", dir)
	}
	if sock := filepath.Join(dir, "node9", "run", fmt.Sprintf(".s.PGSQL.%d.lock", o.Port)); len(sock) > maxSocketPath {
		return nil, fmt.Errorf("directory %s is too deep: a member's socket path (%s) would exceed %d bytes; choose a shorter directory", dir, sock, maxSocketPath)
	}
	f := &Formation{Dir: dir, Database: o.Database, Timing: o.Timing, progress: o.Progress}
	if err := f.tools(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	if err := pgcluster.AllowTraverse(dir, o.Progress); err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		f.place(o.Port)
		err := f.create(ctx)
		if err == nil {
			return f, nil
		}
		stopErr := f.Stop(context.WithoutCancel(ctx))
		if !errors.Is(err, errBind) || attempt == 5 {
			return nil, errors.Join(err, stopErr)
		}
		fmt.Fprintf(o.Progress, "pgha: %v; starting over at other addresses\n", err)
		if err := f.clear(); err != nil {
			return nil, err
		}
	}
}

// place chooses the members' addresses: 127.X.Y.1 for the monitor, .2 and .3 for the
// nodes, with X.Y random (X from 16, away from the 127.0.0.1 everyone binds).
func (f *Formation) place(port int) {
	base := fmt.Sprintf("127.%d.%d.", 16+rand.IntN(239), rand.IntN(256))
	f.Monitor = Member{Name: MonitorName, Host: base + "1", Port: port}
	f.Nodes = []Member{{Name: "node1", Host: base + "2", Port: port}, {Name: "node2", Host: base + "3", Port: port}}
}

func (f *Formation) create(ctx context.Context) error {
	if f.runAs != nil {
		u, err := user.LookupId(strconv.Itoa(int(f.runAs.Uid)))
		if err != nil {
			return fmt.Errorf("look up the server account: %w", err)
		}
		f.User = u.Username
	} else if u, err := user.Current(); err == nil {
		f.User = u.Username
	} else {
		return fmt.Errorf("who am I: %w", err)
	}
	// Written first, so that a formation half created can still be stopped and removed.
	if err := f.save(); err != nil {
		return err
	}
	for _, d := range []string{"log", "run"} {
		if err := os.MkdirAll(filepath.Join(f.Dir, d), 0o755); err != nil {
			return err
		}
	}
	m := f.Monitor
	fmt.Fprintf(f.progress, "pgha: creating the monitor at %s\n", m.Addr())
	if err := f.prepareMember(m); err != nil {
		return err
	}
	if err := f.autoctlStep(ctx, m, "create", "monitor", "--pgdata", f.dataDir(m), "--pgctl", filepath.Join(f.bin, "pg_ctl"),
		"--pgport", strconv.Itoa(m.Port), "--hostname", m.Host, "--listen", m.Host, "--skip-pg-hba", "--no-ssl"); err != nil {
		return err
	}
	// The monitor's timing, and a server sized for a monitor rather than a quarter of RAM.
	if err := f.configure(m, append([]string{"shared_buffers = '64MB'"}, f.Timing.monitorSettings()...)); err != nil {
		return err
	}
	if err := f.startKeeper(m); err != nil {
		return err
	}
	if err := f.waitMonitor(ctx, time.Minute); err != nil {
		return err
	}
	for i, n := range f.Nodes {
		fmt.Fprintf(f.progress, "pgha: creating %s at %s\n", n.Name, n.Addr())
		if err := f.prepareMember(n); err != nil {
			return err
		}
		// The first node runs initdb and becomes the primary; the next ones are copied from
		// it (pg_basebackup) and follow it.
		if err := f.autoctlStep(ctx, n, "create", "postgres", "--pgdata", f.dataDir(n), "--pgctl", filepath.Join(f.bin, "pg_ctl"),
			"--pgport", strconv.Itoa(n.Port), "--hostname", n.Host, "--listen", n.Host, "--name", n.Name,
			"--monitor", f.monitorURI(), "--dbname", f.Database, "--skip-pg-hba", "--no-ssl"); err != nil {
			return err
		}
		if err := f.autoctlStep(ctx, n, "config", "set", "--pgdata", f.dataDir(n),
			"timeout.network_partition_timeout", strconv.Itoa(int(f.Timing.NetworkPartitionTimeout/time.Second))); err != nil {
			return err
		}
		if i == 0 {
			// pg_basebackup copies these to every standby. pg_autoctl sizes
			// shared_buffers to a quarter of RAM and keeps 8 GB of WAL: too much for
			// several servers on one test machine.
			if err := f.configure(n, []string{"shared_buffers = '128MB'", "max_connections = 300", "wal_keep_size = '512MB'"}); err != nil {
				return err
			}
		}
		if err := f.startKeeper(n); err != nil {
			return err
		}
		if i == 0 {
			if err := f.waitState(ctx, n.Name, "single", time.Minute); err != nil {
				return err
			}
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	p, err := f.WaitSync(wctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(f.progress, "pgha: %s is primary, its standby in sync\n", p.Name)
	return nil
}

// Open returns the formation recorded in dir, without starting anything.
func Open(dir string) (*Formation, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(abs, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no formation in %s (no %s)", abs, stateFile)
	}
	if err != nil {
		return nil, err
	}
	f := &Formation{Dir: abs, progress: io.Discard}
	if err := json.Unmarshal(b, f); err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(abs, stateFile), err)
	}
	if len(f.Nodes) == 0 || f.Monitor.Host == "" {
		return nil, fmt.Errorf("%s names no monitor or no nodes", filepath.Join(abs, stateFile))
	}
	if err := f.tools(); err != nil {
		return nil, err
	}
	return f, nil
}

// Ensure starts the formation in o.Dir, creating it if there is none, and waits until its
// standby is in sync.
func Ensure(ctx context.Context, o Options) (*Formation, error) {
	if _, err := os.Stat(filepath.Join(o.Dir, stateFile)); errors.Is(err, os.ErrNotExist) {
		return Create(ctx, o)
	}
	f, err := Open(o.Dir)
	if err != nil {
		return nil, err
	}
	f.SetProgress(o.Progress)
	if err := f.Start(ctx); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := f.WaitSync(wctx); err != nil {
		return nil, err
	}
	return f, nil
}

// SetProgress sends one line per step to w (nil: nowhere).
func (f *Formation) SetProgress(w io.Writer) {
	if w == nil {
		w = io.Discard
	}
	f.progress = w
}

// Available reports why a formation cannot be made on this machine (no pg_autoctl, no
// pgautofailover extension, no unprivileged account), or nil.
func Available() error { return (&Formation{}).tools() }

// tools finds pg_autoctl and the server binaries of the PostgreSQL major version that has
// the pgautofailover extension, and the account to run them as.
func (f *Formation) tools() error {
	p, err := exec.LookPath("pg_autoctl")
	if err != nil {
		matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_autoctl")
		if len(matches) == 0 {
			return fmt.Errorf("pg_autoctl not found on PATH nor in /usr/lib/postgresql/*/bin: %s", InstallHint)
		}
		p = matches[len(matches)-1]
	}
	f.autoctl = p
	controls, _ := filepath.Glob("/usr/share/postgresql/*/extension/pgautofailover.control")
	for i := len(controls) - 1; i >= 0 && f.bin == ""; i-- {
		major := filepath.Base(filepath.Dir(filepath.Dir(controls[i])))
		if bin := filepath.Join("/usr/lib/postgresql", major, "bin"); fileExists(filepath.Join(bin, "pg_ctl")) {
			f.bin = bin
		}
	}
	if len(controls) == 0 {
		return fmt.Errorf("the pgautofailover extension is not installed (no /usr/share/postgresql/*/extension/pgautofailover.control): %s", InstallHint)
	}
	if f.bin == "" {
		bin, err := pgcluster.FindBinDir()
		if err != nil {
			return err
		}
		f.bin = bin
	}
	cred, err := pgcluster.ServerAccount()
	if err != nil {
		return err
	}
	f.runAs = cred
	return nil
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func (f *Formation) save() error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(f.Dir, stateFile), append(b, '\n'), 0o644)
}

// Members returns the monitor, then the data nodes.
func (f *Formation) Members() []Member { return append([]Member{f.Monitor}, f.Nodes...) }

// Member returns the member called name.
func (f *Formation) Member(name string) (Member, error) {
	var names []string
	for _, m := range f.Members() {
		if m.Name == name {
			return m, nil
		}
		names = append(names, m.Name)
	}
	return Member{}, fmt.Errorf("no member %q in the formation (it has %s)", name, strings.Join(names, ", "))
}

func (f *Formation) memberDir(m Member) string { return filepath.Join(f.Dir, m.Name) }
func (f *Formation) dataDir(m Member) string   { return filepath.Join(f.memberDir(m), "data") }
func (f *Formation) socketDir(m Member) string { return filepath.Join(f.memberDir(m), "run") }
func (f *Formation) pidFile(m Member) string   { return filepath.Join(f.Dir, "run", m.Name+".pid") }

// LogFile is the member's pg_autoctl log (its postgres logs in DATA/log/).
func (f *Formation) LogFile(m Member) string { return filepath.Join(f.Dir, "log", m.Name+".log") }

// DSN is the multi-host connection string of database on the data nodes: a client
// connects to whichever node is primary (target_session_attrs=read-write), as
// `pg_autoctl show uri` would say, with the user and a connect timeout.
func (f *Formation) DSN(database string) string {
	hosts := make([]string, len(f.Nodes))
	for i, n := range f.Nodes {
		hosts[i] = n.Addr()
	}
	return f.dsn(hosts, database, true)
}

// NodeDSN is the connection string of database on one member only.
func (f *Formation) NodeDSN(m Member, database string) string {
	return f.dsn([]string{m.Addr()}, database, false)
}

func (f *Formation) dsn(hosts []string, database string, readWrite bool) string {
	q := url.Values{}
	q.Set("sslmode", "disable")
	// A host that does not answer costs at most this (seconds) before the next is tried.
	q.Set("connect_timeout", "2")
	if readWrite {
		q.Set("target_session_attrs", "read-write")
	}
	return "postgres://" + url.PathEscape(f.User) + "@" + strings.Join(hosts, ",") + "/" + url.PathEscape(database) + "?" + q.Encode()
}

// monitorURI is the monitor's address as the keepers take it.
func (f *Formation) monitorURI() string {
	return "postgres://autoctl_node@" + f.Monitor.Addr() + "/pg_auto_failover?sslmode=disable"
}

// MonitorDSN is the connection string of the monitor's database (pg_auto_failover).
func (f *Formation) MonitorDSN() string {
	return "postgres://autoctl_node@" + f.Monitor.Addr() + "/pg_auto_failover?sslmode=disable&connect_timeout=2"
}

// prepareMember makes the member's directory, owned by the account its programs run as.
func (f *Formation) prepareMember(m Member) error {
	d := f.memberDir(m)
	// pg_autoctl puts its pid file in /tmp when XDG_RUNTIME_DIR does not exist.
	for _, sub := range []string{"", "run", "xdg", "xdg/run"} {
		p := filepath.Join(d, sub)
		if err := os.MkdirAll(p, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", p, err)
		}
		if f.runAs != nil {
			if err := os.Chown(p, int(f.runAs.Uid), int(f.runAs.Gid)); err != nil {
				return fmt.Errorf("hand %s to the postgres account: %w", p, err)
			}
		}
	}
	return nil
}

// configure adds settings to the member's postgresql.auto.conf (they win over the files
// pg_autoctl writes) and lets every loopback address connect. It runs before the member's
// postgres first starts under its keeper.
func (f *Formation) configure(m Member, settings []string) error {
	hba := "\n# pgha: the members reach each other at loopback addresses\n" +
		"host all all 127.0.0.0/8 trust\nhost replication all 127.0.0.0/8 trust\n"
	if err := appendFile(filepath.Join(f.dataDir(m), "pg_hba.conf"), hba); err != nil {
		return err
	}
	return appendFile(filepath.Join(f.dataDir(m), "postgresql.auto.conf"), "# pgha\n"+strings.Join(settings, "\n")+"\n")
}

func appendFile(path, text string) error {
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	if _, err := fh.WriteString(text); err != nil {
		fh.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return fh.Close()
}

// env is a member's programs' whole environment.
func (f *Formation) env(m Member) []string {
	d := f.memberDir(m)
	return []string{
		"HOME=" + d,
		// pg_autoctl keeps its configuration, state and pid file under these.
		"XDG_CONFIG_HOME=" + filepath.Join(d, "xdg", "config"),
		"XDG_DATA_HOME=" + filepath.Join(d, "xdg", "data"),
		"XDG_RUNTIME_DIR=" + filepath.Join(d, "xdg", "run"),
		// pg_autoctl passes this to postgres as its socket directory (-k): the members
		// share a port, so the default directory would have their sockets collide.
		"PG_REGRESS_SOCK_DIR=" + f.socketDir(m),
		"PGHOST=" + f.socketDir(m),
		"PATH=" + f.bin + ":/usr/bin:/bin",
		// initdb takes the encoding from the locale: C alone would give SQL_ASCII.
		"LC_ALL=C.UTF-8",
	}
}

func (f *Formation) command(ctx context.Context, m Member, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, f.autoctl, args...)
	cmd.Env = f.env(m)
	cmd.Dir = f.memberDir(m)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: f.runAs}
	return cmd
}

// autoctlStep runs one pg_autoctl command to its end, its output appended to the member's
// log.
func (f *Formation) autoctlStep(ctx context.Context, m Member, args ...string) error {
	logPath := f.LogFile(m)
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer lf.Close()
	fmt.Fprintf(lf, "=== pgha: pg_autoctl %s\n", strings.Join(args, " "))
	cmd := f.command(ctx, m, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Run(); err != nil {
		err = fmt.Errorf("%s: pg_autoctl %s %s: %w\nlast lines of %s:\n%s", m.Name, args[0], args[1], err, logPath, tailFile(logPath, 15))
		if bindFailed(logPath, filepath.Join(f.dataDir(m), "startup.log"), filepath.Join(f.dataDir(m), "log", "*")) {
			return fmt.Errorf("%s at %s: %w: %w", m.Name, m.Addr(), errBind, err)
		}
		return err
	}
	return nil
}

// startKeeper starts `pg_autoctl run` for the member unless it runs: the keeper starts
// the member's postgres and follows the monitor's orders. It runs in a session of its own,
// so that it outlives the command that started it.
func (f *Formation) startKeeper(m Member) error {
	if _, ok := f.KeeperPID(m); ok {
		return nil
	}
	// pg_autoctl refuses to start while its pid file names a process that exists, and a
	// killed keeper is a zombie until its parent reaps it (which an init that does not
	// reap orphans never does): a file whose process has ended is removed first.
	own := filepath.Join(f.memberDir(m), "xdg", "run", "pg_autoctl", strings.TrimPrefix(f.dataDir(m), "/"), "pg_autoctl.pid")
	if pid := readPID(own); pid > 0 && !alive(pid) {
		if err := os.Remove(own); err != nil {
			return fmt.Errorf("remove the stale pid file of %s: %w", m.Name, err)
		}
	}
	lf, err := os.OpenFile(f.LogFile(m), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer lf.Close()
	fmt.Fprintf(lf, "=== pgha: pg_autoctl run (%s)\n", time.Now().Format(time.RFC3339))
	cmd := f.command(context.Background(), m, "run", "--pgdata", f.dataDir(m))
	cmd.SysProcAttr.Setsid = true
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the keeper of %s: %w", m.Name, err)
	}
	// Reaped here if it ends while this process lives (how it ended is kept for the check
	// that finds it gone); otherwise its new parent does.
	pid := cmd.Process.Pid
	go func() { keeperExits.record(pid, cmd.Wait()) }()
	if err := os.WriteFile(f.pidFile(m), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(f.progress, "pgha: %s: keeper started (pid %d)\n", m.Name, cmd.Process.Pid)
	return nil
}

// KeeperPID returns the pid of the member's pg_autoctl keeper, if it runs.
func (f *Formation) KeeperPID(m Member) (int, bool) {
	pid := readPID(f.pidFile(m))
	return pid, f.runs(pid, "pg_autoctl", m)
}

// PostmasterPID returns the pid of the member's postgres, if it runs.
func (f *Formation) PostmasterPID(m Member) (int, bool) {
	pid := readPID(filepath.Join(f.dataDir(m), "postmaster.pid"))
	return pid, f.runs(pid, "postgres", m)
}

// runs reports whether pid is alive and is the member's program: its name, and its data
// directory on its command line. A pid file outlives its process, and the pid may have
// gone to another process since, one that must not be signalled.
func (f *Formation) runs(pid int, comm string, m Member) bool {
	s, ok := readStat(pid)
	if !ok || !alive(pid) || !strings.HasPrefix(s.comm, comm) {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && slices.Contains(strings.Split(string(cmdline), "\x00"), f.dataDir(m))
}

// Start starts every member that does not run: the monitor first, then the data nodes,
// whose keepers take up the roles the monitor recorded for them.
func (f *Formation) Start(ctx context.Context) error {
	if err := f.startKeeper(f.Monitor); err != nil {
		return err
	}
	if err := f.waitMonitor(ctx, time.Minute); err != nil {
		return err
	}
	for _, n := range f.Nodes {
		if err := f.startKeeper(n); err != nil {
			return err
		}
	}
	return nil
}

// StartNode starts a data node's keeper again (after Kill, or a stop): it rejoins the
// formation, as a standby if another node was promoted meanwhile.
func (f *Formation) StartNode(ctx context.Context, name string) error {
	m, err := f.Member(name)
	if err != nil {
		return err
	}
	if m.Name == MonitorName {
		if err := f.startKeeper(m); err != nil {
			return err
		}
		return f.waitMonitor(ctx, time.Minute)
	}
	return f.startKeeper(m)
}

// Kill kills a member whole with SIGKILL, as if its host died: its keeper, every process
// below it (its postgres and the postgres children), and its postgres even if that was
// orphaned. It returns the pids it killed once they are gone.
func (f *Formation) Kill(ctx context.Context, name string) ([]int, error) {
	m, err := f.Member(name)
	if err != nil {
		return nil, err
	}
	keeper, _ := f.KeeperPID(m)
	pm, _ := f.PostmasterPID(m)
	if keeper == 0 && pm == 0 {
		return nil, fmt.Errorf("%s is not running", name)
	}
	root := keeper
	var extra []int
	if root == 0 {
		root = pm
	} else if pm != 0 {
		extra = append(extra, pm)
	}
	pids, err := killTree(ctx, root, extra...)
	if err != nil {
		return pids, fmt.Errorf("kill %s: %w", name, err)
	}
	// Its postgres children put themselves in sessions of their own and outlive a dead
	// postmaster for a moment; those that were not in the tree are found by the pid file.
	if pm2, ok := f.PostmasterPID(m); ok {
		more, err := killTree(ctx, pm2)
		pids = append(pids, more...)
		if err != nil {
			return pids, fmt.Errorf("kill %s: %w", name, err)
		}
	}
	return pids, nil
}

// Stop stops every member: the monitor first, so that it orders no failover while the
// nodes stop, then the nodes. Each keeper gets SIGTERM (it stops its postgres with a fast
// shutdown) and 30 s to end, then is killed.
func (f *Formation) Stop(ctx context.Context) error {
	var errs []error
	for _, m := range f.Members() {
		if err := f.stopMember(ctx, m); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (f *Formation) stopMember(ctx context.Context, m Member) error {
	var pids []int
	if pid, ok := f.KeeperPID(m); ok {
		pids = append(pids, pid)
		_ = syscall.Kill(pid, syscall.SIGTERM)
	} else if pm, ok := f.PostmasterPID(m); ok {
		// A postgres whose keeper died: SIGINT is PostgreSQL's fast shutdown.
		pids = append(pids, pm)
		_ = syscall.Kill(pm, syscall.SIGINT)
	}
	if len(pids) == 0 {
		return nil
	}
	if pm, ok := f.PostmasterPID(m); ok && pm != pids[0] {
		pids = append(pids, pm)
	}
	if err := waitGone(ctx, pids, 30*time.Second); err == nil {
		fmt.Fprintf(f.progress, "pgha: %s stopped\n", m.Name)
		return nil
	}
	if _, err := killTree(ctx, pids[0], pids[1:]...); err != nil {
		return fmt.Errorf("stop %s: %w", m.Name, err)
	}
	fmt.Fprintf(f.progress, "pgha: %s killed (it did not stop in 30s)\n", m.Name)
	return nil
}

// Remove stops the formation and deletes what it made under Dir (Dir itself too when
// nothing else is left in it).
func (f *Formation) Remove(ctx context.Context) error {
	if err := f.Stop(ctx); err != nil {
		return err
	}
	if err := f.clear(); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(f.Dir, stateFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	_ = os.Remove(f.Dir) // only if empty
	return nil
}

// clear deletes the members' directories, logs and pid files.
func (f *Formation) clear() error {
	for _, m := range f.Members() {
		if err := os.RemoveAll(f.memberDir(m)); err != nil {
			return err
		}
	}
	for _, d := range []string{"log", "run"} {
		if err := os.RemoveAll(filepath.Join(f.Dir, d)); err != nil {
			return err
		}
	}
	return nil
}
