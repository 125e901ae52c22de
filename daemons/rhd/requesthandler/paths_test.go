package requesthandler

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
	"golang.org/x/text/unicode/norm"

	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/model"
)

func TestCleanPath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in, want, problem string
	}{
		{"ascii", "/pollux/u/f", "/pollux/u/f", ""},
		{"nfc stays", "/pollux/caf\u00e9", "/pollux/caf\u00e9", ""},
		{"nfd becomes nfc", "/pollux/cafe\u0301", "/pollux/caf\u00e9", ""},
		{"hangul jamo compose", "/pollux/\u1100\u1161", "/pollux/\uac00", ""},
		// Compatibility characters keep their identity: NFC, not NFKC, so "ﬁ" is not "fi".
		{"ligature kept", "/pollux/\ufb01le", "/pollux/\ufb01le", ""},
		{"nul", "/pollux/a\x00b", "", "path contains a NUL byte (at byte 9)"},
		{"invalid utf-8", "/pollux/a\xffb", "", "path is not valid UTF-8 (byte 9 is 0xff)"},
		{"lone continuation byte", "/pollux/\x80", "", "byte 8 is 0x80"},
		{"encoded surrogate", "/pollux/\xed\xa0\x80", "", "byte 8 is 0xed"},
		// Other control characters are SQL's to refuse (namespace_path_problem): PostgreSQL
		// can store them, so the policy stays where it can be changed without a rebuild.
		{"bell passes to sql", "/pollux/a\x07", "/pollux/a\x07", ""},
	} {
		got, herr := cleanPath("path", tc.in)
		if tc.problem != "" {
			require.NotNil(t, herr, tc.name)
			require.Equal(t, http.StatusBadRequest, herr.status, tc.name)
			require.Equal(t, model.ErrorKindInvalid, herr.kind, tc.name)
			require.Contains(t, herr.message, tc.problem, tc.name)
			continue
		}
		require.Nil(t, herr, tc.name)
		require.Equal(t, tc.want, got, tc.name)
	}
}

func TestCleanPathsNamesThePathAndKeepsTheInput(t *testing.T) {
	t.Parallel()
	in := []string{"/pollux/a", "/pollux/e\u0301"}
	out, herr := cleanPaths(in)
	require.Nil(t, herr)
	require.Equal(t, []string{"/pollux/a", "/pollux/\u00e9"}, out)
	require.Equal(t, "/pollux/e\u0301", in[1], "the caller's slice is left as sent")
	_, herr = cleanPaths([]string{"/pollux/a", "/pollux/b", "/pollux/\x00"})
	require.NotNil(t, herr)
	require.Contains(t, herr.message, "path 3 contains a NUL byte")
}

// FuzzCleanPath checks what rhd promises the database and the namespace about any path:
// what it accepts is valid UTF-8 without NUL, in NFC, cleaned again unchanged, and the same
// whichever normal form the client sent; what it refuses gets a 400 that names the path.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"/pollux/u/f", "/pollux/cafe\u0301", "/pollux/a\x00b", "/pollux/\xff", "", "/pollux/\u202efdp.exe", "\u1100\u1161\u11a8"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, herr := cleanPath("path", in)
		if herr != nil {
			require.Equal(t, http.StatusBadRequest, herr.status)
			require.True(t, strings.HasPrefix(herr.message, "path "), herr.message)
			require.True(t, !utf8.ValidString(in) || strings.IndexByte(in, 0) >= 0,
				"refused a storable path %q: %s", in, herr.message)
			return
		}
		require.True(t, utf8.ValidString(got), "%q", got)
		require.Equal(t, -1, strings.IndexByte(got, 0), "%q", got)
		require.True(t, norm.NFC.IsNormalString(got), "%q is not NFC", got)
		again, herr := cleanPath("path", got)
		require.Nil(t, herr)
		require.Equal(t, got, again, "cleaning is idempotent")
		fromNFD, herr := cleanPath("path", norm.NFD.String(in))
		require.Nil(t, herr)
		require.Equal(t, got, fromNFD, "NFD and NFC spellings name one path")
	})
}

// FuzzDecodeSubmission feeds arbitrary bodies to the submission decoder and checks that it
// never panics, refuses with a 400 or 413 that has a message, and that what it accepts is
// one JSON object of the known fields (it encodes and decodes back to the same value).
func FuzzDecodeSubmission(f *testing.F) {
	for _, s := range []string{
		`{"id":"3f1c2a9e-8d4b-4c7a-9e21-5b6f0d2c4e10","type":"PUT","paths":["/pollux/a"]}`,
		`{"id":"x","type":"GET","paths":["/pollux/a\u0000"],"auto_close":true}`,
		`{"paths":"/pollux/a"}`, `["PUT"]`, ``, `{} {}`, `{"priority":1}`, `{"user_tag":"\ud800"}`,
		`{"paths":[` + strings.Repeat(`"/pollux/x",`, 100) + `"/pollux/y"]}`,
	} {
		f.Add([]byte(s))
	}
	s := &server{cfg: Config{MaxBodyBytes: 4096}}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/v1/requests", strings.NewReader(string(body)))
		w := httptest.NewRecorder()
		in, herr := s.decodeSubmission(w, r)
		if herr != nil {
			require.Contains(t, []int{http.StatusBadRequest, http.StatusRequestEntityTooLarge}, herr.status)
			require.Equal(t, model.ErrorKindInvalid, herr.kind)
			require.NotEmpty(t, herr.message)
			return
		}
		require.LessOrEqual(t, int64(len(body)), s.cfg.MaxBodyBytes)
		b, err := json.Marshal(in)
		require.NoError(t, err)
		var back api.SubmitRequest
		require.NoError(t, json.Unmarshal(b, &back))
		require.Equal(t, in, back)
	})
}
