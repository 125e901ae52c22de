package netns

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/pgcluster"
)

// The test binary is also the program the hosts run, chosen by helperEnv:
//
//	serve  listen on $NETNS_ADDR:0, print "listening ADDR", echo every line back; with
//	       $NETNS_FORK set, first start a child of itself that sleeps and print "child PID"
//	sleep  block until killed
//	dial   connect to $NETNS_TARGET within a second, send a line, print what came back or
//	       "error: …"
const helperEnv = "NETNS_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "serve":
		serve()
	case "sleep":
		select {}
	case "dial":
		dial()
	case "network":
		// Without the capabilities (see TestRefusalNamesTheCapabilities).
		if nw, err := NewNetwork(Options{}); err != nil {
			fmt.Println("error:", err)
		} else {
			fmt.Println("made a network")
			_ = nw.Close()
		}
	}
	os.Exit(0)
}

func serve() {
	if os.Getenv("NETNS_FORK") != "" {
		child := exec.Command(os.Args[0])
		child.Env = append(os.Environ(), helperEnv+"=sleep")
		if err := child.Start(); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("child", child.Process.Pid)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(os.Getenv("NETNS_ADDR"), "0"))
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("listening", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		go func() { _, _ = io.Copy(c, c) }()
	}
}

func dial() {
	c, err := net.DialTimeout("tcp", os.Getenv("NETNS_TARGET"), time.Second)
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	fmt.Fprintln(c, "ping")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Print(line)
}

// helper is a helper process started in a host, with its stdout read line by line.
type helper struct {
	cmd   *exec.Cmd
	lines chan string
	done  chan struct{}
}

func startHelper(t *testing.T, h *Host, mode string, env ...string) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(append(os.Environ(), helperEnv+"="+mode), env...)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, h.Start(cmd))
	p := &helper{cmd: cmd, lines: make(chan string, 16), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	return p
}

// line returns the helper's next line with the given prefix, what follows the prefix.
func (p *helper) line(t *testing.T, prefix string) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		require.True(t, ok, "the helper ended before printing %q", prefix)
		rest, found := strings.CutPrefix(l, prefix+" ")
		require.True(t, found, "the helper printed %q, not %s …", l, prefix)
		return rest
	case <-time.After(10 * time.Second):
		t.Fatalf("the helper printed no %q line within 10 s", prefix)
		return ""
	}
}

// dialFrom dials target from inside host h and returns what the dial helper said.
func dialFrom(t *testing.T, h *Host, target string) string {
	t.Helper()
	p := startHelper(t, h, "dial", "NETNS_TARGET="+target)
	select {
	case l := <-p.lines:
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("the dial helper said nothing within 10 s")
		return ""
	}
}

// requireTools fails the test when ip or nsenter is missing, saying how to install them
// (under -short it skips).
func requireTools(t *testing.T) {
	t.Helper()
	if err := Check(Options{}); err != nil {
		if testing.Short() {
			t.Skipf("-short: %v", err)
		}
		t.Fatal(err)
	}
}

func newNetwork(t *testing.T) *Network {
	t.Helper()
	requireTools(t)
	nw, err := NewNetwork(Options{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, nw.Close()) })
	return nw
}

// echo sends a line over c and waits for it back.
func echo(c net.Conn, timeout time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintln(c, "hello"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "hello\n" {
		return fmt.Errorf("echoed %q", line)
	}
	return nil
}

func TestHostsReachEachOtherAndTheHarnessOnly(t *testing.T) {
	t.Parallel()
	nw := newNetwork(t)
	a, err := nw.AddHost("a")
	require.NoError(t, err)
	b, err := nw.AddHost("b")
	require.NoError(t, err)
	require.True(t, nw.Prefix().Contains(a.Address()) && nw.Prefix().Contains(b.Address()) && nw.Prefix().Contains(nw.Address()))
	require.NotEqual(t, a.Address(), b.Address())

	srv := startHelper(t, a, "serve", "NETNS_ADDR="+a.Address().String())
	addr := srv.line(t, "listening")
	// From the harness, over the bridge.
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, echo(c, 5*time.Second))
	// From the other host.
	require.Equal(t, "ping", dialFrom(t, b, addr))
	// A host's loopback is its own: the harness's loopback listener is not there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	require.Contains(t, dialFrom(t, b, ln.Addr().String()), "connection refused")
	// Nothing off the network: no route.
	require.Contains(t, dialFrom(t, b, "192.0.2.1:80"), "network is unreachable")
}

