// Package e2e runs a whole Pollux instance as real processes — rhd, stagerd, jobmanagerd,
// schedulerd and disk servers, built from this checkout — against a database of its own,
// and drives it with the client commands exactly as a user would. The end-to-end tests, the
// demo and the request benchmark stand on it.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
)

// Build compiles every command and daemon into dir.
func Build(root, dir string) error {
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/...", "./daemons/...")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build binaries: %w\n%s", err, out)
	}
	return nil
}

// Options shapes an instance.
type Options struct {
	// Bin holds the built binaries.
	Bin string
	// DSN is the instance's database, migrated with the logic installed.
	DSN string
	// Dir holds logs, the tokens file and the disk servers' data.
	Dir string
	// RHDs, Stagers, JobManagers, Schedulers and DiskServers count the processes of each
	// daemon (default 1, 1, 1, 1, 2; a negative count starts none).
	RHDs, Stagers, JobManagers, Schedulers, DiskServers int
	// Monitors counts the web monitors (monitord1 ...; default none: most tests do not
	// look at pages). Proc.Addr of one is where its pages are.
	Monitors int
	// RHDListen are the rhd's --listen addresses, the i-th rhd's i-th (default port 0 on
	// 127.0.0.1): a load balancer's configuration names them, and a restarted rhd keeps
	// its address.
	RHDListen []string
	// ExtraArgs are added to a daemon's command line, by binary name. They may not raise
	// --log-level above info: the harness learns where a daemon listens from its info
	// lines.
	ExtraArgs map[string][]string
	// Hosts places daemons on hosts, by daemon name (rhd1, stagerd1, disk2 ...): such a
	// daemon runs there and its listeners bind the host's address, which the test (and the
	// other daemons) must reach. A daemon without a host runs in the test's own network
	// and listens on 127.0.0.1. DSN must then reach the database from every host, over
	// TCP (see testsuites/netns).
	Hosts map[string]Host
	// AsDSNUser runs every daemon as DSN's user. By default each runs as its database
	// role (the db_role table of DSN's database; the server must let those roles in
	// without a password, as the tests' clusters do), so that every end-to-end test
	// exercises the grants.
	AsDSNUser bool
}

// Host is a machine a daemon may run on: a host of a testsuites/netns network.
type Host interface {
	// Address is where its listeners bind.
	Address() netip.Addr
	// Start starts a command there.
	Start(cmd *exec.Cmd) error
}

// Proc is one daemon process. Every listener it has binds port 0, so that the kernel
// picks a free port at the bind; the harness learns the addresses from the process's
// log, again at each restart.
type Proc struct {
	Name string
	bin  string
	args []string
	log  string
	host Host // nil: the test's own network

	mu    sync.Mutex
	addr  string // rhd: API address; diskserverd: mover address
	admin string
	cmd   *exec.Cmd
	done  chan struct{}
	watch *logWatch
}

// Addr is the address of rhd's API or of a disk server's mover (host:port), as the
// process logged it at its last start.
func (p *Proc) Addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

// Admin is the address of the admin listener (host:port) of the process's last start.
func (p *Proc) Admin() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.admin
}

// running returns the process of the last start and a channel closed when it has exited.
func (p *Proc) running() (*exec.Cmd, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd, p.done
}

// Instance is a running Pollux.
type Instance struct {
	opts  Options
	Token string
	User  string

	// dsns are the daemons' DSNs by binary name (rhd, diskserverd ...).
	dsns map[string]string

	mu    sync.Mutex
	procs []*Proc // grows with AddDiskServer
}

// list returns the daemons in the order they were added.
func (in *Instance) list() []*Proc {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Clone(in.procs)
}

