package e2e

import (
	"context"
	"fmt"

	"github.com/pollux-storage/pollux/framework/pg"
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
