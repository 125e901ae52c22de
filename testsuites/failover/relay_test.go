package failover_test

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// relay carries TCP from the hosts' network (a netns bridge address) to one formation
// node, which listens on a loopback address of the test's own namespace that no host can
// reach. A refused dial (the node is dead) closes the caller's connection at once, as the
// dead node itself would, so a multi-host DSN moves on to the next node. Keepalives on the
// hosts' side end the relayed session when a host is cut off, as a server's own
// keepalives would end a session whose client vanished.
type relay struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

// newRelay listens on addr:0 (the kernel chooses the port) and relays to target.
func newRelay(t *testing.T, addr, target string) *relay {
	t.Helper()
	lc := net.ListenConfig{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 5 * time.Second, Interval: time.Second, Count: 3}}
	ln, err := lc.Listen(t.Context(), "tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Fatalf("relay to %s: %v", target, err)
	}
	r := &relay{ln: ln, target: target, conns: map[net.Conn]bool{}}
	r.wg.Add(1)
	go r.accept()
	t.Cleanup(r.close)
	return r
}

// Addr is host:port of the relay.
func (r *relay) Addr() string { return r.ln.Addr().String() }

func (r *relay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.wg.Add(1)
		go r.serve(c)
	}
}

func (r *relay) serve(c net.Conn) {
	defer r.wg.Done()
	s, err := net.DialTimeout("tcp", r.target, 2*time.Second)
	if err != nil {
		c.Close()
		return
	}
	if !r.track(c, s) {
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(s, c)
	go pipe(c, s)
	<-done // either side ended: end both
	c.Close()
	s.Close()
	<-done
	r.mu.Lock()
	delete(r.conns, c)
	delete(r.conns, s)
	r.mu.Unlock()
}

// track records a relayed pair, or closes it when the relay is closing.
func (r *relay) track(cs ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conns == nil {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		r.conns[c] = true
	}
	return true
}

func (r *relay) close() {
	r.ln.Close()
	r.mu.Lock()
	for c := range r.conns {
		c.Close()
	}
	r.conns = nil
	r.mu.Unlock()
	r.wg.Wait()
}
