// Package testdaemon is a minimal daemon on the framework, used by the framework's own
// tests in-process and as a real process: one pool claims rows of a job table one at a
// time and holds each transaction for --step-sleep, so a test can signal it mid-step.
package testdaemon

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/pollux-storage/pollux/framework/claim"
	"github.com/pollux-storage/pollux/framework/daemon"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/service"
)

// Schema is what the test database needs.
const Schema = `
create table job (id bigint generated always as identity primary key, done boolean not null default false);
create table instance (id uuid primary key, role text not null, pools jsonb not null, admin_url text not null,
	heartbeats integer not null default 0, stopped boolean not null default false);`

// Spec returns the daemon's declaration.
func Spec() daemon.Spec {
	var sleep time.Duration
	return daemon.Spec{
		Name:    "testd",
		Summary: "a daemon that exercises the framework",
		Version: "test",
		Pools:   []daemon.PoolSpec{{Name: "work", Workers: 1, Batch: 1, Doc: "claims jobs"}},
		Flags: func(fs *flag.FlagSet) {
			fs.DurationVar(&sleep, "step-sleep", time.Second, "How long each step holds its transaction.")
		},
		Registry: registry{},
		Setup: func(ctx context.Context, env *daemon.Env) ([]service.Service, error) {
			workers, batch := env.Pool("work")
			p, err := claim.New(claim.Config{Name: "work", Workers: workers, Batch: batch, Channels: []string{"job_new"},
				PollInterval: 100 * time.Millisecond,
				Step: func(ctx context.Context) (int, error) {
					n := 0
					err := env.DB.Tx(ctx, "claim job", func(q pg.Querier) error {
						tag, err := q.Exec(ctx, `update job set done = true where id =
							(select id from job where not done order by id for update skip locked limit 1)`)
						if err != nil || tag.RowsAffected() == 0 {
							n = 0
							return err
						}
						n = 1
						_, err = q.Exec(ctx, "select pg_sleep($1::float8)", sleep.Seconds())
						return err
					})
					return n, err
				}}, env.Listener, env.ClaimMetrics, env.Log)
			if err != nil {
				return nil, err
			}
			return []service.Service{p}, nil
		},
	}
}

type registry struct{}

func (registry) Register(ctx context.Context, db *pg.DB, in daemon.Instance) error {
	return db.Do(ctx, "register", func(q pg.Querier) error {
		_, err := q.Exec(ctx, `insert into instance (id, role, pools, admin_url) values ($1, $2, $3, $4)
			on conflict (id) do update set stopped = false`, in.ID, in.Role, in.Pools, in.AdminURL)
		return err
	})
}

func (registry) Heartbeat(ctx context.Context, db *pg.DB, id string) error {
	return db.Do(ctx, "heartbeat", func(q pg.Querier) error {
		tag, err := q.Exec(ctx, "update instance set heartbeats = heartbeats + 1 where id = $1", id)
		if err == nil && tag.RowsAffected() == 0 {
			err = fmt.Errorf("instance %s not registered", id)
		}
		return err
	})
}

func (registry) Deregister(ctx context.Context, db *pg.DB, id string) error {
	return db.Do(ctx, "deregister", func(q pg.Querier) error {
		_, err := q.Exec(ctx, "update instance set stopped = true where id = $1", id)
		return err
	})
}
