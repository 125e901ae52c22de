package requesthandler

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/uuid"
	"github.com/pollux-storage/pollux/model"
	"github.com/pollux-storage/pollux/schema/schematest"
)

// TestRequestViewMatchesTheAPI holds the two halves of the request's JSON shape together:
// request_view (schema/logic/request.sql) builds it in SQL, rhd decodes it into
// requestView (api.Request and its owner) and the client decodes api.Request strictly. The
// logic is driven until one request or another has every key (a READY transfer, a
// finished write, a failure, a user tag); each real view must decode with unknown fields
// disallowed (a key added in SQL alone fails), and together they must carry every field
// of the Go types (a field added in Go alone fails).
//
// rhd itself decodes leniently on purpose: a hot patch that adds a key must not break
// running request handlers, whose answers only carry the fields they know.
func TestRequestViewMatchesTheAPI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := schematest.DB(t)
	p := db.Pool()

	ds, err := model.DiskServerRegister(ctx, p, "ds1", "http://ds1:9100", 0.1)
	require.NoError(t, err)
	_, err = model.FileSystemRegister(ctx, p, ds, "/data/ds1", "default", 1<<40, 1<<39)
	require.NoError(t, err)
	put, get := uuid.New(), uuid.New()
	_, err = model.RequestSubmit(ctx, p, put, model.RequestTypePut, "default", "alice", "my tag", "test", []string{"/pollux/v/ready", "/pollux/v/written"}, false, nil, nil)
	require.NoError(t, err)
	_, err = model.RequestSubmit(ctx, p, get, model.RequestTypeGet, "default", "alice", "", "test", []string{"/pollux/v/missing"}, false, nil, nil)
	require.NoError(t, err)
	require.NoError(t, db.Tx(ctx, "stage", func(q pg.Querier) error {
		for _, f := range model.Families() {
			if _, err := model.SubrequestClaim(ctx, q, string(f), 10); err != nil {
				return err
			}
		}
		return nil
	}))
	subs, err := model.SubrequestList(ctx, p, put)
	require.NoError(t, err)
	require.Len(t, subs, 2)
	claimed, err := model.TransferClaim(ctx, p, ds, "http://ds1:9100", []string{"token", "token"})
	require.NoError(t, err)
	require.Len(t, claimed, 2)
	tok := ""
	for _, r := range claimed {
		if r.SubrequestID == subs[1].ID {
			tok = r.Token
		}
	}
	require.NoError(t, model.TransferPutEnded(ctx, p, subs[1].ID, tok, 10, "0000000a", new("0000000a")))

	seen := map[string]bool{} // "request.<key>" and "subrequest.<key>" of the real views
	for _, id := range []string{put, get} {
		raw, err := model.RequestView(ctx, p, id)
		require.NoError(t, err)
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		var v requestView
		require.NoError(t, dec.Decode(&v), "request_view has a key the API does not: %s", raw)

		var keys struct {
			Request     map[string]json.RawMessage
			Subrequests []map[string]json.RawMessage
		}
		require.NoError(t, json.Unmarshal(raw, &keys.Request))
		require.NoError(t, json.Unmarshal(keys.Request["subrequests"], &keys.Subrequests))
		for k := range keys.Request {
			seen["request."+k] = true
		}
		for _, s := range keys.Subrequests {
			for k := range s {
				seen["subrequest."+k] = true
			}
		}
	}
	var missing []string
	for _, k := range jsonKeys(reflect.TypeFor[requestView]()) {
		if !seen["request."+k] {
			missing = append(missing, "request."+k)
		}
	}
	for _, k := range jsonKeys(reflect.TypeFor[api.Subrequest]()) {
		if !seen["subrequest."+k] {
			missing = append(missing, "subrequest."+k)
		}
	}
	require.Empty(t, missing, "fields of the API that request_view never sends")
}

// jsonKeys are the JSON keys of a struct type's fields, embedded structs' included.
func jsonKeys(t reflect.Type) []string {
	var out []string
	for f := range t.Fields() {
		if f.Anonymous {
			out = append(out, jsonKeys(f.Type)...)
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "" && name != "-" && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}
