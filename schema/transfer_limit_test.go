package schema_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/uuid"
	"github.com/pollux-storage/pollux/model"
)

// Policy user_max_transfers: a disk server's claim (transfer_claim) opens a mover for at
// most that many transfers of one user at once, across servers; the user's next ones stay
// SCHEDULED, saying why, and never take the place of another user's.
func TestTransfersInFlightPerUserAreBounded(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	ds1, _ := l.diskServer("ds1")
	_, err := model.PolicySet(l.ctx, l.db.Pool(), "user_max_transfers", 2, "test")
	require.NoError(t, err)

	var alice []string
	for i := range 4 {
		alice = append(alice, l.submit(model.RequestTypePut, false, fmt.Sprintf("/pollux/a%d", i)))
	}
	bobReq := uuid.New()
	_, err = model.RequestSubmit(l.ctx, l.db.Pool(), bobReq, model.RequestTypePut, "default", "bob", "", "test", []string{"/pollux/b"}, false, nil, nil)
	require.NoError(t, err)
	l.stage()

	// One token at a time: alice's first two, then bob's, passing over her held ones.
	for _, want := range []string{alice[0], alice[1], bobReq} {
		rows := l.claimOn(ds1, 1)
		require.Len(t, rows, 1)
		require.Equal(t, want, rows[0].RequestID)
	}
	require.Empty(t, l.claimOn(ds1, 10), "alice is at her limit")
	held := l.sub(alice[2])
	require.Equal(t, model.SubrequestStatusScheduled, held.Status)
	require.Equal(t, "queued: user alice has 2 transfers in flight, the limit (policy user_max_transfers)", held.Info,
		"her client is told why it waits")

	// One of hers ends: the next is claimed.
	first := l.sub(alice[0])
	require.NoError(t, model.TransferPutEnded(l.ctx, l.db.Pool(), first.ID, l.token(first.ID), 1, "00000001", new("00000001")))
	rows := l.claimOn(ds1, 10)
	require.Len(t, rows, 1)
	require.Equal(t, alice[2], rows[0].RequestID)
	require.Equal(t, model.SubrequestStatusScheduled, l.sub(alice[3]).Status)

	// 0: no limit.
	_, err = model.PolicySet(l.ctx, l.db.Pool(), "user_max_transfers", 0, "test")
	require.NoError(t, err)
	rows = l.claimOn(ds1, 10)
	require.Len(t, rows, 1)
	require.Equal(t, alice[3], rows[0].RequestID)
}
