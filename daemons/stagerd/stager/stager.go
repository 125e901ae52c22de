// Package stager is stagerd: one claim pool per request family, each calling the logic's
// claim-and-decide function (subrequest_claim) for its family. A transfer is placed by the
// scheduler plugin's SQL (subrequest_place) in the same transaction; after the commit the
// stager sends the chosen disk server a wake-up hint (package wake), so a request that
// goes well crosses no other daemon before its disk server.
// All the deciding is SQL; this package claims, logs each decision, and hints.
package stager

import (
	"context"

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

// pools are the request families, one pool each; pollux_family in the logic (generated from the
// description's families) names the same ones.
var pools = []daemon.PoolSpec{
	{Name: string(model.FamilyPut), Workers: 4, Batch: 10, Doc: "decides stager_put subrequests"},
	{Name: string(model.FamilyGet), Workers: 4, Batch: 10, Doc: "decides stager_get and stager_prepareToGet subrequests"},
	{Name: string(model.FamilyPutdone), Workers: 2, Batch: 10, Doc: "decides stager_putdone subrequests"},
	{Name: string(model.FamilyRm), Workers: 2, Batch: 10, Doc: "decides stager_rm subrequests"},
}

// Spec declares stagerd.
func Spec() daemon.Spec {
	return daemon.Spec{
		Name:     "stagerd",
		Summary:  "decide new subrequests: where a file is written, read, closed or removed",
		Version:  instance.Version(),
		Pools:    pools,
		Registry: instance.Registry{},
		Ready:    instance.Ready,
		Setup: func(ctx context.Context, env *daemon.Env) ([]service.Service, error) {
			if err := instance.RegisterMetrics(env); err != nil {
				return nil, err
			}
			hints := wake.New(env.Logger("wake"), env.Metrics, env.TLS)
			// Stopped last: the pools' last hints are sent before the daemon exits.
			out := []service.Service{hints}
			for _, f := range pools {
				p, err := newPool(env, f.Name, hints)
				if err != nil {
					return nil, err
				}
				out = append(out, p)
			}
			return out, nil
		},
	}
}

func newPool(env *daemon.Env, family string, hints *wake.Hinter) (*claim.Pool, error) {
	workers, batch := env.Pool(family)
	log := env.Logger(family)
	return claim.New(claim.Config{
		Name: family, Workers: workers, Batch: batch,
		// Each pool is woken by its own family's channel (pollux_channel_subrequest_new in SQL).
		Channels: []string{model.ChannelSubrequestNew(model.Family(family))},
		Step: func(ctx context.Context) (int, error) {
			var decided []model.SubrequestClaimRow
			// The claim and its decisions are one statement, so one transaction without an
			// explicit BEGIN and COMMIT (two round trips fewer on the hot path). A re-run
			// after a lost commit reply claims other rows: the lost run's decisions stand,
			// and only its wake-up hints are lost (the disk servers poll).
			err := env.DB.DoIdempotent(ctx, "decide "+family+" subrequests", func(q pg.Querier) (err error) {
				decided, err = model.SubrequestClaim(ctx, q, family, int32(batch))
				return err
			})
			if err != nil {
				return 0, err
			}
			// The hints first, the log lines after: a disk server waits on its hint.
			var wakes []string
			for _, d := range decided {
				if d.WakeURL != nil {
					wakes = append(wakes, *d.WakeURL)
				}
			}
			hints.Hint(wakes...)
			for _, d := range decided {
				log.Info("subrequest decided", zap.String(logging.KeyRequestID, d.RequestID), zap.Int64("subrequest", d.ID),
					zap.String("path", d.Path), zap.Stringer("status", d.Status), zap.String("reason", d.Message))
			}
			return len(decided), nil
		},
	}, env.Listener, env.ClaimMetrics, env.Log)
}
