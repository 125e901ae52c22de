package requesthandler

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The JWT flags are checked at start: a half-configured issuer, or keys fetched where
// anyone on the path could swap them, refuse the start with the flag to fix.
func TestJWTConfigCheck(t *testing.T) {
	t.Parallel()
	full := JWTConfig{Issuer: "https://iam.example.org/", Audience: "https://pollux.example.org", Keys: "/etc/pollux/jwks.json", ScopeRoot: "/pollux"}
	with := func(f func(*JWTConfig)) JWTConfig { c := full; f(&c); return c }
	for _, tc := range []struct {
		name string
		cfg  JWTConfig
		want string // "" for accepted
	}{
		{"none", JWTConfig{ScopeRoot: "/"}, ""},
		{"full", full, ""},
		{"https keys", with(func(c *JWTConfig) { c.Keys = "https://iam.example.org/jwk" }), ""},
		{"loopback http keys", with(func(c *JWTConfig) { c.Keys = "http://127.0.0.1:8080/jwk" }), ""},
		{"remote http keys", with(func(c *JWTConfig) { c.Keys = "http://iam.example.org/jwk" }), "keys are fetched over https:// only"},
		{"no audience", with(func(c *JWTConfig) { c.Audience = "" }), "--jwt-audience is required"},
		{"no keys", with(func(c *JWTConfig) { c.Keys = "" }), "--jwt-keys is required"},
		{"keys without issuer", JWTConfig{Keys: "/etc/jwks.json", ScopeRoot: "/"}, "need --jwt-issuer"},
		{"relative scope root", with(func(c *JWTConfig) { c.ScopeRoot = "pollux" }), "not a clean absolute path"},
		{"unclean scope root", with(func(c *JWTConfig) { c.ScopeRoot = "/pollux/" }), "not a clean absolute path"},
	} {
		err := tc.cfg.check()
		if tc.want == "" {
			require.NoError(t, err, tc.name)
			continue
		}
		require.ErrorContains(t, err, tc.want, tc.name)
	}
}

func TestScopeCovers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		root, path string
		want       bool
	}{
		{"/", "/pollux/f", true},
		{"/pollux/u/alice", "/pollux/u/alice", true},
		{"/pollux/u/alice", "/pollux/u/alice/f", true},
		{"/pollux/u/alice", "/pollux/u/alicex", false},
		{"/pollux/u/alice", "/pollux/u", false},
		{"/pollux/u/alice", "/pollux/u/bob/f", false},
	} {
		require.Equal(t, tc.want, scope{op: opRead, root: tc.root}.covers(tc.path), "%s covers %s", tc.root, tc.path)
	}
}
