package schema_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/model"
)

// A request's updated_at only moves forward, in the order its changes commit: a long poll
// given one change's time as since must see every later change as newer. A transaction
// that began before another change committed (a disk server's claim, a stager's batch)
// used to stamp its start time, older than that change, and the long poll waited its
// whole time (pollux-certify's many-file cases took 30 s per request).
func TestRequestUpdatedAtFollowsCommitOrder(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	req := l.submit(model.RequestTypePrepareToGet, false, "/pollux/order")

	late, err := l.db.Pool().Begin(l.ctx)
	require.NoError(t, err)
	defer late.Rollback(l.ctx)
	// The late transaction's now() is fixed here, before the other change commits.
	_, err = late.Exec(l.ctx, "select now()")
	require.NoError(t, err)

	require.NoError(t, model.RequestRefresh(l.ctx, l.db.Pool(), req))
	first, err := model.RequestGet(l.ctx, l.db.Pool(), req)
	require.NoError(t, err)

	require.NoError(t, model.RequestRefresh(l.ctx, late, req))
	require.NoError(t, late.Commit(l.ctx))
	second, err := model.RequestGet(l.ctx, l.db.Pool(), req)
	require.NoError(t, err)
	require.True(t, second[0].UpdatedAt.After(first[0].UpdatedAt),
		"the change committed last is stamped %s, not after the one before it (%s)", second[0].UpdatedAt, first[0].UpdatedAt)
}
