package requesthandler_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/framework/uuid"
)

func TestHistoryTellsTheOwnerTheWholeStory(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	in := c.rhd()
	req := api.SubmitRequest{ID: uuid.New(), Type: "PUT", Paths: []string{"/pollux/u/alice/story"}}
	r := submit(t, in, aliceToken, req)
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	c.schedulePut(req.ID)

	r = do(t, http.MethodGet, in.URL+api.HistoryPath(req.ID), aliceToken, nil)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	var h api.History
	r.decode(t, &h)
	require.Equal(t, req.ID, h.Request.ID)
	require.Len(t, h.Transitions, 2)
	require.Equal(t, api.Transition{}.From, h.Transitions[0].From, "created")
	require.Equal(t, "START", h.Transitions[0].To)
	require.Equal(t, "rhd", h.Transitions[0].Daemon, "rhd's own connection says who it is")
	require.NotEmpty(t, h.Transitions[0].InstanceID)
	require.Equal(t, "START", h.Transitions[1].From)
	require.Equal(t, "SCHEDULED", h.Transitions[1].To)
	require.Len(t, h.Waits, 1)
	require.Equal(t, "SCHEDULED", h.Waits[0].Status)
	require.Contains(t, h.Waits[0].WaitingFor, "disk server ds1")
	require.NotNil(t, h.Waits[0].QueuePosition)

	r = do(t, http.MethodGet, in.URL+api.HistoryPath(req.ID), bobToken, nil)
	require.Equal(t, http.StatusForbidden, r.status, "somebody else's request")
	r = do(t, http.MethodGet, in.URL+api.HistoryPath(uuid.New()), aliceToken, nil)
	require.Equal(t, http.StatusNotFound, r.status)
	r = do(t, http.MethodGet, in.URL+api.HistoryPath("nope"), aliceToken, nil)
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Contains(t, r.errorBody(t).Message, "request id")
}