// Start launches the instance and waits until every daemon is ready.
func Start(ctx context.Context, o Options) (*Instance, error) {
	def := func(v *int, d int) {
		switch {
		case *v == 0:
			*v = d
		case *v < 0:
			*v = 0
		}
	}
	def(&o.RHDs, 1)
	def(&o.Stagers, 1)
	def(&o.JobManagers, 1)
	def(&o.Schedulers, 1)
	def(&o.DiskServers, 2)
	for bin, args := range o.ExtraArgs {
		for i, a := range args {
			level, set := strings.CutPrefix(a, "--log-level=")
			if a == "--log-level" && i+1 < len(args) {
				level, set = args[i+1], true
			}
			if set && level != "debug" && level != "info" {
				return nil, fmt.Errorf("e2e: ExtraArgs[%q] sets --log-level %s: the harness learns where the daemons listen from their info lines", bin, level)
			}
		}
	}
	in := &Instance{opts: o, Token: "e2e-token-0123456789abcdef", User: "alice"}
	dsns, err := daemonDSNs(ctx, o)
	if err != nil {
		return nil, err
	}
	in.dsns = dsns
	if err := os.MkdirAll(filepath.Join(o.Dir, "log"), 0o755); err != nil {
		return nil, err
	}
	tokens := filepath.Join(o.Dir, "tokens")
	if err := os.WriteFile(tokens, []byte(in.Token+" "+in.User+"\nbob-token-0123456789 bob\n"), 0o600); err != nil {
		return nil, err
	}
	for i := range o.RHDs {
		listen := anyPort
		if i < len(o.RHDListen) {
			listen = o.RHDListen[i]
		}
		in.add(fmt.Sprintf("rhd%d", i+1), "rhd", "--listen", listen, "--tokens-file", tokens)
	}
	for i := range o.Stagers {
		in.add(fmt.Sprintf("stagerd%d", i+1), "stagerd")
	}
	for i := range o.JobManagers {
		in.add(fmt.Sprintf("jobmanagerd%d", i+1), "jobmanagerd")
	}
	for i := range o.Schedulers {
		in.add(fmt.Sprintf("schedulerd%d", i+1), "schedulerd")
	}
	for i := range o.DiskServers {
		name := fmt.Sprintf("disk%d", i+1)
		in.add(name, "diskserverd", "--name", name, "--listen", anyPort, "--data-dir", filepath.Join(o.Dir, name))
	}
	for i := range max(o.Monitors, 0) {
		in.add(fmt.Sprintf("monitord%d", i+1), "monitord", "--listen", anyPort)
	}
	if err := in.launch(ctx, in.list()); err != nil {
		return nil, err
	}
	return in, nil
}

// daemonDSNs returns the DSN each daemon binary connects with: its database role's, unless
// o.AsDSNUser.
func daemonDSNs(ctx context.Context, o Options) (map[string]string, error) {
	out := map[string]string{}
	if o.AsDSNUser {
		for _, kind := range model.DaemonRoles {
			out[kind] = o.DSN
		}
		return out, nil
	}
	db, err := pg.Open(ctx, pg.Config{DSN: o.DSN, MaxConns: 1})
	if err != nil {
		return nil, fmt.Errorf("e2e: open the instance's database: %w", err)
	}
	defer db.Close()
	var roles []model.DbRoleListRow
	if err := db.Do(ctx, "list database roles", func(q pg.Querier) (err error) {
		roles, err = model.DbRoleList(ctx, q)
		return err
	}); err != nil {
		return nil, fmt.Errorf("e2e: the daemons' database roles: %w", err)
	}
	for _, r := range roles {
		if !slices.Contains(model.DaemonRoles, r.Kind) {
			continue
		}
		if out[r.Kind], err = pg.WithUser(o.DSN, r.Name); err != nil {
			return nil, err
		}
	}
	for _, kind := range model.DaemonRoles {
		if out[kind] == "" {
			return nil, fmt.Errorf("e2e: the database has no role for %s (migrated before roles?)", kind)
		}
	}
	return out, nil
}

// anyPort has the kernel choose a free port when the daemon binds. A port chosen by the
// harness beforehand (a listener opened and closed) may be taken by another process
// before the daemon binds it.
const anyPort = "127.0.0.1:0"

