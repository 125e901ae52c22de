package leader

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pollux-storage/pollux/framework/pg"
)

// ErrFenced is wrapped by Store.Fence's error when the epoch is not current or the lease
// has expired: the caller no longer leads.
var ErrFenced = errors.New("fenced: this instance no longer leads")

// Candidate is the instance that stands for election.
type Candidate struct {
	InstanceID string
	Host       string
	// Preferred takes the lease back from a holder that is not preferred.
	Preferred bool
}

// Lease is a lease as one election round left it.
type Lease struct {
	Epoch      int64
	Leader     bool // the candidate holds it
	HolderID   string
	HolderHost string
	ExpiresIn  time.Duration
}

// Store keeps leases in the database. Every method runs its statements on q, inside the
// transaction the caller chose.
type Store interface {
	// Acquire runs one election round for the lease.
	Acquire(ctx context.Context, q pg.Querier, name string, c Candidate, ttl time.Duration) (Lease, error)
	// Resign gives the lease up if c holds it at epoch; anything else is ignored.
	Resign(ctx context.Context, q pg.Querier, name, instanceID string, epoch int64) error
	// Fence lets q's transaction go on only while epoch is current; when it is not, the
	// error wraps ErrFenced.
	Fence(ctx context.Context, q pg.Querier, name string, epoch int64) error
	// Record journals rows of work done under epoch, in q's transaction.
	Record(ctx context.Context, q pg.Querier, name string, epoch int64, instanceID string, rows int) error
}

// Config declares one lease's election.
type Config struct {
	// Name identifies the lease ("jobmanagerd.expire").
	Name string
	// Candidate is this instance.
	Candidate Candidate
	// TTL is how long a lease lasts without renewal; 0 means 3 s.
	TTL time.Duration
	// RenewInterval is how often a round runs; 0 means TTL/3. It must be under TTL.
	RenewInterval time.Duration
}

