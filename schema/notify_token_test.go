package schema_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/model"
)

// A mover's one-time token is never in a notification, which any session that may LISTEN
// reads: the notification of a transfer becoming READY carries the view without it, and
// request_view, which rhd reads for the request's own user, still has it.
func TestNotificationCarriesNoMoverToken(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	l.diskServer("ds1")
	conn, err := l.db.Pool().Acquire(l.ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(l.ctx, "listen "+pgx.Identifier{model.ChannelRequestChanged}.Sanitize())
	require.NoError(t, err)

	req := l.submit(model.RequestTypePut, false, "/pollux/secret")
	l.stage()
	claimed := l.transfer(l.sub(req))
	require.NotEmpty(t, claimed.Token)

	// Notifications arrive in commit order: the one showing READY comes after the claim.
	ctx, cancel := context.WithTimeout(l.ctx, 30*time.Second)
	defer cancel()
	var ready string
	for ready == "" {
		n, err := conn.Conn().WaitForNotification(ctx)
		require.NoError(t, err, "no notification showed the transfer READY")
		require.NotContains(t, n.Payload, claimed.Token, "a notification carries the mover's token")
		id, view, _ := strings.Cut(n.Payload, " ")
		if id == req && strings.Contains(view, `"READY"`) {
			ready = view
		}
	}
	var v struct {
		Subrequests []map[string]any `json:"subrequests"`
	}
	require.NoError(t, json.Unmarshal([]byte(ready), &v))
	require.Len(t, v.Subrequests, 1)
	require.Equal(t, "READY", v.Subrequests[0]["status"])
	require.NotEmpty(t, v.Subrequests[0]["mover_url"], "the rest of the view is carried")
	require.NotContains(t, v.Subrequests[0], "token")

	full, err := model.RequestView(l.ctx, l.db.Pool(), req)
	require.NoError(t, err)
	require.Contains(t, string(full), claimed.Token, "the owner's read still finds the token")
}
