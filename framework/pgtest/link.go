package pgtest

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// Link is a TCP relay between the code under test and the test server that the test can
// cut, as a database host that went away: every open connection is dropped and new ones
// are closed as soon as they arrive, until Restore. Its listener stays bound throughout
// (127.0.0.1, a port the kernel chose), so that a restored link is at the same address.
type Link struct {
	// DSN reaches the database of the DSN given to NewLink through the link.
	DSN string

	ln     net.Listener
	target func() (net.Conn, error)

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

// NewLink starts a link to the server and database of dsn, closed when the test ends.
func NewLink(tb testing.TB, dsn string) *Link {
	tb.Helper()
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		tb.Fatalf("pgtest: link: parse dsn: %v", err)
	}
	network, addr := "tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	if strings.HasPrefix(cfg.Host, "/") {
		network, addr = "unix", filepath.Join(cfg.Host, fmt.Sprintf(".s.PGSQL.%d", cfg.Port))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("pgtest: link: listen: %v", err)
	}
	l := &Link{ln: ln, conns: map[net.Conn]bool{},
		target: func() (net.Conn, error) { return net.Dial(network, addr) }}
	if l.DSN, err = viaAddress(dsn, ln.Addr().String()); err != nil {
		ln.Close()
		tb.Fatalf("pgtest: link: %v", err)
	}
	l.wg.Add(1)
	go l.accept()
	tb.Cleanup(l.close)
	return l
}

// viaAddress rewrites dsn to reach the server at addr (host:port over TCP).
func viaAddress(dsn, addr string) (string, error) {
	host, port, _ := net.SplitHostPort(addr)
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("parse dsn: %w", err)
		}
		q := u.Query()
		q.Del("host")
		q.Del("port")
		u.Host, u.RawQuery = addr, q.Encode()
		return u.String(), nil
	}
	// In a keyword/value string the last value of a keyword wins.
	return dsn + " host=" + host + " port=" + port, nil
}

// Cut drops every connection through the link and closes each new one at once.
func (l *Link) Cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = true
	for c := range l.conns {
		c.Close()
	}
}

// Restore relays new connections again.
func (l *Link) Restore() {
	l.mu.Lock()
	l.cut = false
	l.mu.Unlock()
}

func (l *Link) accept() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return // closed with the test
		}
		l.mu.Lock()
		if l.cut {
			l.mu.Unlock()
			c.Close()
			continue
		}
		l.conns[c] = true
		l.mu.Unlock()
		l.wg.Add(1)
		go l.relay(c)
	}
}

func (l *Link) relay(c net.Conn) {
	defer l.wg.Done()
	server, err := l.target()
	l.mu.Lock()
	if err == nil && !l.cut {
		l.conns[server] = true
	} else if server != nil {
		server.Close()
		server = nil
	}
	l.mu.Unlock()
	if server == nil {
		l.forget(c)
		return
	}
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(server, c)
		// Either side ending ends both: a half-open session is not what a real cut leaves.
		server.Close()
		c.Close()
		close(done)
	}()
	_, _ = io.Copy(c, server)
	server.Close()
	c.Close()
	<-done
	l.forget(c, server)
}

func (l *Link) forget(cs ...net.Conn) {
	l.mu.Lock()
	for _, c := range cs {
		c.Close()
		delete(l.conns, c)
	}
	l.mu.Unlock()
}

func (l *Link) close() {
	l.ln.Close()
	l.Cut()
	l.wg.Wait()
}
