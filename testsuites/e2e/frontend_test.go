package e2e_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/pgcluster"
	"github.com/pollux-storage/pollux/schema/schematest"
	"github.com/pollux-storage/pollux/testsuites/e2e"
)

var update = flag.Bool("update", false, "rewrite the shipped configurations in docs/operations.md from their templates")

// needProgram fails the test when an external program it runs is missing, naming the
// make target that installs it.
func needProgram(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed: run `make haproxy/install` (make test does)", name)
	}
	return p
}

// The example values the documentation renders the shipped configurations with.
var (
	docHAProxy    = e2e.HAProxyConfig{Bind: "*:9000", Servers: []e2e.Backend{{Name: "rhd1", Addr: "10.0.0.11:9000"}, {Name: "rhd2", Addr: "10.0.0.12:9000"}}}
	docKeepalived = e2e.KeepalivedConfig{RouterID: "pollux-front-1", Interface: "eth0", VirtualIP: "192.0.2.10/24", VirtualRouterID: 51,
		Priority: 150, CheckScript: "/usr/local/bin/pollux-front-check", ScriptUser: "nobody"}
)

// TestShippedConfigurations: the HAProxy and keepalived configurations and the check
// script in docs/operations.md are the tested ones, rendered with the documentation's
// example values (go test -run TestShippedConfigurations -update rewrites them), and
// haproxy and keepalived accept them.
func TestShippedConfigurations(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs haproxy and keepalived in their configuration-check modes; -short leaves it out")
	}
	haproxy, keepalived := needProgram(t, "haproxy"), needProgram(t, "keepalived")
	haproxyCfg, err := docHAProxy.Render()
	require.NoError(t, err)
	keepalivedCfg, err := docKeepalived.Render()
	require.NoError(t, err)

	root, err := pgcluster.RepoRoot()
	require.NoError(t, err)
	docPath := filepath.Join(root, "docs", "operations.md")
	doc, err := os.ReadFile(docPath)
	require.NoError(t, err)
	text := string(doc)
	for _, b := range []struct{ name, want string }{
		{"haproxy.cfg", haproxyCfg}, {"keepalived.conf", keepalivedCfg}, {"pollux-front-check", e2e.FrontCheckScript},
	} {
		got, start, end, err := shippedBlock(text, b.name)
		require.NoError(t, err)
		if *update {
			text = text[:start] + b.want + text[end:]
			continue
		}
		require.Equal(t, b.want, got, "docs/operations.md shows another %s than the tested one: go test ./testsuites/e2e -run TestShippedConfigurations -update", b.name)
	}
	if *update {
		require.NoError(t, os.WriteFile(docPath, []byte(text), 0o644))
	}

	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), mode))
		return p
	}
	out, err := exec.Command(haproxy, "-c", "-f", write("haproxy.cfg", haproxyCfg, 0o644)).CombinedOutput()
	require.NoError(t, err, "haproxy -c refuses the shipped configuration:\n%s", out)

	// keepalived -t checks the configuration without running VRRP. The check script is
	// a copy at a path of this test, and it runs as root here: keepalived 2.2.7's
	// config-test mode kills itself (SIGTERM) after checking a script as any other user.
	test := docKeepalived
	test.CheckScript, test.ScriptUser = write("pollux-front-check", e2e.FrontCheckScript, 0o755), "root"
	cfg, err := test.Render()
	require.NoError(t, err)
	out, err = exec.Command(keepalived, "-t", "-f", write("keepalived.conf", cfg, 0o644)).CombinedOutput()
	require.NoError(t, err, "keepalived -t refuses the shipped configuration:\n%s", out)
	// The check can fail: a router id outside VRRP's range is refused.
	test.VirtualRouterID = 256
	cfg, err = test.Render()
	require.NoError(t, err)
	out, err = exec.Command(keepalived, "-t", "-f", write("bad.conf", cfg, 0o644)).CombinedOutput()
	require.Error(t, err, "keepalived -t took a virtual router id of 256:\n%s", out)
}

// shippedBlock finds the fenced block that follows the marker of a shipped file in the
// documentation, and returns its content and where that content starts and ends.
func shippedBlock(doc, name string) (content string, start, end int, err error) {
	marker := "<!-- shipped: " + name + " "
	i := strings.Index(doc, marker)
	if i < 0 {
		return "", 0, 0, fmt.Errorf("docs/operations.md has no %q marker before the %s block", marker+"-->", name)
	}
	open := strings.Index(doc[i:], "\n```")
	if open < 0 {
		return "", 0, 0, fmt.Errorf("no fenced block after the %s marker", name)
	}
	start = i + open + 1
	start += strings.IndexByte(doc[start:], '\n') + 1
	if strings.HasPrefix(doc[start:], "```\n") {
		return "", start, start, nil // empty
	}
	close := strings.Index(doc[start:], "\n```\n")
	if close < 0 {
		return "", 0, 0, fmt.Errorf("the %s block is not closed", name)
	}
	end = start + close + 1
	return doc[start:end], start, end, nil
}

