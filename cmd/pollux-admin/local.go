package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
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

// process is one daemon of the local instance.
type process struct {
	name  string
	bin   string
	args  []string
	admin int // port of its admin listener
}

// localLayout describes the local instance under dir (./var): one of each daemon and two
// disk servers, on consecutive ports from base.
func localLayout(dir string, base int) []process {
	admin := func(i int) int { return base + 180 + i }
	tokens := filepath.Join(dir, "tokens")
	ps := []process{
		{"rhd", "rhd", []string{"--listen", fmt.Sprintf("127.0.0.1:%d", base), "--tokens-file", tokens}, admin(0)},
		{"stagerd", "stagerd", nil, admin(1)},
		{"jobmanagerd", "jobmanagerd", nil, admin(2)},
		{"schedulerd", "schedulerd", nil, admin(3)},
	}
	for i := 1; i <= 2; i++ {
		ps = append(ps, process{fmt.Sprintf("disk%d", i), "diskserverd", []string{
			"--name", fmt.Sprintf("disk%d", i), "--listen", fmt.Sprintf("127.0.0.1:%d", base+100+i),
			"--data-dir", filepath.Join(dir, fmt.Sprintf("disk%d", i)),
		}, admin(3 + i)})
	}
	// The web monitor: operators open it in a browser (monitorURL).
	ps = append(ps, process{"monitord", "monitord", []string{"--listen", fmt.Sprintf("127.0.0.1:%d", monitorPort(base))}, admin(6)})
	for i := range ps {
		ps[i].args = append(ps[i].args, "--admin-addr", fmt.Sprintf("127.0.0.1:%d", ps[i].admin), "--log-format", "json", "--host", ps[i].name)
	}
	return ps
}

// monitorPort is where the local instance's monitord serves its pages.
func monitorPort(base int) int { return base + 90 }

// cmdLocal starts and stops a complete local instance (make run, make stop).
func cmdLocal(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("local", false)
	dir := fs.String("dir", "var", "Directory of the local instance (cluster, logs, data, binaries).")
	base := fs.Int("base-port", 9000, "rhd listens here; monitord on base+90, disk servers on base+101, base+102; admin listeners from base+180.")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || !slices.Contains([]string{"start", "stop", "status", "demo"}, pos[0]) {
		return usageError{"say start, stop, status or demo"}
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	ps := localLayout(abs, *base)
	switch pos[0] {
	case "stop":
		return stopLocal(abs, ps, c)
	case "status":
		return statusLocal(abs, ps, c)
	case "demo":
		return demoLocal(ctx, abs, *base, c)
	}
	return startLocal(ctx, abs, *base, ps, c)
}

func startLocal(ctx context.Context, dir string, base int, ps []process, c *cli) error {
	cl, err := pgcluster.Ensure(ctx, filepath.Join(dir, "pg"), c.stderr)
	if err != nil {
		return err
	}
	if err := ensureDatabase(ctx, cl, "pollux"); err != nil {
		return err
	}
	dsn := cl.DSN("pollux")
	mc := &cli{environ: []string{"POLLUX_DATABASE_URL=" + dsn}, stdout: c.stdout, stderr: c.stderr}
	if err := cmdMigrate(ctx, mc, nil); err != nil {
		return err
	}
	// Each daemon logs in as its own role, with a password: a daemon's credential then
	// reaches only the functions its daemon calls (docs/security.md).
	daemonDSNs, err := localDaemonDSNs(ctx, cl, dsn, dir)
	if err != nil {
		return err
	}
	token, err := ensureToken(filepath.Join(dir, "tokens"))
	if err != nil {
		return err
	}
	for _, d := range []string{"log", "run", "disk1", "disk2"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	for _, p := range ps {
		if pid, alive := running(dir, p.name); alive {
			fmt.Fprintf(c.stdout, "%-12s already running (pid %d)\n", p.name, pid)
			continue
		}
		if daemonDSNs[p.bin] == "" {
			return fmt.Errorf("%s: no database role for %s", p.name, p.bin)
		}
		if err := startProcess(dir, p, daemonDSNs[p.bin]); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(90 * time.Second)
	for _, p := range ps {
		if err := waitReady(p, deadline); err != nil {
			return fmt.Errorf("%s did not become ready: %w (see %s)", p.name, err, filepath.Join(dir, "log", p.name+".log"))
		}
		pid, _ := running(dir, p.name)
		fmt.Fprintf(c.stdout, "%-12s ready   pid %-7d admin http://127.0.0.1:%d  log %s\n", p.name, pid, p.admin, filepath.Join(dir, "log", p.name+".log"))
	}
	fmt.Fprintf(c.stdout, `
Pollux is running, on plain HTTP on loopback only: tokens and data do not leave this
machine. An instance other machines reach serves TLS (rhd and diskserverd
--tls-cert-file/--tls-key-file; docs/security.md). Each daemon logs in to the
database as its own role with a password (%s); pollux-admin uses the superuser.
For the clients:

  export PATH=%s:$PATH
  export STAGE_HOST=127.0.0.1:%d
  export STAGE_SVCCLASS=default
  export POLLUX_TOKEN=%s
  export POLLUX_DATABASE_URL='%s'

  pollux cp ./somefile /pollux/demo/somefile     # put, upload, close
  pollux cp /pollux/demo/somefile ./copy         # get, download
  stager_qry -M /pollux/demo/somefile
  stager_qry -r REQUEST_ID --history             # a request's whole story
  pollux-admin daemons

The web monitor: http://127.0.0.1:%d/ (docs/monitor.md)

make demo moves real files through it; make stop stops it all.
`, localPassfile(dir), filepath.Join(dir, "bin"), base, token, dsn, monitorPort(base))
	return nil
}

func startProcess(dir string, p process, dsn string) error {
	logf, err := os.OpenFile(filepath.Join(dir, "log", p.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(dir, "bin", p.bin), p.args...)
	cmd.Env = append(os.Environ(), "POLLUX_DATABASE_URL="+dsn)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own session: the daemons outlive `make run`, and a terminal's ^C does not reach them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	if err := os.WriteFile(pidFile(dir, p.name), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		return err
	}
	return cmd.Process.Release()
}

func pidFile(dir, name string) string { return filepath.Join(dir, "run", name+".pid") }

// running reports the pid of a daemon of the local instance if it is alive.
func running(dir, name string) (int, bool) {
	b, err := os.ReadFile(pidFile(dir, name))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, false
	}
	return pid, syscall.Kill(pid, 0) == nil
}

func waitReady(p process, deadline time.Time) error {
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", p.admin)
	last := errors.New("no answer")
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("readyz answered %s", resp.Status)
		} else {
			last = err
		}
		time.Sleep(200 * time.Millisecond)
	}
	return last
}