// AddDiskServer starts one more disk server and waits until it is ready.
func (in *Instance) AddDiskServer(ctx context.Context, name string) error {
	p := in.add(name, "diskserverd", "--name", name, "--listen", anyPort, "--data-dir", filepath.Join(in.opts.Dir, name))
	return in.launch(ctx, []*Proc{p})
}

func (in *Instance) launch(ctx context.Context, procs []*Proc) error {
	for _, p := range procs {
		if err := in.start(p); err != nil {
			in.Stop()
			return err
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, p := range procs {
		if err := waitReady(ctx, p, deadline); err != nil {
			in.Stop()
			return fmt.Errorf("%s not ready: %w\n%s", p.Name, err, tail(p.log, 30))
		}
	}
	return nil
}

func (in *Instance) add(name, bin string, args ...string) *Proc {
	args = append(args, "--admin-addr", anyPort, "--log-format", "json", "--host", name, "--drain-timeout", "10s")
	args = append(args, in.opts.ExtraArgs[bin]...)
	host := in.opts.Hosts[name]
	if host != nil {
		// Any free port of the host's own address: the kernel picks it at the bind, in the
		// host's network.
		for i, a := range args {
			if a == anyPort {
				args[i] = net.JoinHostPort(host.Address().String(), "0")
			}
		}
	}
	p := &Proc{Name: name, bin: bin, args: args, log: filepath.Join(in.opts.Dir, "log", name+".log"), host: host}
	in.mu.Lock()
	in.procs = append(in.procs, p)
	in.mu.Unlock()
	return p
}

func (in *Instance) start(p *Proc) error {
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	watch := newLogWatch(f)
	cmd := exec.Command(filepath.Join(in.opts.Bin, p.bin), p.args...)
	cmd.Env = append(os.Environ(), "POLLUX_DATABASE_URL="+in.dsns[p.bin])
	cmd.Stdout, cmd.Stderr = watch, watch
	start := cmd.Start
	if p.host != nil {
		start = func() error { return p.host.Start(cmd) }
	}
	if err := start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.done, p.watch = cmd, done, watch
	p.mu.Unlock()
	// Wait returns once the process has exited and its output is all in the watch.
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	return nil
}

// Pid is the process id of the daemon's current run (0 before its first start). A daemon
// placed on a host runs inside that host's namespace, still a child of the test.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Procs returns the daemons, by name.
func (in *Instance) Procs() map[string]*Proc {
	m := map[string]*Proc{}
	for _, p := range in.list() {
		m[p.Name] = p
	}
	return m
}

// StageHost is the STAGE_HOST naming every rhd (a comma list), at their current
// addresses.
func (in *Instance) StageHost() string {
	var hosts []string
	for _, p := range in.list() {
		if p.bin == "rhd" {
			hosts = append(hosts, p.Addr())
		}
	}
	return strings.Join(hosts, ",")
}

// DSN is the instance's database.
func (in *Instance) DSN() string { return in.opts.DSN }

// Env is the client environment for this instance.
func (in *Instance) Env() []string {
	return append(os.Environ(), "STAGE_HOST="+in.StageHost(), "STAGE_SVCCLASS=default", "POLLUX_TOKEN="+in.Token)
}

// Result is what a client command did.
type Result struct {
	Code           int
	Stdout, Stderr string
	Took           time.Duration
}

// Run runs a client command (stager_put, pollux, ...) against the instance.
func (in *Instance) Run(ctx context.Context, env []string, name string, args ...string) Result {
	return in.Go(ctx, env, name, args...).Wait()
}

// Running is a client command started with Go.
type Running struct {
	stderr stream
	result chan Result
}

// Go starts a client command against the instance and returns at once.
func (in *Instance) Go(ctx context.Context, env []string, name string, args ...string) *Running {
	r := &Running{stderr: stream{news: make(chan struct{})}, result: make(chan Result, 1)}
	cmd := exec.CommandContext(ctx, filepath.Join(in.opts.Bin, name), args...)
	cmd.Env = append(in.Env(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &r.stderr
	start := time.Now()
	go func() {
		err := cmd.Run()
		res := Result{Stdout: out.String(), Stderr: r.stderr.String(), Took: time.Since(start)}
		var exit *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &exit):
			res.Code = exit.ExitCode()
		default:
			res.Code = -1
			res.Stderr += err.Error()
		}
		r.stderr.end()
		r.result <- res
	}()
	return r
}

// Wait waits for the command to end and returns what it did.
func (r *Running) Wait() Result {
	res := <-r.result
	r.result <- res // for the next call
	return res
}

// WaitStderr waits until the command has written text to its stderr. It fails if the
// command ends first or ctx ends.
func (r *Running) WaitStderr(ctx context.Context, text string) error {
	for {
		said, news, ended := r.stderr.state()
		switch {
		case strings.Contains(said, text):
			return nil
		case ended:
			return fmt.Errorf("the command ended without writing %q to stderr:\n%s", text, said)
		}
		select {
		case <-news:
		case <-ctx.Done():
			return fmt.Errorf("no %q on stderr: %w:\n%s", text, ctx.Err(), said)
		}
	}
}

// stream is a command's output, readable while the command writes it.
type stream struct {
	mu    sync.Mutex
	b     bytes.Buffer
	news  chan struct{} // closed, and replaced, at every write and at the end
	ended bool
}

// Write implements io.Writer.
func (s *stream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.news)
	s.news = make(chan struct{})
	return s.b.Write(p)
}

func (s *stream) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended = true
	close(s.news)
	s.news = make(chan struct{})
}

