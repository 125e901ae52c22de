package e2e

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"
)

// The front end of many rhd behind one name, as docs/operations.md ships it: the HAProxy
// configuration, keepalived's configuration for two haproxy hosts sharing a virtual
// address, and keepalived's check script. The tests run these very texts; the documentation
// shows them rendered with its example values (TestShippedConfigurations keeps it so).
var (
	//go:embed haproxy.cfg.tmpl
	haproxyText string
	//go:embed keepalived.conf.tmpl
	keepalivedText string
	// FrontCheckScript is keepalived's check of a front-end host (pollux-front-check).
	//go:embed pollux-front-check
	FrontCheckScript string

	haproxyTemplate    = template.Must(template.New("haproxy.cfg").Option("missingkey=error").Parse(haproxyText))
	keepalivedTemplate = template.Must(template.New("keepalived.conf").Option("missingkey=error").Parse(keepalivedText))
)

// HAProxyConfig is what the shipped HAProxy configuration leaves to the site.
type HAProxyConfig struct {
	// Bind is where the clients connect (their STAGE_HOST): "*:9000" on a host whose
	// virtual address keepalived moves, or one address.
	Bind string
	// Servers are the request handlers: rhd's --listen addresses.
	Servers []Backend
}

// Backend is one rhd behind haproxy.
type Backend struct {
	// Name names it in haproxy's messages ("Server rhd/rhd1 is DOWN").
	Name string
	// Addr is its --listen address, host:port.
	Addr string
}

// Render returns the configuration's text.
func (c HAProxyConfig) Render() (string, error) {
	if c.Bind == "" || len(c.Servers) == 0 {
		return "", errors.New("haproxy configuration: a bind address and at least one server are needed")
	}
	var b bytes.Buffer
	if err := haproxyTemplate.Execute(&b, c); err != nil {
		return "", fmt.Errorf("render haproxy configuration: %w", err)
	}
	return b.String(), nil
}

// KeepalivedConfig is what the shipped keepalived configuration leaves to each host.
type KeepalivedConfig struct {
	// RouterID names this host in keepalived's messages.
	RouterID string
	// Interface carries the virtual address.
	Interface string
	// VirtualIP is the address STAGE_HOST names, with its prefix (192.0.2.10/24).
	VirtualIP string
	// VirtualRouterID is the VRRP group, the same on both hosts (1-255, unique on the
	// network segment).
	VirtualRouterID int
	// Priority elects the holder of the address: higher on the preferred host.
	Priority int
	// CheckScript is the path of pollux-front-check, and ScriptUser the user it runs as.
	CheckScript, ScriptUser string
}

// Render returns the configuration's text.
func (c KeepalivedConfig) Render() (string, error) {
	var b bytes.Buffer
	if err := keepalivedTemplate.Execute(&b, c); err != nil {
		return "", fmt.Errorf("render keepalived configuration: %w", err)
	}
	return b.String(), nil
}

// RandomLoopback is an address of 127.0.0.0/8 other than the usual ones (127.0.0.1,
// Debian's 127.0.1.1), for a program that binds a fixed port and cannot report one it
// chose: try it, and take another when the bind fails.
func RandomLoopback() string {
	return "127." + strconv.Itoa(2+rand.IntN(250)) + "." + strconv.Itoa(rand.IntN(256)) + "." + strconv.Itoa(1+rand.IntN(254))
}

// HAProxy is a haproxy process in front of an instance's rhd.
type HAProxy struct {
	// Addr is where the clients connect, host:port.
	Addr string
	// Config is the configuration it runs.
	Config string

	cmd  *exec.Cmd
	done chan struct{}

	mu     sync.Mutex
	out    bytes.Buffer
	events []ServerEvent
	news   chan struct{} // closed, and replaced, at every event and at exit
}

// ServerEvent is haproxy taking a server out ("DOWN") or back ("UP"), as it said it.
type ServerEvent struct {
	Server, State, Reason string
	At                    time.Time
}

// haproxyPort is the port haproxy binds, at a random loopback address.
const haproxyPort = 9000