func TestCutLosesPacketsAndRestoreCarriesConnectionsOn(t *testing.T) {
	t.Parallel()
	nw := newNetwork(t)
	a, err := nw.AddHost("a")
	require.NoError(t, err)
	srv := startHelper(t, a, "serve", "NETNS_ADDR="+a.Address().String())
	addr := srv.line(t, "listening")
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, echo(c, 5*time.Second))

	require.NoError(t, a.Cut())
	// New connections and traffic on the open one are lost, not refused.
	_, err = net.DialTimeout("tcp", addr, 300*time.Millisecond)
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "a dial to a cut-off host times out: %v", err)
	err = echo(c, 300*time.Millisecond)
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "an echo through the cut times out: %v", err)
	// The host's process runs on.
	require.NoError(t, syscall.Kill(srv.cmd.Process.Pid, 0))
	select {
	case <-srv.done:
		t.Fatal("the server in the cut-off host exited")
	default:
	}

	require.NoError(t, a.Restore())
	// The line sent during the cut arrives by retransmission, and new connections work.
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		d, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if !assert.NoError(ct, err) {
			return
		}
		defer d.Close()
		assert.NoError(ct, echo(d, 2*time.Second))
	}, 30*time.Second, 50*time.Millisecond)
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err, "the connection open across the cut carries on")
	require.Equal(t, "hello\n", line)
}

func TestKillKillsEveryProcessOfTheHostAndItCanStartAgain(t *testing.T) {
	t.Parallel()
	nw := newNetwork(t)
	a, err := nw.AddHost("a")
	require.NoError(t, err)
	other, err := nw.AddHost("other")
	require.NoError(t, err)
	srv := startHelper(t, a, "serve", "NETNS_ADDR="+a.Address().String(), "NETNS_FORK=1")
	child, err := strconv.Atoi(srv.line(t, "child"))
	require.NoError(t, err)
	addr := srv.line(t, "listening")
	bystander := startHelper(t, other, "serve", "NETNS_ADDR="+other.Address().String())
	bystander.line(t, "listening")

	pids, err := a.Pids()
	require.NoError(t, err)
	require.ElementsMatch(t, []int{srv.cmd.Process.Pid, child}, pids)

	require.NoError(t, a.Kill())
	<-srv.done
	require.Equal(t, syscall.SIGKILL, srv.cmd.ProcessState.Sys().(syscall.WaitStatus).Signal())
	pids, err = a.Pids()
	require.NoError(t, err)
	require.Empty(t, pids, "the forked child died too")
	require.NoError(t, syscall.Kill(bystander.cmd.Process.Pid, 0), "another host's process lives")
	_, err = net.DialTimeout("tcp", addr, time.Second)
	require.Error(t, err)

	// A host that died starts again, at the same address.
	again := startHelper(t, a, "serve", "NETNS_ADDR="+a.Address().String())
	c, err := net.DialTimeout("tcp", again.line(t, "listening"), 5*time.Second)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, echo(c, 5*time.Second))
}

func TestCloseRemovesEverything(t *testing.T) {
	t.Parallel()
	requireTools(t)
	nw, err := NewNetwork(Options{})
	require.NoError(t, err)
	h, err := nw.AddHost("a")
	require.NoError(t, err)
	p := startHelper(t, h, "sleep")
	_, err = nw.AddHost("a")
	require.ErrorContains(t, err, "exists already")
	_, err = nw.AddHost("Bad_Name")
	require.ErrorContains(t, err, `host name "Bad_Name"`)

	require.NoError(t, nw.Close())
	<-p.done
	require.NoFileExists(t, filepath.Join(netnsDir, h.Namespace()))
	ls, err := links(nw.ip)
	require.NoError(t, err)
	for _, l := range ls {
		require.NotEqual(t, nw.bridge, l.Name)
		require.NotEqual(t, h.link, l.Name)
	}
	require.NoError(t, nw.Close(), "closing twice is harmless")
	_, err = nw.AddHost("b")
	require.ErrorContains(t, err, "closed")
}

