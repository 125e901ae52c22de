package claim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pollux-storage/pollux/framework/pg"
)

// Step claims and processes at most one batch and returns how many rows it claimed.
type Step func(ctx context.Context) (int, error)

// Config declares a pool.
type Config struct {
	// Name identifies the pool in logs and metrics ("put", "schedule").
	Name string
	// Workers is the number of goroutines.
	Workers int
	// Batch is the most rows one Step claims; a Step returning Batch rows wakes a peer.
	Batch int
	// Channels are NOTIFY channels meaning "there may be work for this pool".
	Channels []string
	// PollInterval bounds how long an idle worker sleeps without a wake-up; 0 means 1 s.
	PollInterval time.Duration
	// Step does the work.
	Step Step
}

// Pool is a running set of workers.
type Pool struct {
	cfg     Config
	log     *zap.Logger
	metrics *Metrics
	subs    []*pg.Subscription

	wake      chan struct{}
	stopping  chan struct{}
	stopOnce  sync.Once
	workAbort context.CancelFunc
	done      sync.WaitGroup
}

// Subscriber hands out NOTIFY subscriptions; *pg.Listener is one.
type Subscriber interface {
	Subscribe(channel string, buffer int) *pg.Subscription
}

// New returns a pool that starts working when Start is called. listener may be nil for a
// pool woken only by polling.
func New(cfg Config, listener Subscriber, metrics *Metrics, log *zap.Logger) (*Pool, error) {
	switch {
	case cfg.Name == "":
		return nil, errors.New("claim pool: a name is required")
	case cfg.Workers < 1:
		return nil, fmt.Errorf("claim pool %s: workers must be at least 1, got %d", cfg.Name, cfg.Workers)
	case cfg.Batch < 1:
		return nil, fmt.Errorf("claim pool %s: batch must be at least 1, got %d", cfg.Name, cfg.Batch)
	case cfg.Step == nil:
		return nil, fmt.Errorf("claim pool %s: a step is required", cfg.Name)
	case len(cfg.Channels) > 0 && listener == nil:
		return nil, fmt.Errorf("claim pool %s: channels %v need a listener", cfg.Name, cfg.Channels)
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	if log == nil {
		log = zap.NewNop()
	}
	p := &Pool{cfg: cfg, log: log.With(zap.String("pool", cfg.Name)), metrics: metrics,
		wake: make(chan struct{}, 1), stopping: make(chan struct{})}
	for _, ch := range cfg.Channels {
		p.subs = append(p.subs, listener.Subscribe(ch, 1))
	}
	return p, nil
}

// Name returns the pool's name.
func (p *Pool) Name() string { return p.cfg.Name }

// Start launches the workers. Cancelling ctx aborts steps in flight; use Stop to drain.
func (p *Pool) Start(ctx context.Context) error {
	workCtx, cancel := context.WithCancel(ctx)
	p.workAbort = cancel
	p.metrics.workers.WithLabelValues(p.cfg.Name).Set(float64(p.cfg.Workers))
	for _, s := range p.subs {
		go p.forward(workCtx, s)
	}
	p.done.Add(p.cfg.Workers)
	for i := range p.cfg.Workers {
		go p.work(workCtx, i)
	}
	p.log.Info("pool started", zap.Int("workers", p.cfg.Workers), zap.Int("batch", p.cfg.Batch),
		zap.Strings("channels", p.cfg.Channels), zap.Duration("poll_interval", p.cfg.PollInterval))
	return nil
}

// Stop stops claiming and waits for steps in flight. When ctx ends first, their context is
// cancelled (their transactions roll back) and Stop returns ctx's error once they exit.
func (p *Pool) Stop(ctx context.Context) error {
	p.stopOnce.Do(func() { close(p.stopping) })
	for _, s := range p.subs {
		s.Unsubscribe()
	}
	finished := make(chan struct{})
	go func() { p.done.Wait(); close(finished) }()
	defer func() {
		if p.workAbort != nil {
			p.workAbort()
		}
	}()
	select {
	case <-finished:
		p.log.Info("pool drained")
		return nil
	case <-ctx.Done():
		p.workAbort()
		<-finished
		p.log.Warn("pool drain deadline passed; aborted steps in flight")
		return fmt.Errorf("drain pool %s: %w", p.cfg.Name, ctx.Err())
	}
}

// forward turns notifications into wake-ups of one idle worker.
func (p *Pool) forward(ctx context.Context, s *pg.Subscription) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.stopping:
			return
		case <-s.C:
			p.metrics.wakeups.WithLabelValues(p.cfg.Name, "notify").Inc()
			p.signal()
		}
	}
}

