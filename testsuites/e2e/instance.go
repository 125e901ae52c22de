// Package e2e runs a whole Pollux instance as real processes — rhd, stagerd, jobmanagerd,
// schedulerd and disk servers, built from this checkout — against a database of its own,
// and drives it with the client commands exactly as a user would. The end-to-end tests, the
// demo and the request benchmark stand on it.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
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
	// ExtraArgs are added to a daemon's command line, by binary name.
	ExtraArgs map[string][]string
}

// Proc is one daemon process.
type Proc struct {
	Name  string
	Addr  string // rhd: API address; diskserverd: mover address
	Admin string
	cmd   *exec.Cmd
	log   string
	done  chan struct{}
}

// Instance is a running Pollux.
type Instance struct {
	opts  Options
	Token string
	User  string
	procs []*Proc
	mu    sync.Mutex
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
	in := &Instance{opts: o, Token: "e2e-token-0123456789abcdef", User: "alice"}
	if err := os.MkdirAll(filepath.Join(o.Dir, "log"), 0o755); err != nil {
		return nil, err
	}
	tokens := filepath.Join(o.Dir, "tokens")
	if err := os.WriteFile(tokens, []byte(in.Token+" "+in.User+"\nbob-token-0123456789 bob\n"), 0o600); err != nil {
		return nil, err
	}
	for i := range o.RHDs {
		addr := freeAddr()
		in.add(fmt.Sprintf("rhd%d", i+1), "rhd", addr, "--listen", addr, "--tokens-file", tokens)
	}
	for i := range o.Stagers {
		in.add(fmt.Sprintf("stagerd%d", i+1), "stagerd", "")
	}
	for i := range o.JobManagers {
		in.add(fmt.Sprintf("jobmanagerd%d", i+1), "jobmanagerd", "")
	}
	for i := range o.Schedulers {
		in.add(fmt.Sprintf("schedulerd%d", i+1), "schedulerd", "")
	}
	for i := range o.DiskServers {
		addr := freeAddr()
		name := fmt.Sprintf("disk%d", i+1)
		in.add(name, "diskserverd", addr, "--name", name, "--listen", addr,
			"--data-dir", filepath.Join(o.Dir, name))
	}
	if err := in.launch(ctx, in.procs); err != nil {
		return nil, err
	}
	return in, nil
}

// AddDiskServer starts one more disk server and waits until it is ready.
func (in *Instance) AddDiskServer(ctx context.Context, name string) error {
	addr := freeAddr()
	in.add(name, "diskserverd", addr, "--name", name, "--listen", addr, "--data-dir", filepath.Join(in.opts.Dir, name))
	return in.launch(ctx, in.procs[len(in.procs)-1:])
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

func (in *Instance) add(name, bin, addr string, args ...string) {
	admin := freeAddr()
	args = append(args, "--admin-addr", admin, "--log-format", "json", "--host", name, "--drain-timeout", "10s")
	args = append(args, in.opts.ExtraArgs[bin]...)
	in.procs = append(in.procs, &Proc{Name: name, Addr: addr, Admin: admin,
		cmd: exec.Command(filepath.Join(in.opts.Bin, bin), args...), log: filepath.Join(in.opts.Dir, "log", name+".log")})
}

func (in *Instance) start(p *Proc) error {
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.cmd.Path, p.cmd.Args[1:]...)
	cmd.Env = append(os.Environ(), "POLLUX_DATABASE_URL="+in.opts.DSN)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	p.cmd = cmd
	p.done = make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	return nil
}

// Procs returns the daemons, by name.
func (in *Instance) Procs() map[string]*Proc {
	m := map[string]*Proc{}
	for _, p := range in.procs {
		m[p.Name] = p
	}
	return m
}

// StageHost is the STAGE_HOST naming every rhd (a comma list).
func (in *Instance) StageHost() string {
	var hosts []string
	for _, p := range in.procs {
		if strings.HasPrefix(p.Name, "rhd") {
			hosts = append(hosts, p.Addr)
		}
	}
	return strings.Join(hosts, ",")
}

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
	cmd := exec.CommandContext(ctx, filepath.Join(in.opts.Bin, name), args...)
	cmd.Env = append(in.Env(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err := cmd.Run()
	r := Result{Stdout: out.String(), Stderr: errOut.String(), Took: time.Since(start)}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		r.Code = exit.ExitCode()
	default:
		r.Code = -1
		r.Stderr += err.Error()
	}
	return r
}

// Kill sends sig to a daemon and waits for it to exit.
func (in *Instance) Kill(name string, sig syscall.Signal) {
	p := in.Procs()[name]
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Restart starts a stopped daemon again with the same command line.
func (in *Instance) Restart(ctx context.Context, name string) error {
	p := in.Procs()[name]
	if err := in.start(p); err != nil {
		return err
	}
	return waitReady(ctx, p, time.Now().Add(60*time.Second))
}

// Logs returns the last lines of every daemon's log (for a failing test).
func (in *Instance) Logs(lines int) string {
	var b strings.Builder
	for _, p := range in.procs {
		fmt.Fprintf(&b, "==> %s\n%s\n", p.Name, tail(p.log, lines))
	}
	return b.String()
}

// Stop drains every daemon (SIGTERM), killing those that do not exit in time.
func (in *Instance) Stop() {
	var wg sync.WaitGroup
	for _, p := range in.procs {
		if p.done == nil {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); in.Kill(p.Name, syscall.SIGTERM) }()
	}
	wg.Wait()
}

func waitReady(ctx context.Context, p *Proc, deadline time.Time) error {
	last := errors.New("no answer")
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return errors.New("exited")
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.Admin+"/readyz", nil)
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
		time.Sleep(50 * time.Millisecond)
	}
	return last
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
