// Package scheduler is schedulerd, the scheduler plugin: River workers on the "schedule"
// queue that place each subrequest with the SQL policy (subrequest_schedule: status, free
// space, transfers per file system, load) and queue its transfer on the chosen disk
// server's own queue in the same transaction. A subrequest nothing can take goes back to
// WAITSCHED in the database (never held in memory) and is submitted again later.
//
// Scheduler is the interface a different plugin would implement; River is the default.
package scheduler

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/riverqueue/river"
	"go.uber.org/zap"

	"github.com/pollux-storage/pollux/daemons/internal/instance"
	"github.com/pollux-storage/pollux/daemons/internal/jobs"
	"github.com/pollux-storage/pollux/framework/daemon"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/queue"
	"github.com/pollux-storage/pollux/framework/service"
	"github.com/pollux-storage/pollux/model"
)

// Scheduler places one subrequest; it reports where, or ok = false when it was deferred or
// needs nothing (already placed, cancelled).
type Scheduler interface {
	Place(ctx context.Context, subrequestID int64) (server string, ok bool, err error)
}

// riverScheduler places with the SQL policy and hands the transfer to River.
type riverScheduler struct {
	db    *pg.DB
	river *queue.Client
}

// Place runs the policy and queues the transfer in one transaction.
func (s *riverScheduler) Place(ctx context.Context, id int64) (string, bool, error) {
	var placed []model.SubrequestScheduleRow
	err := s.db.Tx(ctx, "schedule subrequest", func(q pg.Querier) (err error) {
		if placed, err = model.SubrequestSchedule(ctx, q, id); err != nil || len(placed) == 0 {
			return err
		}
		return s.river.InsertTx(ctx, q, jobs.Transfer{SubrequestID: id}, &river.InsertOpts{Queue: placed[0].Queue})
	})
	if err != nil || len(placed) == 0 {
		return "", false, err
	}
	return placed[0].DiskServerName, true, nil
}

type worker struct {
	river.WorkerDefaults[jobs.Schedule]
	sched Scheduler
	log   *zap.Logger
}

// Work places the job's subrequest. An error makes River retry the job with backoff.
func (w *worker) Work(ctx context.Context, job *river.Job[jobs.Schedule]) error {
	server, ok, err := w.sched.Place(ctx, job.Args.SubrequestID)
	if err != nil {
		return fmt.Errorf("place subrequest %d: %w", job.Args.SubrequestID, err)
	}
	if ok {
		w.log.Info("subrequest placed", zap.Int64("subrequest", job.Args.SubrequestID), zap.String("disk_server", server))
	} else {
		w.log.Debug("subrequest deferred or no longer waiting", zap.Int64("subrequest", job.Args.SubrequestID))
	}
	return nil
}

// Timeout bounds one placement: it is one short transaction.
func (w *worker) Timeout(*river.Job[jobs.Schedule]) time.Duration { return 30 * time.Second }

// Spec declares schedulerd.
func Spec() daemon.Spec {
	var workers int
	return daemon.Spec{
		Name:    "schedulerd",
		Summary: "place subrequests on disk servers and file systems (the scheduler plugin)",
		Version: instance.Version(),
		Flags: func(fs *flag.FlagSet) {
			fs.IntVar(&workers, "schedule-workers", 8, "River workers placing subrequests.")
		},
		Registry: instance.Registry{},
		Ready:    instance.Ready,
		Setup: func(ctx context.Context, env *daemon.Env) ([]service.Service, error) {
			s := &riverScheduler{db: env.DB}
			ws := river.NewWorkers()
			if err := river.AddWorkerSafely(ws, &worker{sched: s, log: env.Logger("schedule")}); err != nil {
				return nil, fmt.Errorf("register schedule worker: %w", err)
			}
			client, err := queue.New(env.DB, queue.Config{Name: "river", Logger: env.Log, Workers: ws,
				Queues:        map[string]int{jobs.ScheduleQueue: workers},
				FetchCooldown: 5 * time.Millisecond, FetchPollInterval: 200 * time.Millisecond})
			if err != nil {
				return nil, err
			}
			s.river = client
			return []service.Service{client}, nil
		},
	}
}
