package schema_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/uuid"
	"github.com/pollux-storage/pollux/model"
)

// TestPendingRequestsPerUserAreBounded: with policy user_max_pending_requests 2, a user's
// third pending request is refused as unavailable (PX005) naming the limit and stores
// nothing; a retry of a stored request is still answered; another user is not counted
// against her; once her requests end she may submit again; 0 lifts the bound.
func TestPendingRequestsPerUserAreBounded(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	_, err := model.PolicySet(l.ctx, l.db.Pool(), "user_max_pending_requests", 2, "test")
	require.NoError(t, err)
	submit := func(user, id string) error {
		_, err := model.RequestSubmit(l.ctx, l.db.Pool(), id, model.RequestTypeGet, "default", user, "", "test", []string{"/pollux/none/" + id}, false, nil, nil)
		return err
	}
	first, second := uuid.New(), uuid.New()
	require.NoError(t, submit("alice", first))
	require.NoError(t, submit("alice", second))
	err = submit("alice", uuid.New())
	require.Error(t, err)
	require.Equal(t, model.SQLStateUnavailable, pg.SQLState(err))
	require.Equal(t, "user alice has 2 requests pending, the limit (policy user_max_pending_requests): wait for some to end, then submit again",
		pg.ServerMessage(err))
	var n int
	require.NoError(t, l.db.Pool().QueryRow(l.ctx, "select count(*) from request").Scan(&n))
	require.Equal(t, 2, n, "the refused request stored nothing")

	require.NoError(t, submit("alice", second), "a retry of a stored request is answered, not counted")
	require.NoError(t, submit("bob", uuid.New()), "bob's requests are his own")

	l.stage() // the reads of files that do not exist fail: the requests end
	require.Equal(t, model.RequestStatusFailed, l.requestStatus(first))
	require.NoError(t, submit("alice", uuid.New()))

	_, err = model.PolicySet(l.ctx, l.db.Pool(), "user_max_pending_requests", 0, "test")
	require.NoError(t, err)
	for range 3 {
		require.NoError(t, submit("alice", uuid.New()), "0: no bound")
	}
}