// Elector takes part in one lease's election until stopped.
type Elector struct {
	cfg     Config
	db      *pg.DB
	store   Store
	log     *zap.Logger
	metrics *Metrics

	mu       sync.Mutex
	leading  bool
	epoch    int64
	deadline time.Time // local: the lease is surely ours until then
	holder   string

	onElected func()

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

// New returns an elector that starts standing when Start is called.
func New(cfg Config, db *pg.DB, store Store, metrics *Metrics, log *zap.Logger) (*Elector, error) {
	if cfg.TTL == 0 {
		cfg.TTL = 3 * time.Second
	}
	if cfg.RenewInterval == 0 {
		cfg.RenewInterval = cfg.TTL / 3
	}
	switch {
	case cfg.Name == "":
		return nil, errors.New("leader: a lease name is required")
	case cfg.Candidate.InstanceID == "":
		return nil, fmt.Errorf("lease %s: the candidate's instance id is required", cfg.Name)
	case cfg.TTL < time.Second:
		return nil, fmt.Errorf("lease %s: ttl must be at least 1s, got %s", cfg.Name, cfg.TTL)
	case cfg.RenewInterval <= 0 || cfg.RenewInterval >= cfg.TTL:
		return nil, fmt.Errorf("lease %s: renew interval must be above 0 and under the ttl (%s), got %s", cfg.Name, cfg.TTL, cfg.RenewInterval)
	case db == nil || store == nil:
		return nil, fmt.Errorf("lease %s: a database and a store are required", cfg.Name)
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	if log == nil {
		log = zap.NewNop()
	}
	e := &Elector{cfg: cfg, db: db, store: store, metrics: metrics,
		log:  log.With(zap.String("lease", cfg.Name)),
		stop: make(chan struct{}), done: make(chan struct{})}
	metrics.leading.WithLabelValues(cfg.Name).Set(0)
	metrics.ttl.WithLabelValues(cfg.Name).Set(cfg.TTL.Seconds())
	return e, nil
}

// OnElected sets a function the elector calls, in its own goroutine, each time this
// instance becomes leader (to wake the pool that does the work). Call it before Start.
func (e *Elector) OnElected(f func()) { e.onElected = f }

// Name returns the lease's name.
func (e *Elector) Name() string { return e.cfg.Name }

// Start runs election rounds in the background, the first at once.
func (e *Elector) Start(ctx context.Context) error {
	go e.run(ctx)
	e.log.Info("standing for leader", zap.Duration("ttl", e.cfg.TTL), zap.Duration("renew_interval", e.cfg.RenewInterval),
		zap.Bool("preferred", e.cfg.Candidate.Preferred))
	return nil
}

// Stop ends the elector and, if it leads, resigns at once so that a backup takes over on
// its next round rather than after the lease expires.
func (e *Elector) Stop(ctx context.Context) error {
	e.stopOnce.Do(func() { close(e.stop) })
	select {
	case <-e.done:
	case <-ctx.Done():
		return fmt.Errorf("stop elector %s: %w", e.cfg.Name, ctx.Err())
	}
	e.mu.Lock()
	leading, epoch := e.leading, e.epoch
	e.setBackupLocked("stopping")
	e.mu.Unlock()
	if !leading {
		return nil
	}
	// Resigning twice is harmless: a lost reply is retried.
	err := e.db.DoIdempotent(ctx, "resign "+e.cfg.Name, func(q pg.Querier) error {
		return e.store.Resign(ctx, q, e.cfg.Name, e.cfg.Candidate.InstanceID, epoch)
	})
	if err != nil {
		return fmt.Errorf("resign lease %s: %w", e.cfg.Name, err)
	}
	e.log.Info("resigned leadership", zap.Int64("epoch", epoch))
	return nil
}

// Term returns the epoch to fence writes with, and whether this instance leads now.
func (e *Elector) Term() (int64, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.leading && time.Now().Before(e.deadline) {
		return e.epoch, true
	}
	return 0, false
}

// Tx runs fn as singleton work: in one transaction fenced with the current epoch, and only
// while this instance leads (otherwise it returns 0 at once). When fn reports rows of work
// they are journalled in the same transaction. A refused fence makes the instance a backup
// and is not an error: the new leader does the work. fn must be idempotent (a sweep that
// takes what is left): the transaction is run again after a lost commit reply
// (pg.DB.TxIdempotent), and the fence is checked again with it.
func (e *Elector) Tx(ctx context.Context, fn func(q pg.Querier) (int, error)) (int, error) {
	epoch, ok := e.Term()
	if !ok {
		return 0, nil
	}
	var n int
	err := e.db.TxIdempotent(ctx, e.cfg.Name, func(q pg.Querier) error {
		n = 0
		if err := e.store.Fence(ctx, q, e.cfg.Name, epoch); err != nil {
			return err
		}
		var err error
		if n, err = fn(q); err != nil || n == 0 {
			return err
		}
		return e.store.Record(ctx, q, e.cfg.Name, epoch, e.cfg.Candidate.InstanceID, n)
	})
	if errors.Is(err, ErrFenced) {
		e.metrics.fenced.WithLabelValues(e.cfg.Name).Inc()
		e.mu.Lock()
		if e.leading && e.epoch == epoch {
			e.setBackupLocked("a write was fenced")
		}
		e.mu.Unlock()
		e.log.Warn("write refused by the fence: no longer leader", zap.Int64("epoch", epoch), zap.Error(err))
		return 0, nil
	}
	return n, err
}

func (e *Elector) run(ctx context.Context) {
	defer close(e.done)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.stop:
			return
		case <-t.C:
		}
		e.round(ctx)
		t.Reset(e.cfg.RenewInterval)
	}
}

