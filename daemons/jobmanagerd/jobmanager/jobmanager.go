// Package jobmanager is jobmanagerd, the role LSF's job control played in CASTOR: the life
// of transfers once they leave the fast path. It finds disk servers that stopped
// heartbeating and moves their transfers on (queued ones placed elsewhere, those in flight
// failed with the reason), ends transfers that outlived every time limit because their
// disk server could not record the end, gives up writes left unclosed past their lease
// (releasing their quota), and moves finished requests out of the hot tables
// after the operator's retention. A request that goes well never waits on it.
//
// Every sweep is a singleton pool (framework/leader): any number of job managers run, one
// leads each sweep and the others stand by to take it over; the leader's transactions are
// fenced with its lease's epoch, so a deposed leader changes nothing. The sweeps' SQL also
// skips rows held elsewhere, so even a fault of the election could not make two sweeps
// collide on a row. The limits they apply are the database's policy (pollux-admin policy),
// not flags.
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
			{Name: "expire", Workers: 1, Batch: 100, Singleton: true, Doc: "finds silent disk servers, moves their transfers on, and ends transfers past every time limit (on the leader of jobmanagerd.expire only)"},
			{Name: "archive", Workers: 1, Batch: 500, Singleton: true, Doc: "moves finished requests past their retention to the archive and purges old archive entries (on the leader of jobmanagerd.archive only)"},
		},
		Flags: func(fs *flag.FlagSet) {
			fs.DurationVar(&expireInterval, "expire-interval", 2*time.Second, "How often to look for silent disk servers and transfers past their time (a server is found silent within policy disk_server_live_seconds and this).")
			fs.DurationVar(&archiveInterval, "archive-interval", 10*time.Second, "How often to look for finished requests past their retention.")
		},
		Registry: instance.Registry{},
		Leases:   instance.Leases{},
		Ready:    instance.Ready,
		Setup: func(ctx context.Context, env *daemon.Env) ([]service.Service, error) {
			if err := instance.RegisterMetrics(env); err != nil {
				return nil, err
			}
			if err := registerQueueMetrics(env); err != nil {
				return nil, err
			}
			hints := wake.New(env.Logger("wake"), env.Metrics, env.TLS)
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
				if err != nil {
					return 0, err
				}
				// The singleton work journal ages out with the archive.
				journal, err := model.LeaderWorkPurge(ctx, q, int32(batch))
				if moved > 0 || purged > 0 {
					log.Info("requests archived", zap.Int32("archived", moved), zap.Int32("purged", purged))
				}
				return int(max(moved, purged, journal)), err
			})
			if err != nil {
				return nil, err
			}
			return []service.Service{hints, expire, archive}, nil
		},
	}
}

// sweep is a singleton pool of polling workers running fn in a fenced transaction on the
// leader; a full batch goes on at once, anything less waits for the next interval, and
// becoming leader starts a sweep at once. Every sweep is idempotent (a re-run after a lost
// commit reply sweeps what is left), which Elector.Tx requires.
func sweep(env *daemon.Env, name string, every time.Duration,
	fn func(ctx context.Context, q pg.Querier, batch int, log *zap.Logger) (int, error)) (*claim.Pool, error) {
	workers, batch := env.Pool(name)
	log := env.Logger(name)
	el := env.Elector(name)
	p, err := claim.New(claim.Config{
		Name: name, Workers: workers, Batch: batch, PollInterval: every,
		Step: func(ctx context.Context) (int, error) {
			return el.Tx(ctx, func(q pg.Querier) (int, error) { return fn(ctx, q, batch, log) })
		},
	}, nil, env.ClaimMetrics, env.Log)
	if err != nil {
		return nil, err
	}
	el.OnElected(p.Wake)
	return p, nil
}

// expirePool is the expire sweep, a singleton: disk servers fallen silent and the
// transfers of servers that are out (disk_server_expire), then transfers past every time
// limit (subrequest_expire), then writes left unclosed past their lease
// (disk_copy_expire_unclosed, policy put_lease_seconds), in one fenced transaction on the
// leader; transfers placed again elsewhere get a wake-up hint to their new server after
// the commit.
func expirePool(env *daemon.Env, every time.Duration, hints *wake.Hinter) (*claim.Pool, error) {
	workers, batch := env.Pool("expire")
	log := env.Logger("expire")
	el := env.Elector("expire")
	p, err := claim.New(claim.Config{
		Name: "expire", Workers: workers, Batch: batch, PollInterval: every,
		Step: func(ctx context.Context) (int, error) {
			var servers []model.DiskServerExpireRow
			var rows []model.SubrequestExpireRow
			var unclosed []model.DiskCopyExpireUnclosedRow
			// The sweeps take what is left, so a re-run after a lost commit reply is safe;
			// what the last run returned is what committed.
			_, err := el.Tx(ctx, func(q pg.Querier) (n int, err error) {
				if servers, err = model.DiskServerExpire(ctx, q, int32(batch)); err != nil {
					return 0, err
				}
				if rows, err = model.SubrequestExpire(ctx, q, int32(batch)); err != nil {
					return 0, err
				}
				if unclosed, err = model.DiskCopyExpireUnclosed(ctx, q, int32(batch)); err != nil {
					return 0, err
				}
				return len(servers) + len(rows) + len(unclosed), nil
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
			for _, e := range unclosed {
				log.Info("unclosed write expired", zap.String(logging.KeyRequestID, deref(e.RequestID)),
					zap.Int64("subrequest", deref(e.SubrequestID)), zap.String("path", e.Path), zap.String("reason", e.Reason))
			}
			hints.Hint(wakes...)
			return max(len(servers), len(rows), len(unclosed)), nil
		},
	}, nil, env.ClaimMetrics, env.Log)
	if err != nil {
		return nil, err
	}
	el.OnElected(p.Wake)
	return p, nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
