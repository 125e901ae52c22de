// Package pgproxy is a test-only TCP proxy between PostgreSQL clients and a server that
// loses a reply at the worst moment: after the server executed a commit, before the client
// heard of it. It is how tests prove that work whose commit reply was lost (a failover, a
// cut connection) is neither lost nor done twice.
//
// The proxy listens on 127.0.0.1:0 and dials the real server for each connection (the
// private test cluster's Unix socket, or a TCP address), speaking the protocol in clear on
// both sides (sslmode=disable). It reads the frontend protocol just enough to see each
// statement: simple queries, and the extended protocol's Parse, Bind and Execute with the
// Sync that ends them. Armed with a trigger, it lets the first statement that matches go to
// the server, swallows the server's reply up to its ReadyForQuery (the server has then
// finished with it: a COMMIT has committed, an autocommit statement has committed at its
// Sync), and closes both connections. The client sees its connection break with the
// commit in flight; the database holds the commit.
//
//	client ──Q "commit"──▶ proxy ──▶ server      (commits)
//	client ◀──── ✂ ─────── proxy ◀── server      CommandComplete, ReadyForQuery: dropped
package pgproxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
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

// Protocol codes of the untyped messages a connection may begin with.
const (
	codeSSLRequest    = 80877103
	codeGSSENCRequest = 80877104
	codeCancelRequest = 80877102
)

// maxMessage bounds one protocol message: a length beyond it means the stream is not
// what the proxy thinks it is.
const maxMessage = 1 << 30

// Trigger says whether the statement sql is the one whose reply is lost; tx are the
// statements the connection ran since its transaction block began (BEGIN), if it is in one.
type Trigger func(sql string, tx []string) bool

// Commit matches any COMMIT, as pgx's Tx.Commit sends it (a simple query), or END.
func Commit(sql string, _ []string) bool { return isCommit(sql) }

// CommitOf matches the COMMIT of a transaction that ran a statement containing substr,
// case-insensitively.
func CommitOf(substr string) Trigger {
	ran := Statement(substr)
	return func(sql string, tx []string) bool {
		if !isCommit(sql) {
			return false
		}
		for _, s := range tx {
			if ran(s, nil) {
				return true
			}
		}
		return false
	}
}

// Statement matches any statement whose text contains substr, case-insensitively: the
// statement of an autocommit call (framework/pg's Do), which commits by itself.
func Statement(substr string) Trigger {
	substr = strings.ToLower(substr)
	return func(sql string, _ []string) bool { return strings.Contains(strings.ToLower(sql), substr) }
}

// keyword is sql's first words in lower case, without a final semicolon.
func keyword(sql string) string {
	return strings.ToLower(strings.Join(strings.Fields(strings.TrimSuffix(strings.TrimSpace(sql), ";")), " "))
}

func isCommit(sql string) bool {
	switch keyword(sql) {
	case "commit", "commit work", "commit transaction", "end", "end work", "end transaction":
		return true
	}
	return false
}

func isBegin(sql string) bool {
	k := keyword(sql)
	return strings.HasPrefix(k, "begin") || strings.HasPrefix(k, "start transaction")
}

func isRollback(sql string) bool {
	k := keyword(sql)
	return k == "rollback" || k == "abort" || strings.HasPrefix(k, "rollback work") || strings.HasPrefix(k, "rollback transaction")
}

// Proxy forwards connections to one PostgreSQL server.
type Proxy struct {
	tb      testing.TB
	ln      net.Listener
	network string // of the real server: "unix" or "tcp"
	address string
	dsn     string

	mu       sync.Mutex
	armed    *arm
	counters []*counter
	links    map[*link]struct{}
	closed   bool
	cuts     int
	wg       sync.WaitGroup
}

type arm struct {
	trigger Trigger
	done    chan struct{}
}

type counter struct {
	trigger Trigger
	n       int
}

