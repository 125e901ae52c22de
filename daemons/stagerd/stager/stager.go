// Package stager is stagerd: one claim pool per request family, each calling the logic's
// claim-and-decide function for its family (subrequest_claim_put, _get, _putdone, _rm).
// All the deciding is SQL; this package claims, logs each decision, and reports.
package stager

import (
	"context"

	"go.uber.org/zap"

	"github.com/pollux-storage/pollux/daemons/internal/instance"
	"github.com/pollux-storage/pollux/framework/claim"
	"github.com/pollux-storage/pollux/framework/daemon"
	"github.com/pollux-storage/pollux/framework/logging"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/service"
	"github.com/pollux-storage/pollux/model"
)

// decision is one row any family's claim function returns.
type decision struct {
	id        int64
	requestID string
	path      string
	status    model.SubrequestStatus
	message   string
}

// family is one request family: its pool and its claim function.
type family struct {
	pool  daemon.PoolSpec
	claim func(ctx context.Context, q model.DBTX, batch int32) ([]decision, error)
}

var families = []family{
	{daemon.PoolSpec{Name: "put", Workers: 4, Batch: 10, Doc: "decides stager_put subrequests"},
		func(ctx context.Context, q model.DBTX, batch int32) ([]decision, error) {
			rows, err := model.SubrequestClaimPut(ctx, q, batch)
			out := make([]decision, len(rows))
			for i, r := range rows {
				out[i] = decision{r.ID, r.RequestID, r.Path, r.Status, r.Message}
			}
			return out, err
		}},
	{daemon.PoolSpec{Name: "get", Workers: 4, Batch: 10, Doc: "decides stager_get and stager_prepareToGet subrequests"},
		func(ctx context.Context, q model.DBTX, batch int32) ([]decision, error) {
			rows, err := model.SubrequestClaimGet(ctx, q, batch)
			out := make([]decision, len(rows))
			for i, r := range rows {
				out[i] = decision{r.ID, r.RequestID, r.Path, r.Status, r.Message}
			}
			return out, err
		}},
	{daemon.PoolSpec{Name: "putdone", Workers: 2, Batch: 10, Doc: "decides stager_putdone subrequests"},
		func(ctx context.Context, q model.DBTX, batch int32) ([]decision, error) {
			rows, err := model.SubrequestClaimPutdone(ctx, q, batch)
			out := make([]decision, len(rows))
			for i, r := range rows {
				out[i] = decision{r.ID, r.RequestID, r.Path, r.Status, r.Message}
			}
			return out, err
		}},
	{daemon.PoolSpec{Name: "rm", Workers: 2, Batch: 10, Doc: "decides stager_rm subrequests"},
		func(ctx context.Context, q model.DBTX, batch int32) ([]decision, error) {
			rows, err := model.SubrequestClaimRm(ctx, q, batch)
			out := make([]decision, len(rows))
			for i, r := range rows {
				out[i] = decision{r.ID, r.RequestID, r.Path, r.Status, r.Message}
			}
			return out, err
		}},
}

// Spec declares stagerd.
func Spec() daemon.Spec {
	var pools []daemon.PoolSpec
	for _, f := range families {
		pools = append(pools, f.pool)
	}
	return daemon.Spec{
		Name:     "stagerd",
		Summary:  "decide new subrequests: where a file is written, read, closed or removed",
		Version:  instance.Version(),
		Pools:    pools,
		Registry: instance.Registry{},
		Ready:    instance.Ready,
		Setup: func(ctx context.Context, env *daemon.Env) ([]service.Service, error) {
			var out []service.Service
			for _, f := range families {
				p, err := newPool(env, f)
				if err != nil {
					return nil, err
				}
				out = append(out, p)
			}
			return out, nil
		},
	}
}

func newPool(env *daemon.Env, f family) (*claim.Pool, error) {
	workers, batch := env.Pool(f.pool.Name)
	log := env.Logger(f.pool.Name)
	return claim.New(claim.Config{
		Name: f.pool.Name, Workers: workers, Batch: batch,
		// As subrequest_channel in the logic names it: each pool is woken by its own family.
		Channels: []string{"pollux_subrequest_new_" + f.pool.Name},
		Step: func(ctx context.Context) (int, error) {
			var decided []decision
			err := env.DB.Tx(ctx, "decide "+f.pool.Name+" subrequests", func(q pg.Querier) (err error) {
				decided, err = f.claim(ctx, q, int32(batch))
				return err
			})
			if err != nil {
				return 0, err
			}
			for _, d := range decided {
				log.Info("subrequest decided", zap.String(logging.KeyRequestID, d.requestID), zap.Int64("subrequest", d.id),
					zap.String("path", d.path), zap.Stringer("status", d.status), zap.String("reason", d.message))
			}
			return len(decided), nil
		},
	}, env.Listener, env.ClaimMetrics, env.Log)
}
