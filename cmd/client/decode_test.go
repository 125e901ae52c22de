package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/cmd/client"
	"github.com/pollux-storage/pollux/model/wire"
)

// The client reads rhd's answers strictly: a field it does not know is a disagreement on
// the contract (daemons/rhd/api), reported rather than half-read. Error bodies are the
// exception: their message is worth showing whatever else they carry.
func TestAnswersAreDecodedStrictly(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		status int
		body   string
		kind   wire.ErrorKind // "" for a success
		says   string
	}{
		{"known fields", http.StatusOK,
			`{"id":"r","type":"GET","status":"PENDING","updated_at":"2026-01-02T03:04:05Z","subrequests":[{"id":1,"path":"/pollux/f","status":"START"}]}`, "", ""},
		{"unknown field of the request", http.StatusOK,
			`{"id":"r","type":"GET","status":"PENDING","updated_at":"2026-01-02T03:04:05Z","subrequests":[],"queue_position":3}`,
			wire.ErrorKindInternal, `unknown field "queue_position"`},
		{"unknown field of a subrequest", http.StatusOK,
			`{"id":"r","type":"GET","status":"PENDING","updated_at":"2026-01-02T03:04:05Z","subrequests":[{"id":1,"path":"/pollux/f","status":"START","owner":"bob"}]}`,
			wire.ErrorKindInternal, `unknown field "owner"`},
		{"two values", http.StatusOK,
			`{"id":"r","type":"GET","status":"PENDING","updated_at":"2026-01-02T03:04:05Z","subrequests":[]} {}`,
			wire.ErrorKindInternal, "data after the JSON value"},
		{"error body with an unknown field", http.StatusConflict,
			`{"error":{"kind":"conflict","code":"PX003","message":"busy","retry_after":2}}`,
			wire.ErrorKindConflict, "busy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			cl := client.New(client.Config{Hosts: []string{srv.URL}, Token: "t"})
			defer cl.Close()
			req, err := cl.Request(context.Background(), "r", time.Time{}, 0)
			if tt.kind == "" {
				require.NoError(t, err)
				require.Equal(t, "START", req.Subrequests[0].Status)
				return
			}
			var ce *client.Error
			require.ErrorAs(t, err, &ce)
			require.Equal(t, tt.kind, ce.Kind)
			require.Contains(t, ce.Message, tt.says)
		})
	}
}