// New starts a proxy in front of the server dsn names; it stops when the test ends.
func New(tb testing.TB, dsn string) *Proxy {
	tb.Helper()
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		tb.Fatalf("pgproxy: parse %q: %v", dsn, err)
	}
	p := &Proxy{tb: tb, links: map[*link]struct{}{}}
	if strings.HasPrefix(cfg.Host, "/") {
		p.network, p.address = "unix", filepath.Join(cfg.Host, ".s.PGSQL."+strconv.Itoa(int(cfg.Port)))
	} else {
		p.network, p.address = "tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	}
	p.ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("pgproxy: listen: %v", err)
	}
	q := url.Values{"sslmode": {"disable"}}
	for k, v := range cfg.RuntimeParams {
		q.Set(k, v)
	}
	u := &url.URL{Scheme: "postgres", Host: p.ln.Addr().String(), Path: "/" + cfg.Database, RawQuery: q.Encode()}
	if cfg.Password != "" {
		u.User = url.UserPassword(cfg.User, cfg.Password)
	} else {
		u.User = url.User(cfg.User)
	}
	p.dsn = u.String()
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(p.Close)
	return p
}

// DSN reaches the server's database through the proxy.
func (p *Proxy) DSN() string { return p.dsn }

// Arm makes the proxy lose the reply to the next statement that trigger matches, on
// whichever connection sends it, and cut that connection; the statement itself reaches
// the server and completes. The returned channel is closed once the reply was dropped.
// The proxy is armed for one statement: later ones go through.
func (p *Proxy) Arm(trigger Trigger) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.armed != nil {
		p.tb.Fatalf("pgproxy: armed twice; wait for the first cut")
	}
	p.armed = &arm{trigger: trigger, done: make(chan struct{})}
	return p.armed.done
}

// Count counts the statements trigger matches from now on, on every connection, and
// returns how to read the count; the proxy forwards them as usual. A test waits on it for
// a client to have done something before it arms the proxy.
func (p *Proxy) Count(trigger Trigger) func() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := &counter{trigger: trigger}
	p.counters = append(p.counters, c)
	return func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return c.n
	}
}

// Cuts is the number of replies dropped so far.
func (p *Proxy) Cuts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cuts
}

// Close stops listening and breaks every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	_ = p.ln.Close()
	for l := range p.links {
		l.close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// observe notes a statement sql, run after tx: it counts it, and returns the arm it takes
// when it is the statement the proxy is armed for.
func (p *Proxy) observe(sql string, tx []string) *arm {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.counters {
		if c.trigger(sql, tx) {
			c.n++
		}
	}
	if p.armed == nil || !p.armed.trigger(sql, tx) {
		return nil
	}
	a := p.armed
	p.armed = nil
	return a
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		s, err := net.Dial(p.network, p.address)
		if err != nil {
			p.tb.Logf("pgproxy: dial %s %s: %v", p.network, p.address, err)
			_ = c.Close()
			continue
		}
		l := &link{p: p, client: c, server: s, stmts: map[string]string{}, portals: map[string]string{}}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			l.close()
			return
		}
		p.links[l] = struct{}{}
		p.wg.Add(2)
		p.mu.Unlock()
		go l.frontend()
		go l.backend()
	}
}

// link is one client connection and its server connection.
type link struct {
	p              *Proxy
	client, server net.Conn
	closeOnce      sync.Once

	mu sync.Mutex
	// sent counts the client's messages that the server ends with a ReadyForQuery (the
	// startup, each Query, Sync and FunctionCall); ready counts those ReadyForQuery.
	sent, ready int
	// cutAt is the message whose reply is dropped (0: none), for arm.
	cutAt int
	cut   *arm
	// executed is an arm taken by an Execute, waiting for its Sync.
	executed *arm
	stmts    map[string]string // prepared statement name → SQL
	portals  map[string]string // portal name → statement name
	// tx are the statements run since BEGIN, while in a transaction block.
	tx      []string
	inBlock bool
}

func (l *link) close() {
	l.closeOnce.Do(func() {
		_ = l.client.Close()
		_ = l.server.Close()
	})
}

func (l *link) done() {
	l.close()
	l.p.mu.Lock()
	delete(l.p.links, l)
	l.p.mu.Unlock()
	l.p.wg.Done()
}

// frontend forwards the client's messages, noting which statement each one runs.
func (l *link) frontend() {
	defer l.done()
	r := bufio.NewReader(l.client)
	if !l.startup(r) {
		return
	}
	for {
		msg, err := readTyped(r)
		if err != nil {
			return
		}
		l.note(msg)
		if _, err := l.server.Write(msg); err != nil {
			return
		}
		if msg[0] == 'X' {
			return
		}
	}
}