// TestHAProxyInFrontOfTwoRHD: clients that know only haproxy keep being served while one
// rhd is killed (kill -9), restarted, and the other stopped (SIGTERM, its /readyz turns
// false as it drains); haproxy takes each out within its check interval. keepalived's
// check script passes while haproxy has a ready rhd behind it, and fails when none is.
func TestHAProxyInFrontOfTwoRHD(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end suite starts a whole instance and haproxy as processes; -short leaves it out")
	}
	needProgram(t, "haproxy")
	needProgram(t, "curl") // the check script's
	in, ctx := startWithRHDAt(t)
	hp, err := e2e.StartHAProxy(ctx, t.TempDir(), []e2e.Backend{
		{Name: "rhd1", Addr: in.Procs()["rhd1"].Addr()}, {Name: "rhd2", Addr: in.Procs()["rhd2"].Addr()}})
	require.NoError(t, err)
	t.Cleanup(hp.Stop)
	t.Logf("haproxy on %s in front of rhd1 %s and rhd2 %s", hp.Addr, in.Procs()["rhd1"].Addr(), in.Procs()["rhd2"].Addr())
	check := filepath.Join(t.TempDir(), "pollux-front-check")
	require.NoError(t, os.WriteFile(check, []byte(e2e.FrontCheckScript), 0o755))
	frontCheck := func() error {
		cmd := exec.CommandContext(ctx, check)
		cmd.Env = append(os.Environ(), "POLLUX_FRONT_CHECK_URL=http://"+hp.Addr+"/readyz")
		return cmd.Run()
	}
	require.NoError(t, frontCheck(), "keepalived's check fails with haproxy and two rhd up")

	l := startLoad(t, ctx, in, hp.Addr, 2)
	l.waitServed(t, 2, "before any failure")

	// kill -9 rhd1: haproxy takes it out, the calls go to rhd2.
	killed := time.Now()
	in.Kill("rhd1", syscall.SIGKILL)
	down, err := hp.WaitServer(ctx, "rhd1", "DOWN", killed)
	require.NoError(t, err)
	detectKill := down.At.Sub(killed)
	l.waitServed(t, 2, "with rhd1 killed")

	// rhd1 comes back at its address; haproxy takes it back.
	restarted := time.Now()
	require.NoError(t, in.Restart(ctx, "rhd1"))
	up, err := hp.WaitServer(ctx, "rhd1", "UP", restarted)
	require.NoError(t, err)
	l.waitServed(t, 2, "with rhd1 back")

	// SIGTERM rhd2: /readyz turns false and its listener closes as it drains.
	stopped := time.Now()
	in.Kill("rhd2", syscall.SIGTERM)
	down2, err := hp.WaitServer(ctx, "rhd2", "DOWN", stopped)
	require.NoError(t, err)
	detectTerm := down2.At.Sub(stopped)
	l.waitServed(t, 2, "with rhd2 stopped")
	ops := l.stop()
	require.NoError(t, frontCheck(), "keepalived's check fails with haproxy and rhd1 up")

	// Out within the check interval: the check every 2 s (inter) found it dead, the next
	// after 0.5 s (fastinter) confirmed it (fall 2); the check timeout (1 s) covers a check
	// under way at the kill. Slack for a loaded machine.
	const bound = 2*time.Second + 500*time.Millisecond + time.Second
	t.Logf("haproxy took rhd1 out %s after kill -9 (%s), rhd2 %s after SIGTERM (%s), rhd1 back %s after its restart began; bound %s",
		detectKill.Round(time.Millisecond), down.Reason, detectTerm.Round(time.Millisecond), down2.Reason, up.At.Sub(restarted).Round(time.Millisecond), bound)
	// The bound is what the checks promise; a loaded machine adds to it, so the verdict
	// allows three times as much and the figures above say how close it came.
	require.Less(t, detectKill, 3*bound, "haproxy kept the killed rhd too long")
	require.Less(t, detectTerm, 3*bound, "haproxy kept the draining rhd too long")

	var failed []string
	retried := 0
	for _, o := range ops {
		if o.err != "" {
			failed = append(failed, o.err)
		}
		if o.retried {
			retried++
		}
	}
	t.Logf("%d copies through haproxy (a put and a get each), %d failed, %d saw a failure haproxy let through and retried it themselves", len(ops), len(failed), retried)
	require.Empty(t, failed, "calls failed through haproxy")

	// No rhd ready: haproxy answers in the API's shape, the client says so and gives up;
	// keepalived's check fails, so the address would move to the other haproxy host.
	stopped = time.Now()
	in.Kill("rhd1", syscall.SIGTERM)
	_, err = hp.WaitServer(ctx, "rhd1", "DOWN", stopped)
	require.NoError(t, err)
	r := in.Run(ctx, []string{"STAGE_HOST=" + hp.Addr}, "stager_qry", "--service-timeout", "1s", "-M", "/pollux/ha/none")
	require.Equal(t, 2, r.Code, r.Stderr)
	require.Contains(t, r.Stderr, "no request handler is ready behind the load balancer")
	require.Error(t, frontCheck(), "keepalived's check passes with no rhd ready")
	hp.Stop()
	require.Error(t, frontCheck(), "keepalived's check passes with haproxy stopped")
}

