package e2e

import (
	"context"
	"fmt"
	"time"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
)

// SingletonWorkRanTwice reads the singleton work journal (leader_work) of an instance's
// database and describes every sign that singleton work ran under two leaders: per lease,
// in commit order, an epoch lower than the one before, or one epoch journalled by two
// instances. Empty means none.
func SingletonWorkRanTwice(ctx context.Context, db *pg.DB) ([]string, error) {
	var bad []string
	err := db.DoIdempotent(ctx, "e2e: singleton work", func(q pg.Querier) error {
		bad = nil
		rows, err := q.Query(ctx, `
			select name || ': epoch ' || epoch || ' by ' || instance_id || ' after epoch ' || prev
			from (select name, epoch, instance_id, lag(epoch) over (partition by name order by id) as prev from leader_work) w
			where epoch < prev
			union all
			select name || ': epoch ' || epoch || ' by ' || count(distinct instance_id) || ' instances'
			from leader_work group by name, epoch having count(distinct instance_id) > 1`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				return err
			}
			bad = append(bad, s)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("read the singleton work journal: %w", err)
	}
	return bad, nil
}

// WaitLeader waits, at most within, until lease has a live leader other than the instance
// registered as host not ("" for any) at an epoch above after, and returns its host (the
// daemon's name in the harness) and epoch.
func WaitLeader(ctx context.Context, db *pg.DB, lease, not string, after int64, within time.Duration) (string, int64, error) {
	deadline := time.Now().Add(within)
	for {
		list, err := model.LeaderLeaseList(ctx, db.Pool(), 30)
		if err == nil {
			for _, l := range list {
				if l.Name == lease && l.HolderID != nil && l.ExpiresInSeconds > 0 && l.HolderHost != not && l.Epoch > after {
					return l.HolderHost, l.Epoch, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return "", 0, fmt.Errorf("no leader of %s but %q above epoch %d within %s (last error: %v)", lease, not, after, within, err)
		}
		select {
		case <-ctx.Done():
			return "", 0, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
