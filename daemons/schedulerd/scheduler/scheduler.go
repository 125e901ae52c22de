// Package scheduler is schedulerd, the scheduler plugin's daemon. The plugin's policy is
// SQL (subrequest_place in schema/logic/scheduler.sql: status, liveness, free space,
// transfers per file system, load), replaceable on a running instance without touching the
// stager. The stager runs it on the fast path, in the transaction that decides a file;
// schedulerd places what had to wait for a resource (WAITSCHED): a claim pool whose step
// claims the waiting subrequests that were last tried before the current capacity epoch
// (subrequest_claim_waitsched), places each, and after the commit sends each chosen disk
// server a wake-up hint. A capacity change bumps the epoch in its own transaction, so a
// poll that finds nothing new reads one index and writes nothing; schedulerd does not
// LISTEN, which keeps the sessions PostgreSQL signals at every NOTIFY few.
//
// Scheduler is the interface a different plugin would implement.
package scheduler

import (
	"context"
	"flag"
	"time"

	"go.uber.org/zap"

	"github.com/pollux-storage/pollux/daemons/internal/instance"
	"github.com/pollux-storage/pollux/daemons/internal/wake"
	"github.com/pollux-storage/pollux/framework/claim"
	"github.com/pollux-storage/pollux/framework/daemon"
	"github.com/pollux-storage/pollux/framework/logging"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/service"
	"github.com/pollux-storage/pollux/model"
)

// Placement is where a waiting subrequest went.
type Placement struct {
	SubrequestID   int64
	RequestID      string
	DiskServerName string
	DiskServerURL  string
}

// Scheduler places up to batch subrequests that wait for a resource, in one transaction,
// and says where each went; the rest keep waiting.
type Scheduler interface {
	Place(ctx context.Context, batch int) ([]Placement, error)
}

// sqlScheduler is the default plugin: the SQL policy.
type sqlScheduler struct{ db *pg.DB }

// Place claims and places in one statement, so one transaction without BEGIN and COMMIT.
// A re-run after a lost commit reply claims other rows; the lost run's wake-up hints are
// made up for by the disk servers' polls.
func (s sqlScheduler) Place(ctx context.Context, batch int) ([]Placement, error) {
	var rows []model.SubrequestClaimWaitschedRow
	err := s.db.DoIdempotent(ctx, "place waiting subrequests", func(q pg.Querier) (err error) {
		rows, err = model.SubrequestClaimWaitsched(ctx, q, int32(batch))
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]Placement, len(rows))
	for i, r := range rows {
		out[i] = Placement{SubrequestID: r.ID, RequestID: r.RequestID, DiskServerName: r.DiskServerName, DiskServerURL: r.DiskServerURL}
	}
	return out, nil
}

// Spec declares schedulerd.
func Spec() daemon.Spec {
	var poll time.Duration
	return daemon.Spec{
		Name:    "schedulerd",
		Summary: "place the subrequests that wait for a disk server or space, as capacity appears (the scheduler plugin)",
		Version: instance.Version(),
		Pools: []daemon.PoolSpec{
			{Name: "place", Workers: 1, Batch: 100, Doc: "places WAITSCHED subrequests once capacity changed"},
		},
		Flags: func(fs *flag.FlagSet) {
			fs.DurationVar(&poll, "poll-interval", 500*time.Millisecond, "How often to look whether capacity changed (one index read; nothing is written unless something can be placed).")
		},
		Registry: instance.Registry{},
		Ready:    instance.Ready,
		Setup: func(ctx context.Context, env *daemon.Env) ([]service.Service, error) {
			if err := instance.RegisterMetrics(env); err != nil {
				return nil, err
			}
			return setup(env, sqlScheduler{db: env.DB}, poll)
		},
	}
}

func setup(env *daemon.Env, sched Scheduler, poll time.Duration) ([]service.Service, error) {
	hints := wake.New(env.Logger("wake"), env.Metrics, env.TLS)
	workers, batch := env.Pool("place")
	log := env.Logger("place")
	pool, err := claim.New(claim.Config{
		Name: "place", Workers: workers, Batch: batch, PollInterval: poll,
		Step: func(ctx context.Context) (int, error) {
			placed, err := sched.Place(ctx, batch)
			if err != nil {
				return 0, err
			}
			urls := make([]string, len(placed))
			for i, p := range placed {
				urls[i] = p.DiskServerURL
			}
			hints.Hint(urls...)
			for _, p := range placed {
				log.Info("subrequest placed", zap.String(logging.KeyRequestID, p.RequestID), zap.Int64("subrequest", p.SubrequestID),
					zap.String("disk_server", p.DiskServerName))
			}
			return len(placed), nil
		},
	}, nil, env.ClaimMetrics, env.Log)
	if err != nil {
		return nil, err
	}
	return []service.Service{hints, pool}, nil
}
