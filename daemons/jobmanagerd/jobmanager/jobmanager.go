// Package jobmanager is jobmanagerd, the role LSF's submission played in CASTOR: it claims
// subrequests ready for scheduling and submits a scheduler job for each in the same
// transaction (a claim and its submission commit together or not at all), and it takes back
// transfers whose disk server stopped heartbeating.
package jobmanager

import (
	"context"
	"flag"
	"time"

	"go.uber.org/zap"

	"github.com/pollux-storage/pollux/daemons/internal/instance"
	"github.com/pollux-storage/pollux/daemons/internal/jobs"
	"github.com/pollux-storage/pollux/framework/claim"
	"github.com/pollux-storage/pollux/framework/daemon"
	"github.com/pollux-storage/pollux/framework/logging"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/queue"
	"github.com/pollux-storage/pollux/framework/service"
	"github.com/pollux-storage/pollux/model"
)

// Spec declares jobmanagerd.
func Spec() daemon.Spec {
	var heartbeatTimeout, expireInterval time.Duration
	var maxRetries int
	return daemon.Spec{
		Name:    "jobmanagerd",
		Summary: "submit decided subrequests to the scheduler; take back transfers of dead disk servers",
		Version: instance.Version(),
		Pools: []daemon.PoolSpec{
			{Name: "submit", Workers: 2, Batch: 50, Doc: "submits WAITSCHED subrequests to the scheduler"},
		},
		Flags: func(fs *flag.FlagSet) {
			fs.DurationVar(&heartbeatTimeout, "disk-server-timeout", 30*time.Second, "A disk server silent for this long loses its transfers (they are retried elsewhere).")
			fs.DurationVar(&expireInterval, "expire-interval", 5*time.Second, "How often to look for transfers of silent disk servers.")
			fs.IntVar(&maxRetries, "max-retries", 3, "How often a transfer is retried after its disk server died before it fails.")
		},
		Registry: instance.Registry{},
		Ready:    instance.Ready,
		Setup: func(ctx context.Context, env *daemon.Env) ([]service.Service, error) {
			river, err := queue.New(env.DB, queue.Config{Name: "river", Logger: env.Log})
			if err != nil {
				return nil, err
			}
			workers, batch := env.Pool("submit")
			log := env.Logger("submit")
			submit, err := claim.New(claim.Config{
				Name: "submit", Workers: workers, Batch: batch,
				// A disk server appearing or coming back may fit queued subrequests.
				Channels: []string{"pollux_subrequest_waitsched", "pollux_capacity"},
				Step: func(ctx context.Context) (int, error) {
					var claimed []model.SubrequestClaimWaitschedRow
					err := env.DB.Tx(ctx, "submit to scheduler", func(q pg.Querier) (err error) {
						if claimed, err = model.SubrequestClaimWaitsched(ctx, q, int32(batch)); err != nil {
							return err
						}
						for _, c := range claimed {
							if err := river.InsertTx(ctx, q, jobs.Schedule{SubrequestID: c.ID}, nil); err != nil {
								return err
							}
						}
						return nil
					})
					if err != nil {
						return 0, err
					}
					for _, c := range claimed {
						log.Info("submitted to the scheduler", zap.String(logging.KeyRequestID, c.RequestID), zap.Int64("subrequest", c.ID),
							zap.Stringer("type", c.Type))
					}
					return len(claimed), nil
				},
			}, env.Listener, env.ClaimMetrics, env.Log)
			if err != nil {
				return nil, err
			}
			expireLog := env.Logger("expire")
			// A pool of one polling worker: any number of job managers may run it at once,
			// as the expiry skips rows another one holds.
			expire, err := claim.New(claim.Config{
				Name: "expire", Workers: 1, Batch: 1 << 20, PollInterval: expireInterval,
				Step: func(ctx context.Context) (int, error) {
					var expired []model.SubrequestExpireRow
					err := env.DB.Tx(ctx, "expire transfers", func(q pg.Querier) (err error) {
						expired, err = model.SubrequestExpire(ctx, q, int32(heartbeatTimeout.Seconds()), int32(maxRetries))
						return err
					})
					for _, e := range expired {
						expireLog.Warn("transfer taken back from a silent disk server", zap.String(logging.KeyRequestID, e.RequestID),
							zap.Int64("subrequest", e.ID), zap.Stringer("status", e.Status))
					}
					// Zero: the pool sleeps one interval between looks.
					return 0, err
				},
			}, nil, env.ClaimMetrics, env.Log)
			if err != nil {
				return nil, err
			}
			return []service.Service{river, submit, expire}, nil
		},
	}
}