// Wake wakes one idle worker, as a notification would, for a hint that reaches the process
// another way than through PostgreSQL (a peer's HTTP call, a resource coming free).
func (p *Pool) Wake() {
	p.metrics.wakeups.WithLabelValues(p.cfg.Name, "hint").Inc()
	p.signal()
}

func (p *Pool) signal() {
	select {
	case p.wake <- struct{}{}:
	default: // a wake-up is pending already
	}
}

func (p *Pool) work(ctx context.Context, worker int) {
	defer p.done.Done()
	busy := p.metrics.busy.WithLabelValues(p.cfg.Name)
	failures := 0
	for {
		select {
		case <-p.stopping:
			return
		default:
		}
		busy.Inc()
		start := time.Now()
		n, err := p.cfg.Step(ctx)
		busy.Dec()
		p.metrics.duration.WithLabelValues(p.cfg.Name).Observe(time.Since(start).Seconds())
		switch {
		case err != nil && ctx.Err() != nil:
			return // aborted by the drain deadline
		case err != nil:
			failures++
			p.metrics.errors.WithLabelValues(p.cfg.Name).Inc()
			delay := pg.Backoff(min(failures+3, 10))
			p.log.Error("claim step failed", zap.Int("worker", worker), zap.Duration("retry_in", delay), zap.Error(err))
			if !p.sleep(delay, false) {
				return
			}
			continue
		}
		failures = 0
		p.metrics.rows.WithLabelValues(p.cfg.Name).Add(float64(n))
		switch {
		case n >= p.cfg.Batch:
			// The queue may hold more than one worker can take: recruit a peer.
			p.metrics.wakeups.WithLabelValues(p.cfg.Name, "peer").Inc()
			p.signal()
		default:
			// A part batch means the queue looked empty. Rows that arrived while we worked
			// came with a NOTIFY, which is pending in p.wake: sleeping loses nothing, and an
			// empty claim after every step would double the transactions of a trickle.
			if !p.sleep(jitter(p.cfg.PollInterval), true) {
				return
			}
		}
	}
}

// sleep waits for d, a wake-up (when wakeable) or Stop; it returns false on Stop.
func (p *Pool) sleep(d time.Duration, wakeable bool) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	var wake <-chan struct{}
	if wakeable {
		wake = p.wake
	}
	select {
	case <-p.stopping:
		return false
	case <-wake:
		return true
	case <-t.C:
		if wakeable {
			p.metrics.wakeups.WithLabelValues(p.cfg.Name, "poll").Inc()
		}
		return true
	}
}

// jitter spreads polls over ±20 % so that idle workers do not query in lockstep.
func jitter(d time.Duration) time.Duration {
	return d*4/5 + rand.N(d*2/5+1)
}

// Metrics are the claim loop's Prometheus metrics, shared by every pool of a process.
type Metrics struct {
	rows     *prometheus.CounterVec
	errors   *prometheus.CounterVec
	duration *prometheus.HistogramVec
	busy     *prometheus.GaugeVec
	workers  *prometheus.GaugeVec
	wakeups  *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollux_claim_rows_total", Help: "Rows claimed, by pool.",
		}, []string{"pool"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollux_claim_errors_total", Help: "Claim steps that failed after the database layer's retries, by pool.",
		}, []string{"pool"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pollux_claim_duration_seconds", Help: "Time of one claim step (claim, decide, work), by pool.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"pool"}),
		busy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pollux_pool_busy_workers", Help: "Workers inside a step, by pool.",
		}, []string{"pool"}),
		workers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pollux_pool_workers", Help: "Workers configured, by pool.",
		}, []string{"pool"}),
		wakeups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollux_claim_wakeups_total", Help: "Idle workers woken, by pool and reason (notify, hint, poll, peer).",
		}, []string{"pool", "reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.rows, m.errors, m.duration, m.busy, m.workers, m.wakeups)
	}
	return m
}
