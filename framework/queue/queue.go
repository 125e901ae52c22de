// Package queue runs River (github.com/riverqueue/river) on the daemon's own database
// pool, for work that outlives a transaction: River records each job in PostgreSQL, times it
// out, and rescues the jobs of a worker that died. A Client is a service.Service (River's
// graceful stop on drain; its hard stop at the drain deadline), and it inserts jobs inside
// the caller's framework transaction so that a claim and the job it submits commit together.
package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"

	"github.com/pollux-storage/pollux/framework/pg"
)

// Config says which queues this process works and with how many workers each.
type Config struct {
	// Name identifies the client in logs ("river").
	Name string
	// Queues maps a queue name to its number of workers; empty for an insert-only client.
	Queues map[string]int
	// Workers registers the job kinds this process works (river.AddWorker).
	Workers *river.Workers
	// JobTimeout bounds one job unless its worker says otherwise (Timeout); 0: River's 1 m.
	JobTimeout time.Duration
	// RescueAfter is how long a job may run before River assumes its worker died and runs
	// it again; it must exceed the longest job. 0: River's default (1 h, or JobTimeout + 1 h).
	RescueAfter time.Duration
	// FetchCooldown and FetchPollInterval tune how fast new jobs are picked up; 0: River's.
	FetchCooldown, FetchPollInterval time.Duration
	// Logger receives River's logs (warnings and above).
	Logger *zap.Logger
}

// Client is a River client on a framework database.
type Client struct {
	name   string
	client *river.Client[pgx.Tx]
	work   bool
}

// New builds a client; it works nothing until Start.
func New(db *pg.DB, cfg Config) (*Client, error) {
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	// River's default cooldown (100 ms) also rate-limits the insert notifications a client
	// sends per queue, so a job queued soon after another would wait for the workers' next
	// poll: in a chain of daemons that is the latency. 2 ms is River's own bench setting.
	if cfg.FetchCooldown == 0 {
		cfg.FetchCooldown = 2 * time.Millisecond
	}
	if cfg.FetchPollInterval == 0 {
		cfg.FetchPollInterval = 500 * time.Millisecond
	}
	rc := &river.Config{
		JobTimeout:           cfg.JobTimeout,
		RescueStuckJobsAfter: cfg.RescueAfter,
		FetchCooldown:        cfg.FetchCooldown,
		FetchPollInterval:    cfg.FetchPollInterval,
		Workers:              cfg.Workers,
		// Daemons queue work for other daemons (the scheduler for disk servers), so a kind
		// this process does not work is normal, not a mistake.
		SkipUnknownJobCheck: true,
		// River logs every job at info; our workers log what matters themselves.
		Logger: slog.New(zapslog.NewHandler(log.Core(), zapslog.WithName("river"))).With(),
	}
	if len(cfg.Queues) > 0 {
		rc.Queues = map[string]river.QueueConfig{}
		for q, n := range cfg.Queues {
			rc.Queues[q] = river.QueueConfig{MaxWorkers: n}
		}
	}
	c, err := river.NewClient(riverpgxv5.New(db.Pool()), rc)
	if err != nil {
		return nil, fmt.Errorf("river client: %w", err)
	}
	name := cfg.Name
	if name == "" {
		name = "river"
	}
	return &Client{name: name, client: c, work: len(cfg.Queues) > 0}, nil
}

// Name names the service.
func (c *Client) Name() string { return c.name }

// Start begins working the configured queues (nothing for an insert-only client).
func (c *Client) Start(ctx context.Context) error {
	if !c.work {
		return nil
	}
	if err := c.client.Start(ctx); err != nil {
		return fmt.Errorf("start river: %w", err)
	}
	return nil
}

// Stop lets running jobs finish; at ctx's deadline it cancels them (River retries them
// later, on this or another process).
func (c *Client) Stop(ctx context.Context) error {
	if !c.work {
		return nil
	}
	err := c.client.Stop(ctx)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		hard, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if herr := c.client.StopAndCancel(hard); herr != nil {
			return fmt.Errorf("stop river: %w", herr)
		}
		return fmt.Errorf("stop river: drain deadline passed; running jobs cancelled: %w", err)
	}
	return err
}

// AddQueue starts working another queue, at once when the client runs.
func (c *Client) AddQueue(name string, workers int) error {
	if err := c.client.Queues().Add(name, river.QueueConfig{MaxWorkers: workers}); err != nil {
		return fmt.Errorf("add queue %s: %w", name, err)
	}
	return nil
}

// RemoveQueue stops working a queue; it returns once the queue's running jobs have ended,
// or with ctx's error.
func (c *Client) RemoveQueue(ctx context.Context, name string) error {
	if err := c.client.Queues().Remove(ctx, name); err != nil {
		return fmt.Errorf("remove queue %s: %w", name, err)
	}
	return nil
}

// InsertTx queues a job inside the caller's transaction (q must be the pg.Querier that
// framework/pg's Tx handed out): the job exists if and only if the transaction commits.
func (c *Client) InsertTx(ctx context.Context, q pg.Querier, args river.JobArgs, opts *river.InsertOpts) error {
	tx, ok := q.(pgx.Tx)
	if !ok {
		return fmt.Errorf("queue %s: insert needs a transaction, got %T", args.Kind(), q)
	}
	if _, err := c.client.InsertTx(ctx, tx, args, opts); err != nil {
		return fmt.Errorf("queue %s job: %w", args.Kind(), err)
	}
	return nil
}
