// Package rhdtest runs rhd in-process for tests (its own and the clients'), on a free
// port, against a database the test provides, and stops it when the test ends.
package rhdtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pollux-storage/pollux/daemons/rhd/requesthandler"
	"github.com/pollux-storage/pollux/framework/daemon"
)

// Instance is one running rhd.
type Instance struct {
	// Addr is the clients' listener, host:port.
	Addr string
	// URL is http://Addr.
	URL string
	// Log is everything the daemon logged (JSON lines).
	Log *Buffer

	stop     context.CancelFunc
	exited   chan int
	once     sync.Once
	exitCode int
}

// WriteTokens writes a tokens file mapping token to user into a temporary directory and
// returns its path.
func WriteTokens(tb testing.TB, users map[string]string) string {
	tb.Helper()
	var b strings.Builder
	b.WriteString("# TOKEN USER\n")
	for token, user := range users {
		fmt.Fprintf(&b, "%s %s\n", token, user)
	}
	path := filepath.Join(tb.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		tb.Fatalf("write tokens file: %v", err)
	}
	return path
}

// Start runs rhd on 127.0.0.1 with a free port against dsn and waits until it listens.
// Extra flags go after the defaults, so they override them.
func Start(tb testing.TB, dsn, tokensFile string, flags ...string) *Instance {
	tb.Helper()
	ctx, stop := context.WithCancel(context.Background())
	in := &Instance{Log: &Buffer{}, stop: stop, exited: make(chan int, 1)}
	args := append([]string{"--listen", "127.0.0.1:0", "--tokens-file", tokensFile, "--log-format", "json",
		"--drain-timeout", "10s"}, flags...)
	go func() {
		in.exited <- daemon.Run(ctx, args, []string{"POLLUX_DATABASE_URL=" + dsn}, io.Discard, in.Log, requesthandler.Spec("test"))
	}()
	tb.Cleanup(func() {
		if code := in.Stop(); code != 0 {
			tb.Errorf("rhd exited %d after the test:\n%s", code, in.Log)
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if addr := in.Log.listening(); addr != "" {
			in.Addr, in.URL = addr, "http://"+addr
			return in
		}
		select {
		case code := <-in.exited:
			in.exited <- code
			tb.Fatalf("rhd exited %d before listening:\n%s", code, in.Log)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			tb.Fatalf("rhd did not listen within 60s:\n%s", in.Log)
		}
	}
}

// Stop drains the daemon (as SIGTERM would) and returns its exit code; later calls return
// the same code.
func (in *Instance) Stop() int {
	in.once.Do(func() {
		in.stop()
		select {
		case in.exitCode = <-in.exited:
		case <-time.After(60 * time.Second):
			in.exitCode = -1
		}
	})
	return in.exitCode
}

// Buffer is a bytes.Buffer safe for a daemon writing while the test reads.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Lines returns the JSON log lines whose msg is msg, decoded.
func (b *Buffer) Lines(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(b.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func (b *Buffer) listening() string {
	for _, m := range b.Lines("request handler listening") {
		if addr, ok := m["addr"].(string); ok {
			return addr
		}
	}
	return ""
}