// StartHAProxy runs haproxy (from PATH) with the shipped configuration in front of
// servers, on a random loopback address with a fixed port (another one when that is
// taken), writing its configuration into dir, and waits until it serves /readyz from an
// rhd. It is stopped with Stop.
func StartHAProxy(ctx context.Context, dir string, servers []Backend) (*HAProxy, error) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		return nil, fmt.Errorf("haproxy is not installed (make haproxy/install installs it): %w", err)
	}
	var last error
	for range 10 {
		h, err := startHAProxy(ctx, bin, dir, net.JoinHostPort(RandomLoopback(), strconv.Itoa(haproxyPort)), servers)
		if err == nil {
			return h, nil
		}
		if !errors.Is(err, errAddressTaken) {
			return nil, err
		}
		last = err
	}
	return nil, last
}

var errAddressTaken = errors.New("address taken")

func startHAProxy(ctx context.Context, bin, dir, addr string, servers []Backend) (*HAProxy, error) {
	cfg, err := HAProxyConfig{Bind: addr, Servers: servers}.Render()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	// -db: in the foreground, messages on stderr. -dR: no SO_REUSEPORT, so that an
	// address another process holds is a bind failure rather than a shared port.
	cmd := exec.Command(bin, "-db", "-dR", "-f", path)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	h := &HAProxy{Addr: addr, Config: cfg, cmd: cmd, done: make(chan struct{}), news: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start haproxy: %w", err)
	}
	go h.read(stderr)
	deadline, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		// Through haproxy to an rhd: nothing else at this address answers "ready".
		req, _ := http.NewRequestWithContext(deadline, http.MethodGet, "http://"+addr+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && string(b) == "ready\n" {
				return h, nil
			}
		}
		select {
		case <-h.done:
			out := h.Output()
			if strings.Contains(out, "cannot bind socket") {
				return nil, fmt.Errorf("haproxy on %s: %w:\n%s", addr, errAddressTaken, out)
			}
			return nil, fmt.Errorf("haproxy exited: %v:\n%s", cmd.ProcessState, out)
		case <-deadline.Done():
			h.Stop()
			return nil, fmt.Errorf("haproxy on %s served no /readyz within 20s:\n%s", addr, h.Output())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

var serverState = regexp.MustCompile(`Server ([^/ ]+)/(\S+) is (UP|DOWN)(?:, reason: ([^,]*))?`)

func (h *HAProxy) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		now := time.Now()
		h.mu.Lock()
		h.out.WriteString(line + "\n")
		if m := serverState.FindStringSubmatch(line); m != nil {
			h.events = append(h.events, ServerEvent{Server: m[2], State: m[3], Reason: m[4], At: now})
			close(h.news)
			h.news = make(chan struct{})
		}
		h.mu.Unlock()
	}
	_ = h.cmd.Wait()
	h.mu.Lock()
	close(h.news)
	h.news = make(chan struct{})
	h.mu.Unlock()
	close(h.done)
}

// Output is everything haproxy wrote so far.
func (h *HAProxy) Output() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.out.String()
}

// WaitServer waits until haproxy says server is in state ("UP" or "DOWN") after the
// instant after, and returns that event.
func (h *HAProxy) WaitServer(ctx context.Context, server, state string, after time.Time) (ServerEvent, error) {
	for {
		h.mu.Lock()
		news := h.news
		for _, e := range h.events {
			if e.Server == server && e.State == state && !e.At.Before(after) {
				h.mu.Unlock()
				return e, nil
			}
		}
		h.mu.Unlock()
		select {
		case <-news:
		case <-h.done:
			return ServerEvent{}, fmt.Errorf("haproxy exited before %s was %s:\n%s", server, state, h.Output())
		case <-ctx.Done():
			return ServerEvent{}, fmt.Errorf("haproxy did not say %s is %s: %w:\n%s", server, state, ctx.Err(), h.Output())
		}
	}
}

// Stop stops haproxy (SIGTERM, then SIGKILL) and waits for it.
func (h *HAProxy) Stop() {
	if h.cmd.Process == nil {
		return
	}
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.done
	}
}
