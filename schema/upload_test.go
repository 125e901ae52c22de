package schema_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/model"
)

// TestAutoCloseNeedsTheClientsChecksum: an auto-closing upload (pollux cp) whose client
// sent no adler32 is recorded but not closed: nothing vouches that the bytes are the
// client's, so the file stays STAGEOUT, the subrequest says why and what to do, the same
// report again changes nothing, and stager_putdone closes it as it closes a stager_put.
func TestAutoCloseNeedsTheClientsChecksum(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	l.diskServer("ds1")
	req := l.submit(model.RequestTypePut, true, "/pollux/f")
	l.stage()
	s := l.sub(req)
	l.transfer(s)
	require.NoError(t, model.TransferPutEnded(l.ctx, l.db.Pool(), s.ID, l.token(s.ID), 5, "00000001", nil))
	ended := l.sub(req)
	require.Equal(t, model.SubrequestStatusFinished, ended.Status)
	require.Contains(t, ended.Info, "not closed: the upload carried no X-Pollux-Adler32")
	require.Contains(t, ended.Info, "check its adler32 (00000001) and run stager_putdone")
	q, err := l.query("/pollux/f")
	require.NoError(t, err)
	require.Equal(t, "STAGEOUT", q.Status)

	require.NoError(t, model.TransferPutEnded(l.ctx, l.db.Pool(), s.ID, l.token(s.ID), 5, "00000001", nil), "the same report again")
	require.Equal(t, ended.UpdatedAt, l.sub(req).UpdatedAt, "and it changed nothing")

	done := l.submit(model.RequestTypePutdone, false, "/pollux/f")
	l.stage()
	require.Equal(t, model.SubrequestStatusFinished, l.sub(done).Status, l.sub(done).ErrorMessage)
	q, err = l.query("/pollux/f")
	require.NoError(t, err)
	require.Equal(t, "STAGED", q.Status)
}
