package requesthandler

import (
	"context"
	"strings"
	"sync"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
)

// changedChannel is the channel request_refresh (and so every change of a request's
// status or a subrequest's transfer) NOTIFYs. The payload is the request id, then, for a
// small request, a space and the request as request_view shows it (see
// request_changed_payload): the waiter answers with it and reads nothing.
const changedChannel = model.ChannelRequestChanged

// hub fans the process's one subscription to changedChannel out to the long polls waiting
// in memory, keyed by request id, so that thousands of waiting clients cost no database
// connection at all.
type hub struct {
	sub *pg.Subscription

	mu      sync.Mutex
	waiters map[string]map[*waiter]struct{}
	// probe is a payload this process sends itself at start; seeing it come back proves
	// that the LISTEN is in place, so no change can slip by unnoticed.
	probe     string
	probeSeen chan struct{}
	probeOnce sync.Once
}

// waiter is one long poll's interest in a request.
type waiter struct {
	// C is signalled (never closed) when the request may have changed.
	C  chan struct{}
	mu sync.Mutex
	// view is the request as the latest notification carried it; nil when it carried the
	// id alone or the listening connection was re-established (then the waiter reads).
	view []byte
}

// take returns the view the latest notification carried and forgets it; nil means "read
// the request". Notifications arrive in commit order, so the latest is the newest.
func (w *waiter) take() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	v := w.view
	w.view = nil
	return v
}

func (w *waiter) signal(view []byte) {
	w.mu.Lock()
	w.view = view
	w.mu.Unlock()
	select {
	case w.C <- struct{}{}:
	default: // a wake-up is pending already; it will find the newest view
	}
}

func newHub(sub *pg.Subscription, probe string) *hub {
	return &hub{sub: sub, waiters: map[string]map[*waiter]struct{}{}, probe: probe, probeSeen: make(chan struct{})}
}

// wait registers interest in a request; call done when no longer waiting. Registering
// before reading the request means a change between the read and the wait is not lost:
// its signal waits in the channel's buffer.
func (h *hub) wait(id string) (w *waiter, done func()) {
	w = &waiter{C: make(chan struct{}, 1)}
	h.mu.Lock()
	set := h.waiters[id]
	if set == nil {
		set = map[*waiter]struct{}{}
		h.waiters[id] = set
	}
	set[w] = struct{}{}
	h.mu.Unlock()
	return w, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if set := h.waiters[id]; set != nil {
			delete(set, w)
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

func (h *hub) signal(id string, view []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.waiters[id] {
		w.signal(view)
	}
}

// signalAll wakes every waiter: after the listening connection was re-established the
// notifications sent meanwhile are lost, so everybody must read again.
func (h *hub) signalAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, set := range h.waiters {
		for w := range set {
			w.signal(nil)
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
				id, view, _ := strings.Cut(n.Payload, " ")
				var v []byte
				if view != "" {
					v = []byte(view)
				}
				h.signal(id, v)
			}
			if h.sub.Lost() {
				// A dropped notification may have carried a newer view than one a waiter
				// holds: everybody reads.
				h.signalAll()
			}
		}
	}
}