// startWithRHDAt starts an instance whose two rhd listen at fixed addresses, as haproxy's
// configuration names them: a random loopback address each with rhd's usual port, others
// when one is taken.
func startWithRHDAt(t *testing.T) (*e2e.Instance, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	dsn := schematest.DSN(t)
	for attempt := 0; ; attempt++ {
		addrs := []string{e2e.RandomLoopback() + ":9000", e2e.RandomLoopback() + ":9000"}
		in, err := e2e.Start(ctx, e2e.Options{Bin: bin, DSN: dsn, Dir: t.TempDir(), RHDs: 2, DiskServers: 1, RHDListen: addrs})
		if err != nil && strings.Contains(err.Error(), "address already in use") && attempt < 5 {
			t.Logf("an rhd address was taken (%v): others", addrs)
			continue
		}
		require.NoError(t, err)
		t.Cleanup(func() {
			if t.Failed() {
				t.Log(in.Logs(40))
			}
			in.Stop()
		})
		return in, ctx
	}
}

// load is clients copying files in and out through one STAGE_HOST until stopped.
type load struct {
	mu     sync.Mutex
	ops    []op
	served chan struct{} // a token per copy served
	stopCh chan struct{}
	wg     sync.WaitGroup
}

type op struct {
	err string
	// retried: the client saw a failure (its notices, " — ") and tried again.
	retried bool
}

func startLoad(t *testing.T, ctx context.Context, in *e2e.Instance, stageHost string, workers int) *load {
	l := &load{served: make(chan struct{}, 1<<16), stopCh: make(chan struct{})}
	dir := t.TempDir()
	env := []string{"STAGE_HOST=" + stageHost}
	for w := range workers {
		// On the test's goroutine: randomFile stops the test when it fails.
		src, data := randomFile(t, dir, fmt.Sprintf("w%d", w), 32<<10+w)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stopCh:
					return
				default:
				}
				remote := fmt.Sprintf("/pollux/ha/w%d-%d", w, i)
				back := filepath.Join(dir, fmt.Sprintf("w%d-%d.back", w, i))
				o := op{}
				put := in.Run(ctx, env, "pollux", "cp", src, remote)
				get := e2e.Result{Code: -1}
				if put.Code == 0 {
					get = in.Run(ctx, env, "pollux", "cp", remote, back)
				}
				o.retried = strings.Contains(put.Stderr+get.Stderr, " — ")
				switch {
				case put.Code != 0:
					o.err = fmt.Sprintf("put %s: exit %d: %s", remote, put.Code, put.Stderr)
				case get.Code != 0:
					o.err = fmt.Sprintf("get %s: exit %d: %s", remote, get.Code, get.Stderr)
				default:
					if got, err := os.ReadFile(back); err != nil || !bytes.Equal(got, data) {
						o.err = fmt.Sprintf("get %s: the bytes read back differ (%v)", remote, err)
					}
				}
				l.mu.Lock()
				l.ops = append(l.ops, o)
				l.mu.Unlock()
				if o.err == "" {
					l.served <- struct{}{}
				}
			}
		}()
	}
	return l
}

// waitServed waits until n copies more have been served from now on.
func (l *load) waitServed(t *testing.T, n int, when string) {
	t.Helper()
	for len(l.served) > 0 {
		<-l.served // served before now
	}
	deadline := time.After(time.Minute)
	for range n {
		select {
		case <-l.served:
		case <-deadline:
			l.mu.Lock()
			defer l.mu.Unlock()
			t.Fatalf("no copy served within a minute %s; the last: %+v", when, l.ops[max(len(l.ops)-3, 0):])
		}
	}
}

// stop ends the load once the copies under way are done and returns every copy.
func (l *load) stop() []op {
	close(l.stopCh)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ops
}
