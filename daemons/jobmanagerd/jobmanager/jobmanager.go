// Package jobmanager is jobmanagerd, the role LSF's job control played in CASTOR: the life
// of transfers once they leave the fast path. It finds disk servers that stopped
// heartbeating and moves their transfers on (queued ones placed elsewhere, those in flight
// failed with the reason), ends transfers that outlived every time limit because their
// disk server could not record the end, and moves finished requests out of the hot tables
// after the operator's retention. A request that goes well never waits on it.
//
// Every sweep is a claim pool of one polling worker whose SQL skips the rows another job
// manager holds, so any number may run at once; the limits it applies are the database's
// policy (pollux-admin policy), not flags.
package jobmanager

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

// Spec declares jobmanagerd.
func Spec() daemon.Spec {
	var expireInterval, archiveInterval time.Duration
	return daemon.Spec{
		Name:    "jobmanagerd",
		Summary: "take back transfers of dead disk servers, end transfers past their time, archive finished requests",
		Version: instance.Version(),
		Pools: []daemon.PoolSpec{
			{Name: "expire", Workers: 1, Batch: 100, Doc: "finds silent disk servers, moves their transfers on, and ends transfers past every time limit"},
			{Name: "archive", Workers: 1, Batch: 500, Doc: "moves finished requests past their retention to the archive and purges old archive entries"},
		},
		Flags: func(fs *flag.FlagSet) {
			fs.DurationVar(&expireInterval, "expire-interval", 2*time.Second, "How often to look for silent disk servers and transfers past their time (a server is found silent within policy disk_server_live_seconds and this).")
			fs.DurationVar(&archiveInterval, "archive-interval", 10*time.Second, "How often to look for finished requests past their retention.")
		},
		Registry: instance.Registry{},
		Ready:    instance.Ready,
		Setup: func(ctx context.Context, env *daemon.Env) ([]service.Service, error) {
			hints := wake.New(env.Logger("wake"), env.Metrics)
			expire, err := expirePool(env, expireInterval, hints)
			if err != nil {
				return nil, err
			}
			archive, err := sweep(env, "archive", archiveInterval, func(ctx context.Context, q pg.Querier, batch int, log *zap.Logger) (int, error) {
				moved, err := model.RequestArchiveFinished(ctx, q, int32(batch))
				if err != nil {
					return 0, err
				}
				purged, err := model.RequestArchivePurge(ctx, q, int32(batch))
				if moved > 0 || purged > 0 {
					log.Info("requests archived", zap.Int32("archived", moved), zap.Int32("purged", purged))
				}
				return int(max(moved, purged)), err
			})
			if err != nil {
				return nil, err
			}
			return []service.Service{hints, expire, archive}, nil
		},
	}
}

// sweep is a pool of polling workers running fn in a transaction; a full batch goes on at
// once, anything less waits for the next interval.
func sweep(env *daemon.Env, name string, every time.Duration,
	fn func(ctx context.Context, q pg.Querier, batch int, log *zap.Logger) (int, error)) (*claim.Pool, error) {
	workers, batch := env.Pool(name)
	log := env.Logger(name)
	return claim.New(claim.Config{
		Name: name, Workers: workers, Batch: batch, PollInterval: every,
		Step: func(ctx context.Context) (n int, err error) {
			err = env.DB.Tx(ctx, name, func(q pg.Querier) (err error) {
				n, err = fn(ctx, q, batch, log)
				return err
			})
			return n, err
		},
	}, nil, env.ClaimMetrics, env.Log)
}

// expirePool is the expire sweep: disk servers fallen silent and the transfers of servers
// that are out (disk_server_expire), then transfers past every time limit
// (subrequest_expire), in one transaction; transfers placed again elsewhere get a wake-up
// hint to their new server after the commit.
func expirePool(env *daemon.Env, every time.Duration, hints *wake.Hinter) (*claim.Pool, error) {
	workers, batch := env.Pool("expire")
	log := env.Logger("expire")
	return claim.New(claim.Config{
		Name: "expire", Workers: workers, Batch: batch, PollInterval: every,
		Step: func(ctx context.Context) (int, error) {
			var servers []model.DiskServerExpireRow
			var rows []model.SubrequestExpireRow
			err := env.DB.Tx(ctx, "expire", func(q pg.Querier) (err error) {
				if servers, err = model.DiskServerExpire(ctx, q, int32(batch)); err != nil {
					return err
				}
				rows, err = model.SubrequestExpire(ctx, q, int32(batch))
				return err
			})
			if err != nil {
				return 0, err
			}
			var wakes []string
			for _, e := range servers {
				if e.SubrequestID == nil {
					log.Warn("disk server silent", zap.String("disk_server", e.DiskServer), zap.String("reason", e.Message))
					continue
				}
				log.Warn("transfer of a disk server that is out moved on", zap.String("disk_server", e.DiskServer),
					zap.String(logging.KeyRequestID, deref(e.RequestID)), zap.Int64("subrequest", *e.SubrequestID),
					zap.String("status", string(deref(e.Status))), zap.String("reason", e.Message))
				if e.WakeURL != nil {
					wakes = append(wakes, *e.WakeURL)
				}
			}
			for _, e := range rows {
				log.Warn("transfer ended", zap.String(logging.KeyRequestID, e.RequestID),
					zap.Int64("subrequest", e.ID), zap.Stringer("status", e.Status), zap.String("reason", e.Reason))
			}
			hints.Hint(wakes...)
			return max(len(servers), len(rows)), nil
		},
	}, nil, env.ClaimMetrics, env.Log)
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
