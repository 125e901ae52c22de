package schema_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/uuid"
	"github.com/pollux-storage/pollux/model"
)

// A notification, which any session that may LISTEN reads, carries a READY subrequest's
// mover token only where the token alone opens nothing: its request has a transfer key,
// and a mover serves only "<token>.<secret>". A request without a key has its tokens
// stripped, and request_view, which rhd reads for the request's own user, still has them.
func TestNotificationCarriesAMoverTokenOnlyWithATransferKey(t *testing.T) {
	t.Parallel()
	l := newLife(t)
	l.diskServer("ds1")
	conn, err := l.db.Pool().Acquire(l.ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(l.ctx, "listen "+pgx.Identifier{model.ChannelRequestChanged}.Sanitize())
	require.NoError(t, err)

	// readyView waits for the notification showing req's transfer READY and returns its view.
	readyView := func(req, token string, carried bool) map[string]any {
		t.Helper()
		// Notifications arrive in commit order: the one showing READY comes after the claim.
		ctx, cancel := context.WithTimeout(l.ctx, 30*time.Second)
		defer cancel()
		for {
			n, err := conn.Conn().WaitForNotification(ctx)
			require.NoError(t, err, "no notification showed the transfer READY")
			id, view, _ := strings.Cut(n.Payload, " ")
			if id != req {
				continue
			}
			if !carried {
				require.NotContains(t, n.Payload, token, "a notification carries the mover's token of a request without a transfer key")
			}
			if !strings.Contains(view, `"READY"`) {
				continue
			}
			var v struct {
				Subrequests []map[string]any `json:"subrequests"`
			}
			require.NoError(t, json.Unmarshal([]byte(view), &v))
			require.Len(t, v.Subrequests, 1)
			require.Equal(t, "READY", v.Subrequests[0]["status"])
			require.NotEmpty(t, v.Subrequests[0]["mover_url"], "the rest of the view is carried")
			return v.Subrequests[0]
		}
	}

	keyless := l.submit(model.RequestTypePut, false, "/pollux/secret")
	l.stage()
	claimed := l.transfer(l.sub(keyless))
	require.NotEmpty(t, claimed.Token)
	require.NotContains(t, readyView(keyless, claimed.Token, false), "token")
	full, err := model.RequestView(l.ctx, l.db.Pool(), keyless)
	require.NoError(t, err)
	require.Contains(t, string(full), claimed.Token, "the owner's read still finds the token")

	keyed := uuid.New()
	hash := strings.Repeat("ab", 32)
	_, err = model.RequestSubmit(l.ctx, l.db.Pool(), keyed, model.RequestTypePut, "default", "alice", "", "test",
		[]string{"/pollux/keyed"}, false, &hash, nil)
	require.NoError(t, err)
	l.stage()
	claimed = l.transfer(l.sub(keyed))
	require.Equal(t, claimed.Token, readyView(keyed, claimed.Token, true)["token"],
		"a request with a transfer key has its token carried: rhd answers without reading")
}