// startup forwards the connection's first message, answering a request for encryption
// itself; it reports whether typed messages follow.
func (l *link) startup(r *bufio.Reader) bool {
	for {
		msg, err := readUntyped(r)
		if err != nil {
			return false
		}
		switch binary.BigEndian.Uint32(msg[4:8]) {
		case codeSSLRequest, codeGSSENCRequest:
			// The proxy speaks in clear: refuse, as a server without encryption does.
			if _, err := l.client.Write([]byte{'N'}); err != nil {
				return false
			}
			continue
		case codeCancelRequest:
			_, _ = l.server.Write(msg)
			return false
		}
		l.mu.Lock()
		l.sent = 1 // the server ends the startup with a ReadyForQuery too
		l.mu.Unlock()
		_, err = l.server.Write(msg)
		return err == nil
	}
}

// note follows the statement a frontend message runs and, when it is the one the proxy is
// armed for, marks its reply to be dropped; before the message is forwarded, so before
// any byte of the reply can come back.
func (l *link) note(msg []byte) {
	body := msg[5:]
	l.mu.Lock()
	defer l.mu.Unlock()
	switch msg[0] {
	case 'Q':
		l.sent++
		sql := cstring(body)
		if a := l.p.observe(sql, l.tx); a != nil {
			l.cutAt, l.cut = l.sent, a
		}
		l.ran(sql)
	case 'P':
		name, rest := splitCString(body)
		l.stmts[name] = cstring(rest)
	case 'B':
		portal, rest := splitCString(body)
		l.portals[portal] = cstring(rest)
	case 'E':
		sql := l.stmts[l.portals[cstring(body)]]
		if a := l.p.observe(sql, l.tx); a != nil {
			l.executed = a
		}
		l.ran(sql)
	case 'C':
		if len(body) > 0 {
			name := cstring(body[1:])
			if body[0] == 'S' {
				delete(l.stmts, name)
			} else {
				delete(l.portals, name)
			}
		}
	case 'S':
		l.sent++
		if l.executed != nil {
			// An autocommit statement commits at the Sync that follows it.
			l.cutAt, l.cut, l.executed = l.sent, l.executed, nil
		}
	case 'F':
		l.sent++
	}
}

// ran records a statement in the transaction block's history.
func (l *link) ran(sql string) {
	switch {
	case isBegin(sql):
		l.tx, l.inBlock = l.tx[:0], true
	case isCommit(sql), isRollback(sql):
		l.tx, l.inBlock = l.tx[:0], false
	case l.inBlock:
		l.tx = append(l.tx, sql)
	}
}

// backend forwards the server's messages, dropping the reply the proxy is armed to lose and
// cutting the connection after it.
func (l *link) backend() {
	defer l.done()
	r := bufio.NewReader(l.server)
	for {
		msg, err := readTyped(r)
		if err != nil {
			return
		}
		l.mu.Lock()
		dropping := l.cut != nil && l.ready >= l.cutAt-1
		if msg[0] == 'Z' {
			l.ready++
		}
		finished := dropping && msg[0] == 'Z' && l.ready == l.cutAt
		a := l.cut
		l.mu.Unlock()
		if finished {
			// The server is done with the statement: a commit has committed. Counted
			// before the client can see the connection break.
			l.p.mu.Lock()
			l.p.cuts++
			l.p.mu.Unlock()
			close(a.done)
			l.close()
			return
		}
		if dropping {
			continue
		}
		if _, err := l.client.Write(msg); err != nil {
			return
		}
	}
}

// readUntyped reads a message without a type byte (the start of a connection).
func readUntyped(r *bufio.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n < 8 || n > maxMessage {
		return nil, fmt.Errorf("pgproxy: startup message of %d bytes", n)
	}
	msg := make([]byte, n)
	copy(msg, hdr[:])
	_, err := io.ReadFull(r, msg[4:])
	return msg, err
}

// readTyped reads a message with its type byte and length, whole.
func readTyped(r *bufio.Reader) ([]byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n < 4 || n > maxMessage {
		return nil, errors.New("pgproxy: message length out of range: the stream is not the protocol")
	}
	msg := make([]byte, 1+n)
	copy(msg, hdr[:])
	_, err := io.ReadFull(r, msg[5:])
	return msg, err
}

// splitCString splits b after its first NUL-terminated string.
func splitCString(b []byte) (string, []byte) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return string(b), nil
	}
	return string(b[:i]), b[i+1:]
}

func cstring(b []byte) string { s, _ := splitCString(b); return s }
