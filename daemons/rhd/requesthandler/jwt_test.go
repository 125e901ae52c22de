package requesthandler_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/daemons/rhd/rhdtest"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/uuid"
	"github.com/pollux-storage/pollux/model"
	"github.com/pollux-storage/pollux/schema/schematest"
)

func (c *cluster) rhdWithJWT(keys string) *rhdtest.Instance {
	c.t.Helper()
	return c.rhd(rhdtest.JWTFlags(keys)...)
}

// A token of the configured issuer, verified with its RSA or EC key, is its sub; every
// way a token can be wrong is refused with 401 and a reason, and stores nothing.
func TestJWTAuthentication(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	is := rhdtest.NewIssuer(t)
	a := c.rhdWithJWT(is.WriteJWKS())
	getReq := func() api.SubmitRequest {
		return api.SubmitRequest{ID: uuid.New(), Type: "GET", Paths: []string{"/pollux/u/alice/f"}}
	}
	var sent []string
	for _, kid := range []string{"rsa1", "ec1"} {
		tok := is.Sign(kid, rhdtest.Good("alice", "storage.read:/"))
		sent = append(sent, tok)
		req := getReq()
		r := submit(t, a, tok, req)
		require.Equal(t, http.StatusCreated, r.status, "%s: %s", kid, r.body)
		// The static tokens' user alice and the token's sub alice are one user.
		require.Equal(t, http.StatusOK, get(t, a, aliceToken, req.ID, nil).status, kid)
	}

	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	expired := rhdtest.Good("alice", "storage.read:/")
	expired.Expiry = jwt.NewNumericDate(time.Now().Add(-10 * time.Minute))
	expired.NotBefore = jwt.NewNumericDate(time.Now().Add(-30 * time.Minute))
	expired.IssuedAt = expired.NotBefore
	early := rhdtest.Good("alice", "storage.read:/")
	early.NotBefore = jwt.NewNumericDate(time.Now().Add(10 * time.Minute))
	wrongIss := rhdtest.Good("alice", "storage.read:/")
	wrongIss.Issuer = "https://evil.test"
	wrongAud := rhdtest.Good("alice", "storage.read:/")
	wrongAud.Audience = jwt.Audience{"https://other-storage.test"}
	noExp := rhdtest.Good("alice", "storage.read:/")
	noExp.Expiry = nil
	noVer := rhdtest.Good("alice", "storage.read:/")
	noVer.Ver = ""
	noPath := rhdtest.Good("alice", "storage.read")
	dotPath := rhdtest.Good("alice", "storage.read:/u/../x")
	noSub := rhdtest.Good("", "storage.read:/")
	for _, tc := range []struct{ name, token, reason string }{
		{"expired", is.Sign("rsa1", expired), "the token expired at "},
		{"not yet valid", is.Sign("ec1", early), "the token is not valid before "},
		{"wrong issuer", is.Sign("rsa1", wrongIss), `issued by "https://evil.test"; this service accepts tokens of "` + rhdtest.TestIssuer + `"`},
		{"wrong audience", is.Sign("rsa1", wrongAud), `the token is for audience [https://other-storage.test]; this service is "` + rhdtest.TestAudience + `"`},
		{"bad signature", rhdtest.SignWith(t, other, jose.ES256, "ec1", rhdtest.Good("alice", "storage.read:/")), "signature does not verify with the keys of issuer " + rhdtest.TestIssuer},
		{"unknown key", rhdtest.SignWith(t, other, jose.ES256, "ec9", rhdtest.Good("alice", "storage.read:/")), `signed with key "ec9", which issuer ` + rhdtest.TestIssuer + " does not publish"},
		{"no exp", is.Sign("rsa1", noExp), "the token has no exp"},
		{"no wlcg.ver", is.Sign("rsa1", noVer), `wlcg.ver is ""`},
		{"scope without path", is.Sign("rsa1", noPath), `scope "storage.read" has no clean absolute path`},
		{"scope with dots", is.Sign("rsa1", dotPath), `scope "storage.read:/u/../x" has no clean absolute path`},
		{"no sub", is.Sign("rsa1", noSub), "sub is empty"},
		{"not a JWT", "eyJhbGciOiJub25lIn0.e30.", "not a signed JWT"},
	} {
		sent = append(sent, tc.token)
		req := getReq()
		r := submit(t, a, tc.token, req)
		require.Equal(t, http.StatusUnauthorized, r.status, "%s: %s", tc.name, r.body)
		require.Contains(t, r.errorBody(t).Message, tc.reason, tc.name)
		require.Equal(t, "permission", r.errorBody(t).Kind, tc.name)
	}
	// A JWT with its alg switched to HMAC, keyed by the published public key, is the
	// classic forgery: the algorithm is not accepted at all.
	hs, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: is.JWKS()}, nil)
	require.NoError(t, err)
	forged, err := jwt.Signed(hs).Claims(rhdtest.Good("alice", "storage.read:/")).Serialize()
	require.NoError(t, err)
	r := submit(t, a, forged, getReq())
	require.Equal(t, http.StatusUnauthorized, r.status, string(r.body))
	require.Contains(t, r.errorBody(t).Message, "not a signed JWT of an accepted algorithm")

	require.Equal(t, 2, c.count("select count(*) from request"), "only the two good tokens stored a request")
	for _, tok := range append(sent, forged) {
		require.NotContains(t, a.Log.String(), tok, "a token is never logged")
	}
}