// round is one election round, bounded by the renew interval so that a slow database
// cannot delay the next decision.
func (e *Elector) round(ctx context.Context) {
	sent := time.Now()
	rctx, cancel := context.WithTimeout(ctx, e.cfg.RenewInterval)
	defer cancel()
	var lease Lease
	// A round run again renews what the first one took.
	err := e.db.DoIdempotent(rctx, "elect "+e.cfg.Name, func(q pg.Querier) (err error) {
		lease, err = e.store.Acquire(rctx, q, e.cfg.Name, e.cfg.Candidate, e.cfg.TTL)
		return err
	})
	if e.decide(lease, err, sent) && e.onElected != nil {
		e.onElected()
	}
}

// decide applies a round's outcome and reports whether this instance was just elected.
func (e *Elector) decide(lease Lease, err error, sent time.Time) (elected bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case err != nil:
		e.metrics.roundErrors.WithLabelValues(e.cfg.Name).Inc()
		if e.leading && !time.Now().Before(e.deadline) {
			e.setBackupLocked("lease not renewed in time: " + err.Error())
			return false
		}
		e.log.Debug("election round failed", zap.Error(err))
	case lease.Leader:
		elected = !e.leading || lease.Epoch != e.epoch
		e.leading, e.epoch, e.holder = true, lease.Epoch, e.cfg.Candidate.InstanceID
		// The server's expiry is later than this: it counted from when it ran the round.
		e.deadline = sent.Add(e.cfg.TTL)
		e.metrics.epoch.WithLabelValues(e.cfg.Name).Set(float64(lease.Epoch))
		if elected {
			e.metrics.leading.WithLabelValues(e.cfg.Name).Set(1)
			e.metrics.changes.WithLabelValues(e.cfg.Name, "leader").Inc()
			e.log.Info("became leader", zap.Int64("epoch", lease.Epoch))
		}
	default:
		e.metrics.epoch.WithLabelValues(e.cfg.Name).Set(float64(lease.Epoch))
		if e.leading {
			e.setBackupLocked(fmt.Sprintf("lease taken by %s on %s at epoch %d", lease.HolderID, lease.HolderHost, lease.Epoch))
		} else if e.holder != lease.HolderID {
			e.log.Info("standing by", zap.String("leader", lease.HolderID), zap.String("leader_host", lease.HolderHost),
				zap.Int64("epoch", lease.Epoch))
		}
		e.holder = lease.HolderID
	}
	return elected
}

func (e *Elector) setBackupLocked(reason string) {
	if !e.leading {
		return
	}
	e.leading = false
	e.metrics.leading.WithLabelValues(e.cfg.Name).Set(0)
	e.metrics.changes.WithLabelValues(e.cfg.Name, "backup").Inc()
	e.log.Warn("no longer leader", zap.Int64("epoch", e.epoch), zap.String("reason", reason))
}

// Metrics are an elector's Prometheus series, labelled by lease.
type Metrics struct {
	leading     *prometheus.GaugeVec
	epoch       *prometheus.GaugeVec
	changes     *prometheus.CounterVec
	fenced      *prometheus.CounterVec
	roundErrors *prometheus.CounterVec
	ttl         *prometheus.GaugeVec
}

// NewMetrics registers the series with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		leading: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pollux_leader_is_leader",
			Help: "1 while this instance leads the lease, 0 while it stands by."}, []string{"lease"}),
		epoch: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pollux_leader_epoch",
			Help: "The lease's epoch (fencing token) as last seen."}, []string{"lease"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pollux_leader_changes_total",
			Help: "Switches of this instance between leader and backup, by the role it switched to."}, []string{"lease", "to"}),
		fenced: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pollux_leader_fenced_writes_total",
			Help: "Singleton transactions the database refused because their epoch was no longer current."}, []string{"lease"}),
		roundErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pollux_leader_round_errors_total",
			Help: "Election rounds that failed (database unreachable, lease row busy)."}, []string{"lease"}),
		ttl: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pollux_leader_lease_ttl_seconds",
			Help: "The lease ttl this instance stands with (--leader-lease-ttl); pollux-admin check compares it across instances."}, []string{"lease"}),
	}
	if reg != nil {
		reg.MustRegister(m.leading, m.epoch, m.changes, m.fenced, m.roundErrors, m.ttl)
	}
	return m
}