// TestStaleRunsAreRemoved leaves what a killed run would (a bridge owned by a process that
// is gone, its namespace with a process in it, its veth) and checks that the next network
// removes it and nothing of a live run.
func TestStaleRunsAreRemoved(t *testing.T) {
	t.Parallel()
	live := newNetwork(t)
	liveHost, err := live.AddHost("a")
	require.NoError(t, err)
	ip, err := Options{}.ipPath()
	require.NoError(t, err)

	// The dead run's owner: a process that has exited.
	gone := exec.Command("true")
	require.NoError(t, gone.Run())
	start, err := procStart(os.Getpid())
	require.NoError(t, err)
	unlock, err := lock()
	require.NoError(t, err)
	used, err := usedNumbers(ip)
	if err != nil {
		unlock()
		require.NoError(t, err)
	}
	n := -1
	for i := 255; i >= 0; i-- {
		if !used[i] {
			n = i
			break
		}
	}
	stale := &Network{ip: ip, n: n, bridge: fmt.Sprintf("%s%d", bridgePrefix, n)}
	// Under the lock, so that a parallel test's network does not remove it half-made.
	for _, s := range [][]string{
		{"link", "add", stale.bridge, "type", "bridge"},
		{"link", "set", "dev", stale.bridge, "alias", fmt.Sprintf("%s pid=%d start=%d", aliasPrefix, gone.Process.Pid, start)},
	} {
		if err := stale.run(s...); err != nil {
			unlock()
			require.NoError(t, err)
		}
	}
	staleHost, err := stale.AddHost("x")
	if err != nil {
		unlock()
		require.NoError(t, err)
	}
	leftover := startHelper(t, staleHost, "sleep")
	unlock()

	again := newNetwork(t)
	<-leftover.done
	require.NoFileExists(t, filepath.Join(netnsDir, staleHost.Namespace()))
	ls, err := links(ip)
	require.NoError(t, err)
	names := map[string]bool{}
	for _, l := range ls {
		names[l.Name] = true
	}
	// Numbers are drawn at random, so the new run may draw the one the dead run freed: a
	// bridge of that name is then the new run's own.
	if again.n != n {
		require.False(t, names[stale.bridge], "the dead run's bridge is gone")
	}
	require.False(t, names[staleHost.link], "the dead run's veth is gone")
	require.True(t, names[live.bridge] && names[liveHost.link], "the live run's are kept")
	require.FileExists(t, filepath.Join(netnsDir, liveHost.Namespace()))
}

func TestMissingToolNamesTheMakeTarget(t *testing.T) {
	t.Parallel()
	_, err := NewNetwork(Options{IP: "/nonexistent/ip"})
	require.ErrorIs(t, err, ErrMissingTool)
	require.ErrorContains(t, err, "make netns/install")
}

func TestStartOfAMissingProgramFails(t *testing.T) {
	t.Parallel()
	nw := newNetwork(t)
	h, err := nw.AddHost("a")
	require.NoError(t, err)
	err = h.Start(exec.CommandContext(context.Background(), "/nonexistent/program"))
	require.ErrorContains(t, err, "/nonexistent/program")
}

// A process without CAP_NET_ADMIN and CAP_SYS_ADMIN (root with both dropped from its
// bounding set) is told which capabilities it lacks.
func TestRefusalNamesTheCapabilities(t *testing.T) {
	t.Parallel()
	requireTools(t)
	setpriv, err := exec.LookPath("setpriv")
	require.NoError(t, err, "util-linux's setpriv: %s installs it", InstallTarget)
	cmd := exec.Command(setpriv, "--bounding-set=-net_admin,-sys_admin", "--inh-caps=-net_admin,-sys_admin", "--", os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=network")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "error: ")
	require.Contains(t, string(out), "Operation not permitted")
	require.Contains(t, string(out), "need CAP_SYS_ADMIN and links CAP_NET_ADMIN")
}

// PostgreSQL can run on a host (pgcluster's Launch), reached over the network, and dies
// with it: how a failure suite kills a database server whole.
func TestPostgresOnAHost(t *testing.T) {
	t.Parallel()
	nw := newNetwork(t)
	h, err := nw.AddHost("db")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := pgcluster.EnsureWith(ctx, filepath.Join(t.TempDir(), "pg"), pgcluster.Options{
		Listen: h.Address().String(), Trust: []string{nw.Prefix().String()},
		Settings: map[string]string{"shared_buffers": "32MB"}, Launch: h.Start,
	}, io.Discard)
	require.NoError(t, err)
	t.Cleanup(func() { _ = cl.Stop(context.Background()) })
	dsn, err := cl.TCPDSN("postgres")
	require.NoError(t, err)
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	var addr string
	require.NoError(t, conn.QueryRow(ctx, "select host(inet_server_addr())").Scan(&addr))
	require.Equal(t, h.Address().String(), addr)
	pids, err := h.Pids()
	require.NoError(t, err)
	require.NotEmpty(t, pids, "the server's processes are the host's")

	require.NoError(t, h.Kill())
	_, err = conn.Exec(ctx, "select 1")
	require.Error(t, err, "the server died with its host")
}
