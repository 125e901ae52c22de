package pgha

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stat is what /proc/<pid>/stat says about a process.
type stat struct {
	pid, ppid int
	comm      string
	state     byte
}

func readStat(pid int) (stat, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return stat{}, false
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses, so it ends at the
	// last ')'.
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return stat{}, false
	}
	rest := strings.Fields(string(b[end+1:]))
	if len(rest) < 2 {
		return stat{}, false
	}
	ppid, _ := strconv.Atoi(rest[1])
	return stat{pid: pid, ppid: ppid, comm: string(b[open+1 : end]), state: rest[0][0]}, true
}

// alive reports whether pid runs; a zombie has ended (its parent has not reaped it yet).
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	s, ok := readStat(pid)
	return ok && s.state != 'Z' && s.state != 'X'
}

// processes returns every live process by pid.
func processes() (map[int]stat, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	all := map[int]stat{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if s, ok := readStat(pid); ok && s.state != 'Z' && s.state != 'X' {
			all[pid] = s
		}
	}
	return all, nil
}

// tree returns root and its live descendants. PostgreSQL's children put themselves in
// sessions of their own, so a process group would miss them: the tree is followed by
// parent pid.
func tree(root int) ([]int, error) {
	all, err := processes()
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, s := range all {
		children[s.ppid] = append(children[s.ppid], s.pid)
	}
	var out []int
	todo := []int{root}
	for len(todo) > 0 {
		p := todo[0]
		todo = todo[1:]
		if _, ok := all[p]; !ok {
			continue
		}
		out = append(out, p)
		todo = append(todo, children[p]...)
	}
	sort.Ints(out)
	return out, nil
}

// killTree kills root, its descendants and extra with SIGKILL all at once, as a host that
// dies takes every process with it, and waits until they are gone. The processes are
// stopped (SIGSTOP) first, until no new one appears, so that none forks a child (a
// postmaster starting a backend) between the last look and the kill.
func killTree(ctx context.Context, root int, extra ...int) ([]int, error) {
	stopped := map[int]bool{}
	for _, p := range extra {
		if alive(p) {
			stopped[p] = true
			_ = syscall.Kill(p, syscall.SIGSTOP)
		}
	}
	for round := 0; ; round++ {
		pids, err := tree(root)
		if err != nil {
			return nil, err
		}
		grew := false
		for _, p := range pids {
			if !stopped[p] {
				stopped[p], grew = true, true
				_ = syscall.Kill(p, syscall.SIGSTOP)
			}
		}
		if !grew || round == 20 {
			break
		}
	}
	var pids []int
	for p := range stopped {
		pids = append(pids, p)
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	sort.Ints(pids)
	return pids, waitGone(ctx, pids, 10*time.Second)
}

// waitGone waits until none of pids is alive.
func waitGone(ctx context.Context, pids []int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		var left []string
		for _, p := range pids {
			if alive(p) {
				left = append(left, strconv.Itoa(p))
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %s still alive after %s", strings.Join(left, ", "), within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// readPID reads the first line of a pid file (ours, or PostgreSQL's postmaster.pid).
func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		return 0
	}
	return pid
}

// tailFile returns the last n lines of a file, or why it cannot.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// errBind marks a failure to bind the chosen address: another process has it.
var errBind = errors.New("address already in use")

// bindFailed reports whether a member's logs say its postgres could not bind its address.
func bindFailed(paths ...string) bool {
	for _, p := range paths {
		matches, _ := filepath.Glob(p)
		for _, m := range matches {
			b, err := os.ReadFile(m)
			if err == nil && (bytes.Contains(b, []byte("Address already in use")) || bytes.Contains(b, []byte("could not bind"))) {
				return true
			}
		}
	}
	return false
}

// keeperExits records how each keeper this process started ended, by pid, so that a check
// that finds a keeper gone says how it went (its exit status, or the signal that ended it)
// and when, instead of only that it is gone: a keeper that dies before it logs a line
// leaves nothing else to go on.
var keeperExits = exitLog{by: map[int]string{}}

type exitLog struct {
	mu sync.Mutex
	by map[int]string
}

func (l *exitLog) record(pid int, err error) {
	how := "exit status 0"
	if err != nil {
		how = err.Error()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.by[pid] = fmt.Sprintf("%s at %s", how, time.Now().Format("15:04:05.000"))
}

// how is ": it ended with <how>" for a keeper this process saw end, else "".
func (l *exitLog) how(pid int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h, ok := l.by[pid]; ok {
		return ": it ended with " + h
	}
	return ""
}