func stopLocal(dir string, ps []process, c *cli) error {
	for i := len(ps) - 1; i >= 0; i-- {
		p := ps[i]
		pid, alive := running(dir, p.name)
		if !alive {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(40 * time.Second)
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if syscall.Kill(pid, 0) == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			fmt.Fprintf(c.stdout, "%-12s killed (did not drain in 40s)\n", p.name)
		} else {
			fmt.Fprintf(c.stdout, "%-12s stopped\n", p.name)
		}
		os.Remove(pidFile(dir, p.name))
	}
	return nil
}

func statusLocal(dir string, ps []process, c *cli) error {
	down := 0
	for _, p := range ps {
		if pid, alive := running(dir, p.name); alive {
			fmt.Fprintf(c.stdout, "%-12s running pid %d\n", p.name, pid)
		} else {
			fmt.Fprintf(c.stdout, "%-12s not running\n", p.name)
			down++
		}
	}
	if down > 0 {
		return fmt.Errorf("%d daemons of the local instance are not running (make run starts them)", down)
	}
	return nil
}

// ensureToken makes the tokens file with one token for the current user, and returns it.
func ensureToken(path string) (string, error) {
	name := "pollux"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	if b, err := os.ReadFile(path); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) == 2 && f[1] == name {
				return f[0], nil
			}
		}
	}
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(raw[:])
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "# TOKEN USER (rhd --tokens-file)\n%s %s\n", tok, name); err != nil {
		return "", err
	}
	return tok, nil
}

// demoLocal moves real files through the running local instance with the client
// commands, as a user would, and compares what comes back.
func demoLocal(ctx context.Context, dir string, base int, c *cli) error {
	if _, alive := running(dir, "rhd"); !alive {
		return errors.New("the local instance is not running: start it with `make run`")
	}
	token, err := ensureToken(filepath.Join(dir, "tokens"))
	if err != nil {
		return err
	}
	env := append(os.Environ(), fmt.Sprintf("STAGE_HOST=127.0.0.1:%d", base), "STAGE_SVCCLASS=default", "POLLUX_TOKEN="+token)
	work := filepath.Join(dir, "demo")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	run := func(name string, args ...string) (string, time.Duration, error) {
		cmd := exec.CommandContext(ctx, filepath.Join(dir, "bin", name), args...)
		cmd.Env = env
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		start := time.Now()
		err := cmd.Run()
		if err != nil {
			return "", 0, fmt.Errorf("%s %s: %w\n%s%s", name, strings.Join(args, " "), err, out.String(), errOut.String())
		}
		return strings.TrimSpace(out.String()), time.Since(start), nil
	}
	stamp := time.Now().Format("20060102-150405")
	files := []struct {
		name string
		size int
	}{{"big-64MiB", 64 << 20}, {"small-1", 1 << 10}, {"small-2", 4 << 10}, {"small-3", 16 << 10}, {"small-4", 64 << 10}, {"small-5", 100 << 10}}
	fmt.Fprintf(c.stdout, "%-12s %10s %12s %12s %14s  %s\n", "FILE", "BYTES", "PUT", "GET", "SAME BYTES", "STAGER_QRY")
	for _, f := range files {
		local := filepath.Join(work, f.name)
		data := make([]byte, f.size)
		if _, err := rand.Read(data); err != nil {
			return err
		}
		if err := os.WriteFile(local, data, 0o644); err != nil {
			return err
		}
		remote := fmt.Sprintf("/pollux/demo/%s/%s", stamp, f.name)
		_, put, err := run("pollux", "cp", local, remote)
		if err != nil {
			return err
		}
		qry, _, err := run("stager_qry", "-M", remote)
		if err != nil {
			return err
		}
		back := local + ".back"
		_, get, err := run("pollux", "cp", remote, back)
		if err != nil {
			return err
		}
		got, err := os.ReadFile(back)
		if err != nil {
			return err
		}
		same := bytes.Equal(got, data)
		fmt.Fprintf(c.stdout, "%-12s %10d %12s %12s %14t  %s\n", f.name, f.size, put.Round(time.Millisecond), get.Round(time.Millisecond), same, qry)
		os.Remove(back)
		os.Remove(local)
		if !same {
			return fmt.Errorf("%s came back different", remote)
		}
	}
	fmt.Fprintf(c.stdout, "\nEvery file came back byte for byte. PUT is `pollux cp` up (put, upload, close); GET is `pollux cp` down.\n")
	return nil
}
