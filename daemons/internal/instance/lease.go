package instance

import (
	"context"
	"fmt"
	"time"

	"github.com/pollux-storage/pollux/framework/leader"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
)

// Leases keeps the leases of singleton pools in leader_lease through the logic functions
// of schema/logic/leader.sql.
type Leases struct{}

var _ leader.Store = Leases{}

// Acquire runs one election round.
func (Leases) Acquire(ctx context.Context, q pg.Querier, name string, c leader.Candidate, ttl time.Duration) (leader.Lease, error) {
	rows, err := model.LeaderLeaseAcquire(ctx, q, name, c.InstanceID, c.Host, ttl.Seconds(), c.Preferred)
	if err != nil {
		return leader.Lease{}, err
	}
	if len(rows) != 1 {
		return leader.Lease{}, fmt.Errorf("leader_lease_acquire returned %d rows, not 1", len(rows))
	}
	r := rows[0]
	l := leader.Lease{Epoch: r.Epoch, Leader: r.Leader}
	if r.HolderID != nil {
		l.HolderID = *r.HolderID
	}
	if r.HolderHost != nil {
		l.HolderHost = *r.HolderHost
	}
	if r.ExpiresInSeconds != nil {
		l.ExpiresIn = time.Duration(*r.ExpiresInSeconds * float64(time.Second))
	}
	return l, nil
}

// Resign gives the lease up if the instance holds it at epoch.
func (Leases) Resign(ctx context.Context, q pg.Querier, name, instanceID string, epoch int64) error {
	return model.LeaderLeaseResign(ctx, q, name, instanceID, epoch)
}

// Fence refuses to let the transaction go on unless epoch is current.
func (Leases) Fence(ctx context.Context, q pg.Querier, name string, epoch int64) error {
	err := model.LeaderLeaseFence(ctx, q, name, epoch)
	if err != nil && pg.SQLState(err) == model.SQLStateFenced {
		return fmt.Errorf("%w: %s", leader.ErrFenced, pg.ServerMessage(err))
	}
	return err
}

// Record journals rows of singleton work.
func (Leases) Record(ctx context.Context, q pg.Querier, name string, epoch int64, instanceID string, rows int) error {
	return model.LeaderWorkRecord(ctx, q, name, epoch, instanceID, int32(rows))
}
