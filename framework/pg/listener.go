package pg

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"go.uber.org/zap"
)

// Notification is one NOTIFY, or a wake-up sent to every subscriber after the listening
// connection was re-established (Reconnected): NOTIFYs sent while it was down are lost, so
// subscribers must look at the database again.
type Notification struct {
	Channel     string
	Payload     string
	Reconnected bool
}

// Subscription receives the notifications of one channel. Its buffer is bounded and a full
// buffer drops new notifications, so a slow subscriber never stalls the others; subscribers
// treat a notification as "look again", never as the only record of an event, and one that
// uses payloads asks Lost whether any were dropped.
type Subscription struct {
	C       <-chan Notification
	c       chan Notification
	channel string
	l       *Listener
	lost    atomic.Bool
}

// Lost reports whether a notification was dropped (the buffer was full) since the last
// call: a subscriber that keeps what payloads say must then look at the database again.
func (s *Subscription) Lost() bool { return s.lost.Swap(false) }

// Unsubscribe stops delivery; the channel is not closed (a pending receive just waits).
func (s *Subscription) Unsubscribe() { s.l.unsubscribe(s) }

// Listener holds the process's single LISTEN connection and fans its notifications out.
type Listener struct {
	db  *DB
	log *zap.Logger

	mu      sync.Mutex
	subs    map[string]map[*Subscription]struct{}
	changed chan struct{} // wakes the loop to LISTEN to a new channel
	ready   chan struct{} // closed once the first connection listens
	readyOK bool
}

// NewListener returns a listener that starts listening when Run is called.
func NewListener(db *DB, log *zap.Logger) *Listener {
	if log == nil {
		log = zap.NewNop()
	}
	return &Listener{db: db, log: log, subs: map[string]map[*Subscription]struct{}{},
		changed: make(chan struct{}, 1), ready: make(chan struct{})}
}

// Subscribe returns a subscription to channel with the given buffer size (at least 1).
// It may be called before or after Run starts.
func (l *Listener) Subscribe(channel string, buffer int) *Subscription {
	c := make(chan Notification, max(buffer, 1))
	s := &Subscription{C: c, c: c, channel: channel, l: l}
	l.mu.Lock()
	set, known := l.subs[channel]
	if !known {
		set = map[*Subscription]struct{}{}
		l.subs[channel] = set
	}
	set[s] = struct{}{}
	l.mu.Unlock()
	if !known {
		select {
		case l.changed <- struct{}{}:
		default:
		}
	}
	return s
}

func (l *Listener) unsubscribe(s *Subscription) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.subs[s.channel], s)
}

// Ready is closed once the listener first listens on its channels: those subscribed before
// Run. A channel subscribed later is listened to soon after, but Ready does not wait for
// it, so a NOTIFY sent right after Ready may miss such a channel.
func (l *Listener) Ready() <-chan struct{} { return l.ready }

// Run listens until ctx ends, reconnecting with backoff whenever the connection is lost.
func (l *Listener) Run(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		err := l.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		delay := Backoff(min(attempt, 8))
		l.log.Warn("listen connection lost; reconnecting", zap.Error(err), zap.Duration("delay", delay))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
	}
}

// session runs one connection's life: connect, LISTEN to everything subscribed, deliver.
func (l *Listener) session(ctx context.Context) error {
	cfg := l.db.pool.Config().ConnConfig.Copy()
	// Interrupt a wait with a read deadline, not pgx's default cancel request: a cancel that
	// arrives late would kill the next LISTEN instead of the wait.
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: c.Conn()}
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect listener: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	listening := map[string]bool{}
	first := true
	for {
		if err := l.listenNew(ctx, conn, listening); err != nil {
			return err
		}
		if first {
			first = false
			l.mu.Lock()
			wasReady := l.readyOK
			l.readyOK = true
			l.mu.Unlock()
			if !wasReady {
				close(l.ready)
			} else {
				l.broadcastReconnected()
			}
		}
		n, err := l.wait(ctx, conn)
		switch {
		case err == nil && n != nil:
			l.deliver(Notification{Channel: n.Channel, Payload: n.Payload})
		case err == nil: // a new channel was subscribed: loop to LISTEN to it
		case ctx.Err() != nil:
			return ctx.Err()
		default:
			return fmt.Errorf("wait for notification: %w", err)
		}
	}
}

// wait returns the next notification, or nil when a new channel was subscribed meanwhile.
func (l *Listener) wait(ctx context.Context, conn *pgx.Conn) (*pgconn.Notification, error) {
	waitCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-l.changed:
			cancel()
		case <-done:
		}
	}()
	n, err := conn.WaitForNotification(waitCtx)
	if err != nil && waitCtx.Err() != nil && ctx.Err() == nil {
		// Interrupted by a read deadline, which leaves the connection usable.
		if conn.IsClosed() {
			return nil, fmt.Errorf("listener connection closed while adding a channel")
		}
		return nil, nil
	}
	return n, err
}

func (l *Listener) listenNew(ctx context.Context, conn *pgx.Conn, listening map[string]bool) error {
	l.mu.Lock()
	var todo []string
	for ch := range l.subs {
		if !listening[ch] {
			todo = append(todo, ch)
		}
	}
	l.mu.Unlock()
	for _, ch := range todo {
		if _, err := conn.Exec(ctx, "listen "+pgx.Identifier{ch}.Sanitize()); err != nil {
			return fmt.Errorf("listen %s: %w", ch, err)
		}
		listening[ch] = true
	}
	return nil
}

func (l *Listener) deliver(n Notification) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for s := range l.subs[n.Channel] {
		select {
		case s.c <- n:
		default: // full: the subscriber has a wake-up pending already, but not this payload
			s.lost.Store(true)
		}
	}
}

func (l *Listener) broadcastReconnected() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for ch, set := range l.subs {
		for s := range set {
			select {
			case s.c <- Notification{Channel: ch, Reconnected: true}:
			default:
			}
		}
	}
}