func (s *stream) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *stream) state() (text string, news <-chan struct{}, ended bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String(), s.news, s.ended
}

// Kill sends sig to a daemon and waits for it to exit.
func (in *Instance) Kill(name string, sig syscall.Signal) {
	p := in.Procs()[name]
	if p == nil {
		return
	}
	cmd, done := p.running()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Signal sends sig to a daemon and returns at once; Exited says when it has gone.
func (in *Instance) Signal(name string, sig syscall.Signal) error {
	p := in.Procs()[name]
	if p == nil {
		return fmt.Errorf("no daemon %s", name)
	}
	cmd, _ := p.running()
	if cmd == nil || cmd.Process == nil {
		return fmt.Errorf("%s is not running", name)
	}
	return cmd.Process.Signal(sig)
}

// Log returns the whole log of a daemon (every start).
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// Exited is closed once the process of the daemon's last start has exited (nil if it was
// never started); ExitCode then says how.
func (p *Proc) Exited() <-chan struct{} {
	_, done := p.running()
	return done
}

// ExitCode is how the process of the last start exited: -1 while it runs or when a signal
// ended it.
func (p *Proc) ExitCode() int {
	cmd, done := p.running()
	if cmd == nil {
		return -1
	}
	select {
	case <-done:
		return cmd.ProcessState.ExitCode()
	default:
		return -1
	}
}

// Restart starts a stopped daemon again with the same command line and waits until it is
// ready. Its listeners get new ports: Addr and StageHost say the new ones.
func (in *Instance) Restart(ctx context.Context, name string) error {
	p := in.Procs()[name]
	if p == nil {
		return fmt.Errorf("no daemon %s", name)
	}
	if err := in.start(p); err != nil {
		return err
	}
	if err := waitReady(ctx, p, time.Now().Add(60*time.Second)); err != nil {
		return fmt.Errorf("%s not ready after restart: %w\n%s", name, err, tail(p.log, 30))
	}
	return nil
}

// Logs returns the last lines of every daemon's log (for a failing test).
func (in *Instance) Logs(lines int) string {
	var b strings.Builder
	for _, p := range in.list() {
		fmt.Fprintf(&b, "==> %s\n%s\n", p.Name, tail(p.log, lines))
	}
	return b.String()
}

// Stop drains every daemon (SIGTERM), killing those that do not exit in time.
func (in *Instance) Stop() {
	var wg sync.WaitGroup
	for _, p := range in.list() {
		if cmd, _ := p.running(); cmd == nil {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); in.Kill(p.Name, syscall.SIGTERM) }()
	}
	wg.Wait()
}

