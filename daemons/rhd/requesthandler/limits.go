package requesthandler

import (
	"fmt"
	"net/http"
	"sync"

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
		return nil, &httpError{status: http.StatusTooManyRequests, kind: model.ErrorKindUnavailable,
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
