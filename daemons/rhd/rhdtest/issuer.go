package rhdtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/pollux-storage/pollux/framework/uuid"
)

// The issuer and audience of the tokens an Issuer signs, which JWTFlags configure rhd
// to accept.
const (
	TestIssuer   = "https://issuer.test/wlcg"
	TestAudience = "https://pollux.test"
)

// Issuer is a WLCG token issuer a test plays: an RSA key ("rsa1", RS256) and an EC key
// ("ec1", ES256) generated for the test, whose public halves it writes as a JWKS.
type Issuer struct {
	tb   testing.TB
	keys map[string]crypto.Signer
	algs map[string]jose.SignatureAlgorithm
}

// NewIssuer generates the issuer's keys.
func NewIssuer(tb testing.TB) *Issuer {
	tb.Helper()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatalf("generate RSA key: %v", err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("generate EC key: %v", err)
	}
	return &Issuer{tb: tb,
		keys: map[string]crypto.Signer{"rsa1": rsaKey, "ec1": ecKey},
		algs: map[string]jose.SignatureAlgorithm{"rsa1": jose.RS256, "ec1": jose.ES256}}
}

// Only is an issuer publishing the keys kids alone (signing with them as is does): a key
// set before or after a rotation.
func (is *Issuer) Only(kids ...string) *Issuer {
	o := &Issuer{tb: is.tb, keys: map[string]crypto.Signer{}, algs: is.algs}
	for _, k := range kids {
		o.keys[k] = is.keys[k]
	}
	return o
}

// JWKS is the public half of the issuer's keys.
func (is *Issuer) JWKS() []byte {
	is.tb.Helper()
	var set jose.JSONWebKeySet
	for kid, k := range is.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Public(), KeyID: kid, Algorithm: string(is.algs[kid]), Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		is.tb.Fatalf("marshal JWKS: %v", err)
	}
	return b
}

// WriteJWKS writes JWKS into a temporary file and returns its path.
func (is *Issuer) WriteJWKS() string {
	is.tb.Helper()
	p := filepath.Join(is.tb.TempDir(), "jwks.json")
	if err := os.WriteFile(p, is.JWKS(), 0o644); err != nil {
		is.tb.Fatalf("write JWKS: %v", err)
	}
	return p
}

// JWTFlags are rhd's flags accepting the issuer's tokens with keys read from keys (a
// file or URL), scopes relative to /pollux.
func JWTFlags(keys string) []string {
	return []string{"--jwt-issuer", TestIssuer, "--jwt-audience", TestAudience, "--jwt-keys", keys, "--jwt-scope-root", "/pollux"}
}

// Claims are a token's claims; a zero field is left out.
type Claims struct {
	jwt.Claims
	Scope string `json:"scope,omitempty"`
	Ver   string `json:"wlcg.ver,omitempty"`
}

// Good is a valid token's claims for sub with scope: this issuer, this audience, valid
// from a minute ago for 20 minutes, WLCG profile 1.0.
func Good(sub, scope string) Claims {
	now := time.Now()
	return Claims{Claims: jwt.Claims{Issuer: TestIssuer, Subject: sub, Audience: jwt.Audience{TestAudience},
		Expiry: jwt.NewNumericDate(now.Add(20 * time.Minute)), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
		IssuedAt: jwt.NewNumericDate(now.Add(-time.Minute)), ID: uuid.New()}, Scope: scope, Ver: "1.0"}
}

// Sign signs c with the key kid, naming kid in the header.
func (is *Issuer) Sign(kid string, c Claims) string {
	is.tb.Helper()
	return SignWith(is.tb, is.keys[kid], is.algs[kid], kid, c)
}

// SignWith signs c with any key, naming kid in the header: a forgery when the key is not
// the issuer's.
func SignWith(tb testing.TB, key any, alg jose.SignatureAlgorithm, kid string, c Claims) string {
	tb.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		tb.Fatalf("signer: %v", err)
	}
	tok, err := jwt.Signed(s).Claims(c).Serialize()
	if err != nil {
		tb.Fatalf("sign token: %v", err)
	}
	return tok
}
