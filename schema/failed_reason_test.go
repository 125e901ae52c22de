package schema_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/model"
)

// A failed write of a new file leaves no namespace entry; stager_qry (file_query) still
// tells its writer why, and only its writer, and only while that failure is the last
// word on the path: a later rm or a good write supersedes it.
func TestQueryOfAFailedPutSaysWhy(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	l.diskServer("ds1")
	req := l.submit(model.RequestTypePut, false, "/pollux/failed")
	l.stage()
	w := l.sub(req)
	l.transfer(w)
	require.NoError(t, model.TransferFail(l.ctx, l.db.Pool(), w.ID, l.token(w.ID), model.SQLStateBadData, "upload truncated: 10 of 20 bytes"))

	_, err := l.query("/pollux/failed")
	require.Equal(t, model.SQLStateNotFound, sqlstate(err), "still not found")
	require.ErrorContains(t, err, "no such file: /pollux/failed (your put of it, request "+req+", failed at ")
	require.ErrorContains(t, err, model.SQLStateBadData+" upload truncated: 10 of 20 bytes")

	// Another user hears only "no such file".
	_, err = model.FileQuery(l.ctx, l.db.Pool(), "/pollux/failed", "bob")
	require.Equal(t, model.SQLStateNotFound, sqlstate(err))
	require.NotContains(t, err.Error(), "your put")

	// A path never written says only "no such file".
	_, err = l.query("/pollux/never")
	require.Equal(t, model.SQLStateNotFound, sqlstate(err))
	require.NotContains(t, err.Error(), "your put")

	// A good write, then an rm: the old failure is no longer the story.
	l.put("/pollux/failed", 3, "024d0127")
	rm := l.submit(model.RequestTypeRm, false, "/pollux/failed")
	l.stage()
	require.Equal(t, model.SubrequestStatusFinished, l.sub(rm).Status)
	_, err = l.query("/pollux/failed")
	require.Equal(t, model.SQLStateNotFound, sqlstate(err))
	require.NotContains(t, err.Error(), "your put")
}