// A token's scopes limit what it may touch: read for get, prepareToGet and qry, create for
// a new file, modify for an overwrite, putdone and rm, each path below the scope's root
// (--jwt-scope-root joined with the scope's path); anything else is 403 and stores nothing.
func TestJWTScopes(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	is := rhdtest.NewIssuer(t)
	a := c.rhdWithJWT(is.WriteJWKS())

	// An existing file of alice's, being written (its put placed).
	old := api.SubmitRequest{ID: uuid.New(), Type: "PUT", Paths: []string{"/pollux/u/alice/old"}}
	require.Equal(t, http.StatusCreated, submit(t, a, aliceToken, old).status)
	c.schedulePut(old.ID)
	rows, err := model.FileQuery(c.ctx, c.db.Pool(), "/pollux/u/alice/old", "alice")
	require.NoError(t, err)
	require.Len(t, rows, 1, "the placed put made the file")

	reader := is.Sign("rsa1", rhdtest.Good("alice", "openid storage.read:/u/alice"))
	creator := is.Sign("ec1", rhdtest.Good("alice", "storage.read:/u/alice storage.create:/u/alice"))
	modifier := is.Sign("rsa1", rhdtest.Good("alice", "storage.modify:/u/alice"))
	nothing := is.Sign("rsa1", rhdtest.Good("alice", "openid offline_access"))
	stager := is.Sign("ec1", rhdtest.Good("alice", "storage.stage:/u/alice"))
	for _, tc := range []struct {
		name, token, typ, path string
		ok                     bool
		reason                 string
	}{
		{"read below the scope", reader, "GET", "/pollux/u/alice/f", true, ""},
		{"prepareToGet below the scope", reader, "PREPARE_TO_GET", "/pollux/u/alice/f", true, ""},
		{"read of the scope's root itself", reader, "GET", "/pollux/u/alice", true, ""},
		{"read elsewhere", reader, "GET", "/pollux/u/bob/f", false, "/pollux/u/bob/f needs a token with storage.read covering it; this token (from " + rhdtest.TestIssuer + ") has scopes storage.read:/pollux/u/alice"},
		{"a sibling sharing the prefix", reader, "GET", "/pollux/u/alicex/f", false, "needs a token with storage.read"},
		{"read token puts", reader, "PUT", "/pollux/u/alice/new", false, "needs a token with storage.create"},
		{"read token removes", reader, "RM", "/pollux/u/alice/old", false, "needs a token with storage.modify"},
		{"create a new file", creator, "PUT", "/pollux/u/alice/new", true, ""},
		{"create over an existing file", creator, "PUT", "/pollux/u/alice/old", false, "needs a token with storage.modify covering it; this token (from " + rhdtest.TestIssuer + ") has scopes storage.read:/pollux/u/alice storage.create:/pollux/u/alice (/pollux/u/alice/old exists: writing it again overwrites it)"},
		{"create token closes", creator, "PUTDONE", "/pollux/u/alice/old", false, "needs a token with storage.modify"},
		{"create token removes", creator, "RM", "/pollux/u/alice/old", false, "needs a token with storage.modify"},
		{"modify overwrites", modifier, "PUT", "/pollux/u/alice/old", true, ""},
		{"modify creates", modifier, "PUT", "/pollux/u/alice/other", true, ""},
		{"modify removes", modifier, "RM", "/pollux/u/alice/gone", true, ""},
		{"modify does not read", modifier, "GET", "/pollux/u/alice/old", false, "needs a token with storage.read"},
		{"stage prepares", stager, "PREPARE_TO_GET", "/pollux/u/alice/f", true, ""},
		{"stage does not read", stager, "GET", "/pollux/u/alice/f", false, "needs a token with storage.read"},
		{"no storage scope", nothing, "GET", "/pollux/u/alice/f", false, "has no storage scope"},
	} {
		req := api.SubmitRequest{ID: uuid.New(), Type: tc.typ, Paths: []string{tc.path}}
		r := submit(t, a, tc.token, req)
		if tc.ok {
			require.Equal(t, http.StatusCreated, r.status, "%s: %s", tc.name, r.body)
			continue
		}
		require.Equal(t, http.StatusForbidden, r.status, "%s: %s", tc.name, r.body)
		require.Contains(t, r.errorBody(t).Message, "permission denied: ", tc.name)
		require.Contains(t, r.errorBody(t).Message, tc.reason, tc.name)
		require.Zero(t, c.count("select count(*) from request where id = '"+req.ID+"'"), "%s: a refused request is not stored", tc.name)
	}

	// A retry of the create-only put finds the file its first submission made: it is the
	// same request, not an overwrite.
	first := api.SubmitRequest{ID: uuid.New(), Type: "PUT", Paths: []string{"/pollux/u/alice/retried"}}
	require.Equal(t, http.StatusCreated, submit(t, a, creator, first).status)
	c.tx("stage", func(q pg.Querier) error { _, err := model.SubrequestClaim(c.ctx, q, "put", 10); return err })
	rows, err = model.FileQuery(c.ctx, c.db.Pool(), "/pollux/u/alice/retried", "alice")
	require.NoError(t, err)
	require.Len(t, rows, 1)
	r := submit(t, a, creator, first)
	require.Equal(t, http.StatusOK, r.status, string(r.body))

	// stager_qry is a read.
	files := func(tok, p string) response {
		return do(t, http.MethodGet, a.URL+api.PathFiles+"?"+url.Values{api.ParamPath: {p}}.Encode(), tok, nil)
	}
	require.Equal(t, http.StatusOK, files(reader, "/pollux/u/alice/old").status)
	q := files(modifier, "/pollux/u/alice/old")
	require.Equal(t, http.StatusForbidden, q.status, string(q.body))
	require.Contains(t, q.errorBody(t).Message, "needs a token with storage.read")
	require.Equal(t, http.StatusForbidden, files(reader, "/pollux/u/bob/f").status)
}