// announcements name, by binary, the log line and field that say where a daemon's own
// listener is (besides the admin listener every daemon announces).
var announcements = map[string]struct{ msg, field string }{
	"rhd":         {"request handler listening", "addr"},
	"diskserverd": {"disk server ready", "url"},
	"monitord":    {"monitor listening", "url"},
}

// startedMsg is what the framework logs once every service of a daemon has started; the
// lines that announce listeners come before it.
const startedMsg = "daemon started"

// waitReady waits until the process of p's last start has logged its listeners and that
// it started, then until its /readyz answers 200.
func waitReady(ctx context.Context, p *Proc, deadline time.Time) error {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	p.mu.Lock()
	watch, done := p.watch, p.done
	p.mu.Unlock()
	field := func(msg, key string) (string, error) {
		m, err := watch.wait(ctx, done, msg)
		if err != nil {
			return "", err
		}
		v, _ := m[key].(string)
		if v == "" {
			return "", fmt.Errorf("%q logged without %s", msg, key)
		}
		return strings.TrimPrefix(v, "http://"), nil
	}
	admin, err := field("admin listener up", "url")
	if err != nil {
		return err
	}
	var addr string
	if a, ok := announcements[p.bin]; ok {
		if addr, err = field(a.msg, a.field); err != nil {
			return err
		}
	}
	// Every service is started, rhd's listener and the movers serve.
	if _, err := watch.wait(ctx, done, startedMsg); err != nil {
		return err
	}
	p.mu.Lock()
	p.admin, p.addr = admin, addr
	p.mu.Unlock()
	last := errors.New("no answer")
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = errors.New(resp.Status)
		} else {
			last = err
		}
		select {
		case <-done:
			return errors.New("exited")
		case <-ctx.Done():
			return fmt.Errorf("readyz: %w (last answer: %v)", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// logWatch is a daemon process's stdout and stderr: it appends what the process writes
// to its log file and, until the daemon has started, keeps the first JSON line of each
// message, so that the harness can wait for the lines that say where the daemon listens.
type logWatch struct {
	file *os.File

	mu      sync.Mutex
	partial []byte                    // the start of a line not ended yet
	first   map[string]map[string]any // by msg
	news    chan struct{}             // closed, and replaced, whenever a line ends
}

func newLogWatch(f *os.File) *logWatch {
	return &logWatch{file: f, first: map[string]map[string]any{}, news: make(chan struct{})}
}

// Write implements io.Writer.
func (w *logWatch) Write(b []byte) (int, error) {
	n, err := w.file.Write(b)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.first[startedMsg] != nil {
		// Everything waited for comes before: decoding the rest would only cost CPU
		// that a benchmark measures.
		return n, err
	}
	w.partial = append(w.partial, b...)
	ended := false
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		var m map[string]any
		// Lines that are not JSON (a signal's notice) are in the file only.
		if json.Unmarshal(w.partial[:i], &m) == nil {
			if msg, ok := m["msg"].(string); ok && w.first[msg] == nil {
				w.first[msg] = m
			}
		}
		w.partial = w.partial[i+1:]
		ended = true
	}
	if ended {
		close(w.news)
		w.news = make(chan struct{})
	}
	return n, err
}

// wait returns the first line logged with message msg, waiting for it until ctx ends or
// the process has exited (exited is closed once all its output is in).
func (w *logWatch) wait(ctx context.Context, exited <-chan struct{}, msg string) (map[string]any, error) {
	for {
		w.mu.Lock()
		m, news := w.first[msg], w.news
		w.mu.Unlock()
		if m != nil {
			return m, nil
		}
		select {
		case <-news:
		case <-exited:
			w.mu.Lock()
			m = w.first[msg]
			w.mu.Unlock()
			if m != nil {
				return m, nil
			}
			return nil, fmt.Errorf("exited without logging %q", msg)
		case <-ctx.Done():
			return nil, fmt.Errorf("no %q in the log: %w", msg, ctx.Err())
		}
	}
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
