package requesthandler

import (
	"context"
	"sync"

	"github.com/pollux-storage/pollux/framework/pg"
)

// changedChannel is the channel request_refresh (and so every change of a request's
// status or a subrequest's transfer) NOTIFYs, with the request id as payload.
const changedChannel = "pollux_request_changed"

// hub fans the process's one subscription to changedChannel out to the long polls waiting
// in memory, keyed by request id, so that thousands of waiting clients cost no database
// connection at all.
type hub struct {
	sub *pg.Subscription

	mu      sync.Mutex
	waiters map[string]map[chan struct{}]struct{}
	// probe is a payload this process sends itself at start; seeing it come back proves
	// that the LISTEN is in place, so no change can slip by unnoticed.
	probe     string
	probeSeen chan struct{}
	probeOnce sync.Once
}

func newHub(sub *pg.Subscription, probe string) *hub {
	return &hub{sub: sub, waiters: map[string]map[chan struct{}]struct{}{}, probe: probe, probeSeen: make(chan struct{})}
}

// wait registers interest in a request. The channel is signalled (never closed) when the
// request may have changed; the caller re-reads it. Call done when no longer waiting.
// Registering before reading the request means a change between the read and the wait is
// not lost: its signal waits in the channel's buffer.
func (h *hub) wait(id string) (c <-chan struct{}, done func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	set := h.waiters[id]
	if set == nil {
		set = map[chan struct{}]struct{}{}
		h.waiters[id] = set
	}
	set[ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if set := h.waiters[id]; set != nil {
			delete(set, ch)
			if len(set) == 0 {
				delete(h.waiters, id)
			}
		}
	}
}

// count is the number of long polls waiting.
func (h *hub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, set := range h.waiters {
		n += len(set)
	}
	return n
}

func (h *hub) signal(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.waiters[id] {
		select {
		case ch <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
}

// signalAll wakes every waiter: after the listening connection was re-established the
// notifications sent meanwhile are lost, so everybody must look again.
func (h *hub) signalAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, set := range h.waiters {
		for ch := range set {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

// run delivers notifications until ctx ends.
func (h *hub) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case n := <-h.sub.C:
			switch {
			case n.Reconnected:
				h.signalAll()
			case n.Payload == h.probe:
				h.probeOnce.Do(func() { close(h.probeSeen) })
			default:
				h.signal(n.Payload)
			}
		}
	}
}
