package diskserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/riverqueue/river"
	"go.uber.org/zap"

	"github.com/pollux-storage/pollux/daemons/diskserverd/mover"
	"github.com/pollux-storage/pollux/daemons/internal/jobs"
	"github.com/pollux-storage/pollux/framework/logging"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
)

// transferWorker works the jobs.Transfer jobs of this server's queue: each publishes a
// mover endpoint and a one-time token (transfer_start: READY, the client's long poll
// returns), then watches the transfer until the mover handler reports its end, or the
// client does not come within --open-timeout, or the transfer outlives
// --transfer-timeout. The job ends once the subrequest's outcome is recorded.
type transferWorker struct {
	river.WorkerDefaults[jobs.Transfer]
	db              *pg.DB
	server          *server
	transfers       *mover.Transfers
	log             *zap.Logger
	openTimeout     time.Duration
	transferTimeout time.Duration
	// draining is closed when the daemon starts to stop.
	draining <-chan struct{}
}

// Timeout bounds a job: waiting for the client, then the transfer, with a margin so that
// the job's own timers, which record why the transfer ended, fire first.
func (w *transferWorker) Timeout(*river.Job[jobs.Transfer]) time.Duration {
	return w.openTimeout + w.transferTimeout + jobTimeoutMargin
}

// Work runs one transfer. An error makes River retry the job; that happens only when the
// database could not be told anything, and the retry then finds the subrequest decided.
func (w *transferWorker) Work(ctx context.Context, job *river.Job[jobs.Transfer]) error {
	id := job.Args.SubrequestID
	log := w.log.With(zap.Int64("subrequest", id))
	select {
	case <-w.draining:
		// Fetched as the daemon stops: leave the job (and the subrequest, SCHEDULED) to
		// the next process of this server.
		return river.JobSnooze(time.Second)
	default:
	}
	t, ok := w.transfers.Add(id)
	if !ok {
		log.Warn("a transfer of this subrequest is running already: duplicate job ignored")
		return nil
	}
	defer w.transfers.Remove(t)

	token, err := newToken()
	if err != nil {
		return err
	}
	moverURL := mover.TransferURL(w.server.url, id)
	var rows []model.TransferStartRow
	err = w.db.Tx(ctx, "start transfer", func(q pg.Querier) (err error) {
		rows, err = model.TransferStart(ctx, q, id, w.server.id(), moverURL, token)
		if err == nil && len(rows) > 0 {
			// Before the commit: a client can hold the token only once the mover knows it.
			t.Describe(rows[0], token)
		}
		return err
	})
	switch {
	case pg.SQLState(err) == model.SQLStateConflict:
		// Cancelled, removed or taken back since it was scheduled: nothing to move.
		log.Info("transfer no longer wanted", zap.String("reason", pg.ServerMessage(err)))
		return nil
	case err != nil:
		return fmt.Errorf("start transfer of subrequest %d: %w", id, err)
	case len(rows) == 0:
		return w.fail(ctx, log, id, "the subrequest has no disk copy to transfer")
	}
	r := rows[0]
	log = log.With(zap.String(logging.KeyRequestID, r.RequestID), zap.String("path", r.Path), zap.Stringer("type", r.Type))
	log.Info("transfer ready: waiting for the client", zap.String("mover_url", moverURL),
		zap.String("mount_point", r.MountPoint), zap.String("disk_path", r.DiskPath))

	late := fmt.Errorf("the client did not connect within %s", w.openTimeout)
	open := time.NewTimer(w.openTimeout)
	defer open.Stop()
	overdue := fmt.Errorf("the transfer did not end within %s", w.transferTimeout)
	var deadline <-chan time.Time
	started := t.Started()
	draining := w.draining
	handBack := func() error {
		log.Info("transfer handed back: the disk server is stopping")
		return river.JobCancel(fmt.Errorf("transfer of subrequest %d not started: %w", id, mover.ErrShutdown))
	}
	for {
		select {
		case <-t.Ended():
			outcome := t.Outcome()
			switch {
			case outcome == nil:
				return nil
			case errors.Is(outcome, mover.ErrShutdown):
				return river.JobCancel(outcome)
			}
			// The mover could not record the end; the transfer cannot be trusted.
			return w.fail(ctx, log, id, fmt.Sprintf("the disk server could not record the end of the transfer: %v", outcome))
		case <-started:
			started = nil
			open.Stop()
			timer := time.NewTimer(w.transferTimeout)
			defer timer.Stop()
			deadline = timer.C
			log.Info("client connected")
		case <-open.C:
			if t.Expire(late) {
				return w.fail(ctx, log, id, late.Error())
			}
		case <-draining:
			draining = nil
			// Nobody is waiting on a transfer whose client has not come: hand it back now
			// (takeBack) rather than hold the drain. One that moves data may finish.
			if t.Expire(mover.ErrShutdown) {
				return handBack()
			}
		case <-deadline:
			t.Abort(overdue)
			return w.fail(ctx, log, id, overdue.Error())
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				// River's timeout: the job's own timers should have fired first.
				t.Abort(overdue)
				return w.fail(context.WithoutCancel(ctx), log, id, overdue.Error())
			}
			// The daemon stops: the transfer is taken back when it has (takeBack), or by
			// the next process of this server; the job is not retried.
			t.Abort(mover.ErrShutdown)
			log.Warn("transfer abandoned: the disk server is stopping")
			return river.JobCancel(fmt.Errorf("transfer of subrequest %d abandoned: %w", id, mover.ErrShutdown))
		}
	}
}

// fail records the transfer's failure (transfer_fail leaves a subrequest already over
// alone).
func (w *transferWorker) fail(ctx context.Context, log *zap.Logger, id int64, message string) error {
	log.Warn("transfer failed", zap.String("reason", message))
	err := w.db.Tx(ctx, "fail transfer", func(q pg.Querier) error {
		return model.TransferFail(ctx, q, id, model.SQLStateTransferFailed, message)
	})
	if err != nil {
		return fmt.Errorf("record failure of subrequest %d: %w", id, err)
	}
	return nil
}

// newToken is a transfer's one-time secret: 256 random bits, in hex.
func newToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("transfer token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
