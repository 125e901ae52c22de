package diskserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/pollux-storage/pollux/daemons/diskserverd/mover"
	"github.com/pollux-storage/pollux/framework/claim"
	"github.com/pollux-storage/pollux/framework/logging"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
)

// claimer is the disk server's claim of its own work: a claim pool whose step takes the
// transfers SCHEDULED on this server (transfer_claim: READY, endpoint and one-time token
// published, the client's long poll returns), as many as it has free movers, and hands
// each to a watcher that bounds it in time. The pool is woken by the placing daemon's
// hint (mover.PathWake) and by a mover slot coming free while work may be waiting for one,
// and polls as a safety net.
type claimer struct {
	db        *pg.DB
	server    *server
	transfers *mover.Transfers
	log       *zap.Logger
	limit     int
	running   atomic.Int64
	// backlog says that transfers may be waiting for a mover: a step is running, or the
	// last one found every mover busy or filled every free one (more may be queued). Only
	// then does a mover
	// coming free wake the pool; otherwise the claim would find nothing (it did, for every
	// transfer's end, one empty transfer_claim per PUT). A transfer held back by its user's
	// user_max_transfers waits for the next hint or poll.
	backlog  atomic.Bool
	pool     *claim.Pool
	watchers sync.WaitGroup
	// unsure are the tokens of the last claim that failed: it may have committed, its
	// transfers READY with these tokens, published to their clients, and unknown to the
	// movers. The next claim passes them again and transfer_claim, keyed by its tokens,
	// returns those transfers. Only the claim pool's one worker uses it.
	unsure []string
	// draining is closed when the daemon starts to stop.
	draining chan struct{}
	// abort ends the watchers at the drain deadline.
	watchCtx context.Context
	abort    context.CancelFunc
}

// step claims what this server has room for.
func (c *claimer) step(ctx context.Context) (int, error) {
	// A transfer that ends while this step runs must wake the pool: this step counted its
	// mover as busy. It is said again below, once the step knows what it found.
	c.backlog.Store(true)
	free := c.limit - int(c.running.Load())
	if free <= 0 {
		return 0, nil // a watcher that ends wakes the pool
	}
	// The claim that failed held at most the free movers of its step; none was taken since.
	tokens := append(make([]string, 0, free), c.unsure[:min(len(c.unsure), free)]...)
	for len(tokens) < free {
		t, err := newToken()
		if err != nil {
			return 0, err
		}
		tokens = append(tokens, t)
	}
	var rows []model.TransferClaimRow
	var added []*mover.Transfer
	// held are the transfers this claim put in the table. A re-run after a lost commit
	// reply returns the transfers the lost run claimed, keyed by the tokens: each keeps
	// its entry, which a client told by the lost run's notification may be using already.
	held := map[int64]*mover.Transfer{}
	err := c.db.TxIdempotent(ctx, "claim transfers", func(q pg.Querier) (err error) {
		if rows, err = model.TransferClaim(ctx, q, c.server.id(), c.server.url, tokens); err != nil {
			return err
		}
		// Before the commit: a client can hold a token only once the mover knows it.
		kept := make(map[int64]*mover.Transfer, len(rows))
		added = make([]*mover.Transfer, len(rows))
		for i, r := range rows {
			if t := held[r.SubrequestID]; t != nil && t.Token() == r.Token {
				kept[r.SubrequestID], added[i] = t, t
				continue
			}
			if t := held[r.SubrequestID]; t != nil {
				c.transfers.Remove(t) // a run that rolled back gave it another token
				delete(held, r.SubrequestID)
			}
			t, ok := c.transfers.Add(r.SubrequestID)
			if !ok {
				return fmt.Errorf("claim transfers: subrequest %d is running here already", r.SubrequestID)
			}
			t.Describe(r)
			kept[r.SubrequestID], added[i] = t, t
		}
		for id, t := range held {
			if kept[id] != t {
				c.transfers.Remove(t)
			}
		}
		held = kept
		return nil
	})
	if err != nil {
		for _, t := range held {
			c.transfers.Remove(t)
		}
		c.unsure = tokens
		return 0, err
	}
	c.unsure = nil
	c.backlog.Store(len(rows) >= free)
	for i, r := range rows {
		c.running.Add(1)
		c.watchers.Add(1)
		go c.watch(added[i], r)
	}
	return len(rows), nil
}