// The issuer's keys may come from a URL; keys that cannot be fetched make tokens wait
// (503), not pass.
func TestJWTKeysFromURL(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	is := rhdtest.NewIssuer(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(is.JWKS())
	}))
	t.Cleanup(srv.Close)
	a := c.rhdWithJWT(srv.URL + "/jwks")
	r := submit(t, a, is.Sign("ec1", rhdtest.Good("carol", "storage.read:/")), api.SubmitRequest{ID: uuid.New(), Type: "GET", Paths: []string{"/pollux/f"}})
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	require.NotEmpty(t, a.Log.Lines("JWKS fetched"))

	gone := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(gone.Close)
	b := c.rhdWithJWT(gone.URL + "/jwks")
	require.NotEmpty(t, b.Log.Lines("the JWT issuer's keys cannot be read; tokens of the issuer are refused until they can"))
	r = submit(t, b, is.Sign("ec1", rhdtest.Good("carol", "storage.read:/")), api.SubmitRequest{ID: uuid.New(), Type: "GET", Paths: []string{"/pollux/f"}})
	require.Equal(t, http.StatusServiceUnavailable, r.status, string(r.body))
	require.Contains(t, r.errorBody(t).Message, "cannot read the token issuer's keys")
}

// The JWKS file is read again when it changes: a key the issuer withdrew stops verifying
// at once, a new key verifies without a restart.
func TestJWTKeyRotation(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	is := rhdtest.NewIssuer(t)
	ecOnly := is.Only("ec1")
	keys := is.Only("rsa1").WriteJWKS()
	a := c.rhdWithJWT(keys)
	req := func() api.SubmitRequest {
		return api.SubmitRequest{ID: uuid.New(), Type: "GET", Paths: []string{"/pollux/f"}}
	}
	rsaTok, ecTok := is.Sign("rsa1", rhdtest.Good("alice", "storage.read:/")), is.Sign("ec1", rhdtest.Good("alice", "storage.read:/"))
	require.Equal(t, http.StatusCreated, submit(t, a, rsaTok, req()).status)
	require.Equal(t, http.StatusUnauthorized, submit(t, a, ecTok, req()).status, "ec1 is not published yet")

	require.NoError(t, os.WriteFile(keys, ecOnly.JWKS(), 0o644))
	r := submit(t, a, rsaTok, req())
	require.Equal(t, http.StatusUnauthorized, r.status, "rsa1 was withdrawn: %s", r.body)
	require.Contains(t, r.errorBody(t).Message, `signed with key "rsa1", which issuer `+rhdtest.TestIssuer+" does not publish")
	require.Equal(t, http.StatusCreated, submit(t, a, ecTok, req()).status, "ec1 is published now")

	// A broken file verifies nothing rather than keep a withdrawn key alive.
	require.NoError(t, os.WriteFile(keys, []byte(`{"keys": [`), 0o644))
	r = submit(t, a, ecTok, req())
	require.Equal(t, http.StatusServiceUnavailable, r.status, string(r.body))
	require.NotEmpty(t, a.Log.Lines("JWKS file unreadable: no JWT verifies until it is fixed"))
}

// With an issuer, the tokens file is optional: JWTs alone are accepted.
func TestJWTWithoutTokensFile(t *testing.T) {
	t.Parallel()
	is := rhdtest.NewIssuer(t)
	a := rhdtest.Start(t, schematest.DSN(t), "", rhdtest.JWTFlags(is.WriteJWKS())...)
	req := api.SubmitRequest{ID: uuid.New(), Type: "GET", Paths: []string{"/pollux/f"}}
	require.Equal(t, http.StatusCreated, submit(t, a, is.Sign("rsa1", rhdtest.Good("dave", "storage.read:/")), req).status)
	r := get(t, a, aliceToken, req.ID, nil)
	require.Equal(t, http.StatusUnauthorized, r.status)
	require.Contains(t, r.errorBody(t).Message, "unknown token")
}
