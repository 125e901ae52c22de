package netns

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// InstallTarget is the make target that installs the programs a network needs.
const InstallTarget = "make netns/install"

// ErrMissingTool is returned when iproute2's ip or util-linux's nsenter is missing.
var ErrMissingTool = errors.New("iproute2's ip or util-linux's nsenter is not installed: `" + InstallTarget +
	"` installs them (apt-get install iproute2 util-linux)")

// The networks are 10.213.<n>.0/24; n is what distinguishes the runs on a machine.
const (
	netPrefix    = "10.213."
	bridgePrefix = "pxnet"
	nsPrefix     = "pollux-"
	aliasPrefix  = "pollux netns"
	netnsDir     = "/run/netns"
	lockPath     = "/run/pollux-netns.lock"
	killDeadline = 10 * time.Second
	maxHosts     = 253 // .2 to .254
	ipCommand    = "ip"
)

var hostName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,30}$`)

// Options configure a Network.
type Options struct {
	// IP is the ip command; empty means "ip" on PATH.
	IP string
}

// Network is one private network of hosts: a bridge in the root namespace and the
// hosts' namespaces linked to it. Its methods may be called from several goroutines.
type Network struct {
	ip     string
	n      int
	bridge string
	prefix netip.Prefix

	mu     sync.Mutex
	hosts  []*Host
	closed bool
}

// Host is one host of a network: a network namespace with one address.
type Host struct {
	net  *Network
	name string
	ns   string // namespace name, a file in /run/netns
	link string // the root side of its veth pair: its cable
	addr netip.Addr
}

// Check reports whether this machine has the programs a network needs (ErrMissingTool
// otherwise).
func Check(o Options) error {
	if _, err := o.ipPath(); err != nil {
		return err
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		return fmt.Errorf("%w (looked for nsenter: %v)", ErrMissingTool, err)
	}
	return nil
}

func (o Options) ipPath() (string, error) {
	name := o.IP
	if name == "" {
		name = ipCommand
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w (looked for %s: %v)", ErrMissingTool, name, err)
	}
	return p, nil
}

// NewNetwork removes what dead runs left behind, claims a free network number and makes
// the network's bridge, which holds the network's first address.
func NewNetwork(o Options) (*Network, error) {
	ip, err := o.ipPath()
	if err != nil {
		return nil, err
	}
	unlock, err := lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := cleanStale(ip); err != nil {
		return nil, fmt.Errorf("netns: remove what dead runs left: %w", err)
	}
	used, err := usedNumbers(ip)
	if err != nil {
		return nil, err
	}
	self, err := procStart(os.Getpid())
	if err != nil {
		return nil, err
	}
	start := rand.IntN(256)
	for i := range 256 {
		n := (start + i) % 256
		if used[n] {
			continue
		}
		nw := &Network{ip: ip, n: n, bridge: fmt.Sprintf("%s%d", bridgePrefix, n),
			prefix: netip.MustParsePrefix(fmt.Sprintf("%s%d.0/24", netPrefix, n))}
		// Under the lock, so that a cleaner never sees the bridge without its owner.
		err := nw.run("link", "add", nw.bridge, "type", "bridge")
		if err != nil {
			if strings.Contains(err.Error(), "File exists") {
				continue // a run that did not take the lock (or a name of someone else's)
			}
			return nil, err
		}
		steps := [][]string{
			{"link", "set", "dev", nw.bridge, "alias", fmt.Sprintf("%s pid=%d start=%d", aliasPrefix, os.Getpid(), self)},
			{"addr", "add", nw.Address().String() + "/24", "dev", nw.bridge},
			{"link", "set", "dev", nw.bridge, "up"},
		}
		for _, s := range steps {
			if err := nw.run(s...); err != nil {
				_ = nw.run("link", "del", nw.bridge)
				return nil, err
			}
		}
		return nw, nil
	}
	return nil, fmt.Errorf("netns: every network %s0.0/24 … %s255.0/24 is in use on this machine", netPrefix, netPrefix)
}

// Prefix is the network's address range.
func (nw *Network) Prefix() netip.Prefix { return nw.prefix }

// Address is the root namespace's address on the network (the bridge's): where the
// hosts reach the test harness and whatever it serves them, a database say.
func (nw *Network) Address() netip.Addr { return nw.prefix.Addr().Next() }

// Hosts returns the hosts, in the order they were added.
func (nw *Network) Hosts() []*Host {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	return append([]*Host(nil), nw.hosts...)
}

// AddHost makes a host: a namespace with a loopback and, on a veth linked to the bridge,
// the network's next free address. name is lowercase letters, digits and dashes.
func (nw *Network) AddHost(name string) (*Host, error) {
	if !hostName.MatchString(name) {
		return nil, fmt.Errorf("netns: host name %q: use lowercase letters, digits and dashes, starting with a letter, at most 31", name)
	}
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if nw.closed {
		return nil, errors.New("netns: the network is closed")
	}
	for _, h := range nw.hosts {
		if h.name == name {
			return nil, fmt.Errorf("netns: host %s exists already", name)
		}
	}
	if len(nw.hosts) >= maxHosts {
		return nil, fmt.Errorf("netns: a network has at most %d hosts", maxHosts)
	}
	i := len(nw.hosts) + 2
	h := &Host{net: nw, name: name, ns: fmt.Sprintf("%s%d-%s", nsPrefix, nw.n, name),
		link: fmt.Sprintf("pxn%dh%d", nw.n, i), addr: netip.AddrFrom4([4]byte{10, 213, byte(nw.n), byte(i)})}
	if err := nw.run("netns", "add", h.ns); err != nil {
		return nil, err
	}
	steps := [][]string{
		{"-n", h.ns, "link", "set", "lo", "up"},
		{"link", "add", h.link, "type", "veth", "peer", "name", "eth0", "netns", h.ns},
		{"link", "set", "dev", h.link, "master", nw.bridge, "up"},
		{"-n", h.ns, "addr", "add", h.addr.String() + "/24", "dev", "eth0"},
		{"-n", h.ns, "link", "set", "dev", "eth0", "up"},
	}
	for _, s := range steps {
		if err := nw.run(s...); err != nil {
			_ = nw.run("link", "del", h.link)
			_ = nw.run("netns", "del", h.ns)
			return nil, err
		}
	}
	nw.hosts = append(nw.hosts, h)
	return h, nil
}

// Close kills every host's processes and removes the hosts and the bridge. It is safe to
// call twice.
func (nw *Network) Close() error {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if nw.closed {
		return nil
	}
	nw.closed = true
	var errs []error
	for _, h := range nw.hosts {
		if err := h.Kill(); err != nil {
			errs = append(errs, err)
		}
		// The veth first: a namespace is torn down asynchronously, and its veth must not
		// outlive it under a name the next run may want.
		if err := nw.run("link", "del", h.link); err != nil {
			errs = append(errs, err)
		}
		if err := nw.run("netns", "del", h.ns); err != nil {
			errs = append(errs, err)
		}
	}
	if err := nw.run("link", "del", nw.bridge); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Name is the host's name.
func (h *Host) Name() string { return h.name }

// Namespace is the name of the host's network namespace (`ip netns exec NAME …`).
func (h *Host) Namespace() string { return h.ns }

// Address is the host's address on the network.
func (h *Host) Address() netip.Addr { return h.addr }

// Start starts cmd inside the host: the process and everything it starts use the host's
// network. cmd runs under util-linux's nsenter, which enters the namespace and then execs
// the command (so cmd.Process is the command's own process); credentials in
// cmd.SysProcAttr are applied after the namespace is entered. The caller waits for cmd.
func (h *Host) Start(cmd *exec.Cmd) error {
	if cmd.Err != nil {
		return cmd.Err
	}
	if cmd.Process != nil {
		return errors.New("netns: the command has started already")
	}
	// nsenter would start and then fail to exec: say so here, as exec.Cmd.Start does.
	prog := cmd.Path
	if !filepath.IsAbs(prog) && cmd.Dir != "" {
		prog = filepath.Join(cmd.Dir, prog)
	}
	if _, err := exec.LookPath(prog); err != nil {
		return fmt.Errorf("netns: start in host %s: %w", h.name, err)
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return fmt.Errorf("netns: %w (looked for nsenter: %v)", ErrMissingTool, err)
	}
	// Entering a namespace takes a capability the command's own account may lack: nsenter
	// enters as the caller and changes the account itself.
	args := []string{"nsenter", "--net=" + filepath.Join(netnsDir, h.ns)}
	if a := cmd.SysProcAttr; a != nil && a.Credential != nil {
		args = append(args, "--setuid="+strconv.FormatUint(uint64(a.Credential.Uid), 10),
			"--setgid="+strconv.FormatUint(uint64(a.Credential.Gid), 10))
		attr := *a
		attr.Credential = nil
		cmd.SysProcAttr = &attr
	}
	args = append(append(args, "--", cmd.Path), cmd.Args[1:]...)
	cmd.Path, cmd.Args = nsenter, args
	var want syscall.Stat_t
	if err := syscall.Stat(filepath.Join(netnsDir, h.ns), &want); err != nil {
		return fmt.Errorf("netns: host %s: %w", h.name, err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("netns: start in host %s: %w", h.name, err)
	}
	// Until nsenter has entered the namespace the process is not the host's: a Kill then
	// would miss it, and it would run on in a namespace no one can name. Return once it is
	// in (or gone).
	deadline := time.Now().Add(killDeadline)
	for {
		var st syscall.Stat_t
		err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid), &st)
		switch {
		case err != nil:
			return nil // exited already (its Wait says how)
		case st.Ino == want.Ino && st.Dev == want.Dev:
			return nil
		case time.Now().After(deadline):
			_ = cmd.Process.Kill()
			return fmt.Errorf("netns: start in host %s: the process did not enter the host within %s", h.name, killDeadline)
		}
		time.Sleep(time.Millisecond)
	}
}

// Pids are the processes running in the host.
func (h *Host) Pids() ([]int, error) {
	var want syscall.Stat_t
	if err := syscall.Stat(filepath.Join(netnsDir, h.ns), &want); err != nil {
		return nil, fmt.Errorf("netns: host %s: %w", h.name, err)
	}
	return pidsIn(want)
}

// Kill kills every process in the host with SIGKILL, as a host that loses its power, and
// returns once none is left. The host can be started again.
func (h *Host) Kill() error {
	deadline := time.Now().Add(killDeadline)
	for {
		pids, err := h.Pids()
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("netns: host %s: processes %v still run %s after kill -9", h.name, pids, killDeadline)
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		// A process killed may have forked a moment before: look again.
		time.Sleep(10 * time.Millisecond)
	}
}

// Cut takes the host's link down: its packets are lost as on a pulled cable, its
// processes keep running.
func (h *Host) Cut() error { return h.net.run("link", "set", "dev", h.link, "down") }

// Restore brings the host's link up again.
func (h *Host) Restore() error { return h.net.run("link", "set", "dev", h.link, "up") }

func (nw *Network) run(args ...string) error { return runIP(nw.ip, args...) }

func runIP(ip string, args ...string) error {
	cmd := exec.Command(ip, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		return fmt.Errorf("netns: ip %s: %w: %s%s", strings.Join(args, " "), err, msg, capabilityHint(msg))
	}
	return nil
}

// capabilityHint says what a refusal means.
func capabilityHint(msg string) string {
	if strings.Contains(msg, "Operation not permitted") || strings.Contains(msg, "operation not permitted") {
		return " (network namespaces need CAP_SYS_ADMIN and links CAP_NET_ADMIN: run as root, " +
			"or give the container --cap-add SYS_ADMIN --cap-add NET_ADMIN, or --privileged)"
	}
	return ""
}

// pidsIn are the processes whose network namespace is the file want describes; a zombie
// has none and is not counted.
func pidsIn(want syscall.Stat_t) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) != nil {
			continue // gone, or a zombie
		}
		if st.Ino == want.Ino && st.Dev == want.Dev {
			out = append(out, pid)
		}
	}
	return out, nil
}

// procStart is a process's start time (clock ticks after boot, field 22 of
// /proc/PID/stat): with the pid, it names the process even after its pid is reused.
func procStart(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields)+2)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// lock serialises the claim of a network number and the removal of stale runs between
// the test processes of the machine.
func lock() (func(), error) {
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("netns: open lock %s: %w", lockPath, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("netns: lock %s: %w", lockPath, err)
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// link is the part of `ip -j link` read here.
type link struct {
	Name  string `json:"ifname"`
	Alias string `json:"ifalias"`
}

func links(ip string) ([]link, error) {
	out, err := exec.Command(ip, "-j", "link", "show").Output()
	if err != nil {
		return nil, fmt.Errorf("netns: ip -j link show: %w", err)
	}
	var ls []link
	if err := json.Unmarshal(out, &ls); err != nil {
		return nil, fmt.Errorf("netns: ip -j link show: %w", err)
	}
	return ls, nil
}

// usedNumbers are the network numbers taken by a bridge of another run, or whose /24
// overlaps an address or route of the root namespace.
func usedNumbers(ip string) (map[int]bool, error) {
	used := map[int]bool{}
	ls, err := links(ip)
	if err != nil {
		return nil, err
	}
	for _, l := range ls {
		if n, ok := bridgeNumber(l.Name); ok {
			used[n] = true
		}
	}
	var routes []struct {
		Dst string `json:"dst"`
	}
	out, err := exec.Command(ip, "-j", "-4", "route", "show", "table", "all").Output()
	if err != nil {
		return nil, fmt.Errorf("netns: ip -j route show: %w", err)
	}
	if err := json.Unmarshal(out, &routes); err != nil {
		return nil, fmt.Errorf("netns: ip -j route show: %w", err)
	}
	ours := netip.MustParsePrefix("10.213.0.0/16")
	for _, r := range routes {
		p, err := netip.ParsePrefix(r.Dst)
		if err != nil {
			a, aerr := netip.ParseAddr(r.Dst)
			if aerr != nil {
				continue // "default", a broadcast entry...
			}
			p = netip.PrefixFrom(a, 32)
		}
		if !p.Overlaps(ours) {
			continue
		}
		if p.Bits() <= 16 {
			return nil, fmt.Errorf("netns: route %s covers every network this package uses (10.213.0.0/16)", r.Dst)
		}
		used[int(p.Addr().As4()[2])] = true
	}
	return used, nil
}

func bridgeNumber(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, bridgePrefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 255 || strconv.Itoa(n) != s {
		return 0, false
	}
	return n, true
}

// alive says whether the run that wrote alias still runs.
func alive(alias string) bool {
	var pid int
	var start uint64
	if _, err := fmt.Sscanf(alias, aliasPrefix+" pid=%d start=%d", &pid, &start); err != nil {
		return false // a bridge without its owner: its run died while making it
	}
	got, err := procStart(pid)
	return err == nil && got == start
}

// cleanStale removes the bridges, veths and namespaces of runs whose process is gone,
// killing what still runs in their namespaces. The caller holds the lock.
func cleanStale(ip string) error {
	ls, err := links(ip)
	if err != nil {
		return err
	}
	live := map[int]bool{}
	var stale []int
	for _, l := range ls {
		n, ok := bridgeNumber(l.Name)
		switch {
		case !ok:
		case alive(l.Alias):
			live[n] = true
		default:
			stale = append(stale, n)
		}
	}
	var errs []error
	// Namespaces of a stale run, or of no bridge at all (a run that died while closing).
	entries, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), nsPrefix)
		if !ok {
			continue
		}
		num, _, ok := strings.Cut(rest, "-")
		n, err := strconv.Atoi(num)
		if !ok || err != nil || live[n] {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join(netnsDir, e.Name()), &st) == nil {
			if pids, err := pidsIn(st); err == nil {
				for _, p := range pids {
					_ = syscall.Kill(p, syscall.SIGKILL)
				}
			}
		}
		if err := runIP(ip, "netns", "del", e.Name()); err != nil {
			errs = append(errs, err)
		}
	}
	for _, l := range ls {
		s, ok := strings.CutPrefix(l.Name, "pxn")
		if !ok || strings.HasPrefix(l.Name, bridgePrefix) {
			continue
		}
		num, _, ok := strings.Cut(s, "h")
		n, err := strconv.Atoi(num)
		if !ok || err != nil || live[n] {
			continue
		}
		if err := runIP(ip, "link", "del", l.Name); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
			errs = append(errs, err)
		}
	}
	for _, n := range stale {
		if err := runIP(ip, "link", "del", fmt.Sprintf("%s%d", bridgePrefix, n)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
