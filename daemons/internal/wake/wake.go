// Package wake sends the wake-up hints with which a placing daemon (stagerd, schedulerd)
// tells a disk server that a transfer was placed on it, after the placement committed.
//
// A hint is only a hint: the database holds the placement and the disk server polls, so a
// hint that is lost, late or sent to a server that is down costs latency, never work. That
// is why hints are sent in the background, bounded in number and time, and never retried,
// and why the disk servers need not LISTEN (PostgreSQL signals every listening session at
// every NOTIFY, so listeners must not grow with the disk servers).
package wake

import (
	"context"
	"crypto/tls"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Path is where a disk server's mover listener takes hints (mover.PathWake; repeated here
// so that a placing daemon does not link the mover).
const Path = "/v1/wake"

// timeout bounds one hint: a server that does not answer within it polls anyway.
const timeout = 2 * time.Second

// inFlight bounds the hints under way at once; past it a hint is dropped (counted).
const inFlight = 64

// Hinter sends hints.
type Hinter struct {
	client  *http.Client
	log     *zap.Logger
	slots   chan struct{}
	wg      sync.WaitGroup
	results *prometheus.CounterVec
}

// New returns a Hinter; reg may be nil. tlsConfig verifies movers that serve HTTPS (nil:
// against the system's pool).
func New(log *zap.Logger, reg prometheus.Registerer, tlsConfig *tls.Config) *Hinter {
	if log == nil {
		log = zap.NewNop()
	}
	h := &Hinter{
		client: &http.Client{Timeout: timeout, Transport: &http.Transport{
			MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute, DisableCompression: true, TLSClientConfig: tlsConfig,
		}},
		log:   log,
		slots: make(chan struct{}, inFlight),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollux_wake_hints_total", Help: "Wake-up hints sent to disk servers, by result (sent, failed, dropped).",
		}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(h.results)
	}
	return h
}

// Hint tells each distinct base URL among urls, in the background, that it has work.
// Empty URLs are skipped.
func (h *Hinter) Hint(urls ...string) {
	seen := map[string]bool{}
	for _, u := range urls {
		if u == "" || seen[u] {
			continue
		}
		seen[u] = true
		select {
		case h.slots <- struct{}{}:
		default:
			h.results.WithLabelValues("dropped").Inc()
			continue
		}
		h.wg.Add(1)
		go func() {
			defer func() { <-h.slots; h.wg.Done() }()
			h.send(u)
		}()
	}
}

func (h *Hinter) send(base string) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(base, "/")+Path, nil)
	if err == nil {
		var resp *http.Response
		if resp, err = h.client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				err = &statusError{resp.StatusCode}
			}
		}
	}
	if err != nil {
		h.results.WithLabelValues("failed").Inc()
		// Debug: the disk server's poll covers it, and a dead server would flood the log.
		h.log.Debug("wake-up hint not delivered", zap.String("disk_server_url", base), zap.Error(err))
		return
	}
	h.results.WithLabelValues("sent").Inc()
}

type statusError struct{ code int }

func (e *statusError) Error() string { return "answered " + http.StatusText(e.code) }

// Name names the service.
func (h *Hinter) Name() string { return "wake" }

// Start does nothing: hints are sent as they come.
func (h *Hinter) Start(context.Context) error { return nil }

// Stop waits for hints under way (each is bounded by the timeout).
func (h *Hinter) Stop(context.Context) error {
	h.wg.Wait()
	h.client.CloseIdleConnections()
	return nil
}
