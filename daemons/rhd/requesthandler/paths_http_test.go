package requesthandler_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/framework/uuid"
	"github.com/pollux-storage/pollux/model"
)

// TestPathsAreCheckedAndNormalised sends rhd the names that used to reach PostgreSQL raw:
// what PostgreSQL cannot store (NUL, bytes that are not UTF-8) is refused by rhd itself
// with a 400 naming the field, never a 500; characters the namespace refuses come back as
// namespace_path_problem's 400 (PX002); nothing refused is stored. A name in NFD is stored,
// and found by stager_qry, in NFC, and its two spellings are one file.
func TestPathsAreCheckedAndNormalised(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a := c.rhd()
	const nfc, nfd = "/pollux/u/alice/caf\u00e9", "/pollux/u/alice/cafe\u0301"
	body := func(extra, paths string) string {
		return `{"id":"` + uuid.New() + `","type":"PUT","transfer_key_hash":"` + testKeyHash + `"` + extra + `,"paths":[` + paths + `]}`
	}
	for _, tc := range []struct {
		name   string
		body   string
		reason string
		code   string // the SQLSTATE when the logic decided
	}{
		{"nul in a path", body("", `"/pollux/a","/pollux/b\u0000c"`), "path 2 contains a NUL byte (at byte 9)", ""},
		{"nul in user_tag", body(`,"user_tag":"t\u0000"`, `"/pollux/a"`), "user_tag contains a NUL byte", ""},
		{"nul in service_class", body(`,"service_class":"\u0000"`, `"/pollux/a"`), "service_class contains a NUL byte", ""},
		// encoding/json turns bytes that are not UTF-8 into U+FFFD: the namespace refuses it,
		// so two different broken names cannot become one file.
		{"raw bytes not utf-8", body("", "\"/pollux/a\xffb\""), "replacement character U+FFFD at character 10", "PX002"},
		{"bell", body("", `"/pollux/a\u0007"`), "control character U+0007 at character 10", "PX002"},
		{"c1 control", body("", `"/pollux/a\u0085"`), "control character U+0085", "PX002"},
		{"escape sequence", body("", `"/pollux/\u001b[2J"`), "control character U+001B", "PX002"},
		{"bidi override", body("", `"/pollux/\u202efdp.exe"`), "invisible formatting character U+202E", "PX002"},
		{"zero-width space", body("", `"/pollux/a\u200bb"`), "invisible formatting character U+200B", "PX002"},
		{"two spellings of one name", body("", `"`+nfc+`","`+nfd+`"`), "more than once", "PX002"},
	} {
		r := do(t, http.MethodPost, a.URL+api.PathRequests, aliceToken, strings.NewReader(tc.body))
		require.Equal(t, http.StatusBadRequest, r.status, "%s: %s", tc.name, r.body)
		e := r.errorBody(t)
		require.Equal(t, "invalid", e.Kind, tc.name)
		require.Contains(t, e.Message, tc.reason, tc.name)
		require.Equal(t, tc.code, e.Code, tc.name)
	}
	files := func(rawQuery string) response {
		return do(t, http.MethodGet, a.URL+api.PathFiles+"?"+rawQuery, bobToken, nil)
	}
	for q, reason := range map[string]string{
		"path=/pollux/a%00":                       "path contains a NUL byte (at byte 9)",
		"path=/pollux/a%FF":                       "path is not valid UTF-8 (byte 9 is 0xff)",
		"path=/pollux/a%E2%80%AE":                 "invisible formatting character U+202E",
		"path=" + url.QueryEscape("/pollux/\x07"): "control character U+0007",
	} {
		r := files(q)
		require.Equal(t, http.StatusBadRequest, r.status, "%s: %s", q, r.body)
		require.Contains(t, r.errorBody(t).Message, reason, q)
	}
	require.Zero(t, c.count("select (select count(*) from request) + (select count(*) from subrequest)"),
		"a refused request leaves nothing behind")

	// The NFD spelling is stored as NFC ...
	id := uuid.New()
	r := submit(t, a, aliceToken, api.SubmitRequest{ID: id, Type: "PUT", AutoClose: true, Paths: []string{nfd}})
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	var req api.Request
	get(t, a, aliceToken, id, nil).decode(t, &req)
	require.Equal(t, nfc, req.Subrequests[0].Path)
	// ... a retry of the same request in either spelling is the same request ...
	r = submit(t, a, aliceToken, api.SubmitRequest{ID: id, Type: "PUT", AutoClose: true, Paths: []string{nfc}})
	require.Equal(t, http.StatusOK, r.status, string(r.body))

	// ... and once written, stager_qry finds it under either spelling.
	ds := c.schedulePut(id)
	subs, err := model.SubrequestList(c.ctx, c.db.Pool(), id)
	require.NoError(t, err)
	_, err = model.TransferClaim(c.ctx, c.db.Pool(), ds, "http://ds1:9100", []string{"tok"})
	require.NoError(t, err)
	require.NoError(t, model.TransferPutEnded(c.ctx, c.db.Pool(), subs[0].ID, "tok", 11, "1a2b3c4d", new("1a2b3c4d")))
	for _, p := range []string{nfd, nfc} {
		r := files(url.Values{api.ParamPath: {p}}.Encode())
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		var f api.File
		r.decode(t, &f)
		require.Equal(t, nfc, f.Path)
	}
	require.Equal(t, 1, c.count("select count(*) from file"))
}