// watch follows one transfer until the mover handler reports its end, or the client does
// not come within the policy's transfer_open_seconds, or the transfer outlives
// transfer_seconds, or the daemon stops.
func (c *claimer) watch(t *mover.Transfer, r model.TransferClaimRow) {
	defer c.watchers.Done()
	defer func() {
		c.transfers.Remove(t)
		c.running.Add(-1)
		if c.backlog.Load() {
			c.pool.Wake() // a mover came free, and work may be waiting for it
		}
	}()
	id := r.SubrequestID
	log := c.log.With(zap.Int64("subrequest", id), zap.String(logging.KeyRequestID, r.RequestID),
		zap.String("path", r.Path), zap.Stringer("type", r.Type))
	log.Info("transfer ready: waiting for the client", zap.String("mount_point", r.MountPoint), zap.String("disk_path", r.DiskPath))

	openLimit := time.Duration(r.OpenSeconds) * time.Second
	transferLimit := time.Duration(r.TransferSeconds) * time.Second
	open := time.NewTimer(openLimit)
	defer open.Stop()
	var deadline <-chan time.Time
	// The minimum rate (policy, read at claim): an upload that received, or a download that
	// sent, fewer than minRate × window bytes in the last window is dropped, so that a
	// stalled or trickling client does not hold a mover, its space and a connection until
	// transfer_seconds.
	window := time.Duration(r.MinRateSeconds) * time.Second
	var rateCheck <-chan time.Time
	var movedBefore int64
	started := t.Started()
	draining := c.draining
	for {
		select {
		case <-t.Ended():
			outcome := t.Outcome()
			switch {
			case outcome == nil, errors.Is(outcome, mover.ErrShutdown):
				return // recorded, or taken back when the daemon stops (takeBack)
			}
			// The mover could not record the end; the transfer cannot be trusted.
			c.fail(log, id, r.Token, fmt.Sprintf("the disk server could not record the end of the transfer: %v", outcome))
			return
		case <-started:
			started = nil
			open.Stop()
			timer := time.NewTimer(transferLimit)
			defer timer.Stop()
			deadline = timer.C
			if r.MinBytesPerSecond > 0 && window > 0 {
				ticker := time.NewTicker(window)
				defer ticker.Stop()
				rateCheck = ticker.C
			}
			log.Info("client connected")
		case <-rateCheck:
			moved, moving := t.Moved()
			if !moving {
				// The bytes are in (or out); a long fsync is not the client's slowness.
				rateCheck = nil
				continue
			}
			if got, want := moved-movedBefore, r.MinBytesPerSecond*r.MinRateSeconds; got < want {
				what := "the upload received"
				if r.Type == model.RequestTypeGet {
					what = "the download sent"
				}
				slow := fmt.Errorf("%s %d bytes in the last %s, below the minimum of %d bytes per second (policy transfer_min_bytes_per_second)",
					what, got, window, r.MinBytesPerSecond)
				t.Abort(slow)
				c.fail(log, id, r.Token, slow.Error())
				return
			}
			movedBefore = moved
		case <-open.C:
			// The reasons are worded only when they happen: most transfers meet neither.
			if late := fmt.Errorf("the client did not connect within %s", openLimit); t.Expire(late) {
				c.fail(log, id, r.Token, late.Error())
				return
			}
		case <-draining:
			draining = nil
			// Nobody is waiting on a transfer whose client has not come: hand it back now
			// (takeBack at the end of the drain) rather than hold the drain. One that moves
			// data may finish.
			if t.Expire(mover.ErrShutdown) {
				log.Info("transfer handed back: the disk server is stopping")
				return
			}
		case <-deadline:
			overdue := fmt.Errorf("the transfer did not end within %s", transferLimit)
			t.Abort(overdue)
			c.fail(log, id, r.Token, overdue.Error())
			return
		case <-c.watchCtx.Done():
			// The drain deadline passed: the transfer is taken back (takeBack), or by the next
			// process of this server.
			t.Abort(mover.ErrShutdown)
			log.Warn("transfer abandoned: the disk server is stopping")
			return
		}
	}
}

// fail records the transfer's failure (transfer_fail leaves a transfer that failed already
// alone, and refuses to fail one that finished: the mover's report may have committed with
// its reply lost). When even that cannot be recorded, the job manager's sweep ends the
// transfer once it outlives every time limit.
func (c *claimer) fail(log *zap.Logger, id int64, token, message string) {
	ctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
	defer cancel()
	err := c.db.TxIdempotent(ctx, "fail transfer", func(q pg.Querier) error {
		return model.TransferFail(ctx, q, id, token, model.SQLStateTransferFailed, message)
	})
	switch {
	case pg.SQLState(err) == model.SQLStateConflict:
		log.Info("transfer not failed: it had finished", zap.String("reason", message), zap.String("catalogue", pg.ServerMessage(err)))
	case err != nil:
		log.Error("transfer failed, and recording it failed too: the job manager will end it", zap.String("reason", message), zap.Error(err))
	default:
		log.Warn("transfer failed", zap.String("reason", message))
	}
}

// Name names the service.
func (c *claimer) Name() string { return "transfers" }

// Start starts claiming.
func (c *claimer) Start(ctx context.Context) error { return c.pool.Start(ctx) }

// Stop stops claiming, then lets the watchers end: at once for transfers whose client has
// not come, until ctx ends for those moving data.
func (c *claimer) Stop(ctx context.Context) error {
	err := c.pool.Stop(ctx)
	close(c.draining)
	done := make(chan struct{})
	go func() { c.watchers.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		c.abort()
		<-done
	}
	c.abort()
	return err
}

// recordTimeout bounds reporting a failure; it exceeds framework/pg's retry budget so that
// a database failover is ridden out.
const recordTimeout = 2 * time.Minute

// newToken is a transfer's one-time secret: 256 random bits, in hex.
func newToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("transfer token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
