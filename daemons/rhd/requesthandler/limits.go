package requesthandler

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pollux-storage/pollux/model"
)

// pollLimit counts the long polls each user has waiting on this rhd. A waiting poll holds
// a connection, a goroutine and a waiter in the hub for up to --max-wait; without a bound
// one user (a runaway script, a stolen token) could hold them all and starve everyone
// else's. The bound is per instance because what it protects is the instance's: another
// rhd behind the alias has its own.
type pollLimit struct {
	max int // 0: no limit

	mu      sync.Mutex
	waiting map[string]int
}

func newPollLimit(max int) *pollLimit {
	return &pollLimit{max: max, waiting: map[string]int{}}
}

// acquire reserves a waiting poll for user; release gives it back. Over the limit it
// refuses with 429 (kind unavailable: the clients retry after a pause and through other
// request handlers) naming the limit, and reserves nothing.
func (l *pollLimit) acquire(user string) (release func(), herr *httpError) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max > 0 && l.waiting[user] >= l.max {
		return nil, &httpError{status: http.StatusTooManyRequests, kind: model.ErrorKindUnavailable, retryAfter: time.Second,
			message: fmt.Sprintf("user %s has %d long polls waiting on this request handler, its limit (--max-long-polls-per-user): "+
				"wait for one to answer before starting another", user, l.waiting[user])}
	}
	l.waiting[user]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.waiting[user]--; l.waiting[user] == 0 {
				delete(l.waiting, user) // the map holds only users waiting now
			}
		})
	}, nil
}

// admission bounds the calls doing database work at once on this rhd. Past the pool's
// connections a call waits for one inside pgx, for up to the call's whole database budget
// (30 s): under a burst far beyond what the database commits, every client would wait that
// long and then hear "cannot reach its database", which is not what happened. With the
// gate, a call that finds every slot taken waits at most --admission-wait for one, and is
// then refused at once with 503 and Retry-After: the clients back off (and try another
// request handler), the requests that were admitted go on at full speed, and nothing is
// ever stored half-way (a refused call touched nothing).
type admission struct {
	slots      chan struct{}
	wait       time.Duration
	retryAfter time.Duration
	refused    prometheus.Counter
}

func newAdmission(max int, wait, retryAfter time.Duration) *admission {
	return &admission{slots: make(chan struct{}, max), wait: wait, retryAfter: retryAfter,
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pollux_rhd_admission_refused_total",
			Help: "Calls refused with 503 and Retry-After because every database slot (--max-db-calls) stayed taken for --admission-wait.",
		})}
}

// enter takes a slot, waiting at most the admission wait (less if ctx ends sooner);
// release gives it back. Refused, it reserves nothing.
func (a *admission) enter(ctx context.Context) (release func(), herr *httpError) {
	select {
	case a.slots <- struct{}{}:
		return a.leave, nil
	default:
	}
	t := time.NewTimer(a.wait)
	defer t.Stop()
	select {
	case a.slots <- struct{}{}:
		return a.leave, nil
	case <-t.C:
	case <-ctx.Done():
	}
	a.refused.Inc()
	return nil, &httpError{status: http.StatusServiceUnavailable, kind: model.ErrorKindUnavailable, retryAfter: a.retryAfter,
		message: fmt.Sprintf("the request handler is busy: all %d of its database slots stayed taken for %s (--max-db-calls); retry after %s, or through another request handler",
			cap(a.slots), a.wait, a.retryAfter)}
}

func (a *admission) leave() { <-a.slots }

// inFlight is how many calls hold a slot now.
func (a *admission) inFlight() int { return len(a.slots) }
