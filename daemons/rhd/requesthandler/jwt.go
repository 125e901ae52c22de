package requesthandler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"go.uber.org/zap"

	"github.com/pollux-storage/pollux/model"
)

// WLCG-profile JWT bearer tokens (WLCG Common JWT Profiles 1.0): signed by an issuer whose
// public keys rhd reads from a JWKS file or URL, with iss, aud, exp (and nbf, iat when
// present) checked, sub as the user and storage.* scopes limiting what the token may touch.
// Verification is go-jose's: parsing the compact form, checking the signature against a
// public key of the set for an allowed asymmetric algorithm, and the registered claims.
// Nothing here is hand-written crypto.

// anyAudience is the audience the profile defines for a token meant for every service.
const anyAudience = "https://wlcg.cern.ch/jwt/v1/any"

// clockSkew is how far rhd's clock may be from the issuer's before exp, nbf and iat are
// held against a token: the profile's tokens live minutes to hours, so a minute is noise.
const clockSkew = time.Minute

// jwksRefetch bounds how often a URL is asked again for keys because a token names a key
// id the set lacks (the issuer rotated its keys): an attacker sending made-up key ids must
// not make rhd hammer the issuer.
const jwksRefetch = 30 * time.Second

// jwksMaxAge is how long keys fetched from a URL are used before they are fetched again,
// so that a key the issuer withdrew stops verifying tokens.
const jwksMaxAge = 10 * time.Minute

// signatureAlgorithms are the asymmetric algorithms accepted. HMAC is absent on purpose:
// a public key must never be usable as a shared secret.
var signatureAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

// JWTConfig says which issuer's tokens rhd accepts.
type JWTConfig struct {
	// Issuer is the iss claim accepted, exactly; empty disables JWTs.
	Issuer string
	// Audience is the aud the tokens must name (or the profile's "any" audience).
	Audience string
	// Keys is the issuer's JWKS: a file, or an https:// URL (http:// on loopback only).
	Keys string
	// ScopeRoot is the Pollux path the scopes' paths are relative to.
	ScopeRoot string
}

func (c JWTConfig) check() error {
	if c.Issuer == "" {
		if c.Audience != "" || c.Keys != "" {
			return errors.New("--jwt-audience and --jwt-keys need --jwt-issuer: the iss claim rhd accepts")
		}
		return nil
	}
	switch {
	case c.Audience == "":
		return errors.New("--jwt-audience is required with --jwt-issuer: the aud claim naming this service")
	case c.Keys == "":
		return errors.New("--jwt-keys is required with --jwt-issuer: the issuer's JWKS, a file or an https:// URL")
	case !strings.HasPrefix(c.ScopeRoot, "/") || path.Clean(c.ScopeRoot) != c.ScopeRoot:
		return fmt.Errorf("--jwt-scope-root %q is not a clean absolute path like /pollux", c.ScopeRoot)
	}
	if strings.Contains(c.Keys, "://") {
		u, err := url.Parse(c.Keys)
		if err != nil {
			return fmt.Errorf("--jwt-keys %q is not a URL: %w", c.Keys, err)
		}
		switch {
		case u.Scheme == "https":
		case u.Scheme == "http" && isLoopback(u.Hostname()):
			// Plain HTTP cannot be tampered with on loopback (tests, a local issuer).
		default:
			return fmt.Errorf("--jwt-keys %s: keys are fetched over https:// only (http:// on loopback): anyone on the path could swap them", c.Keys)
		}
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// grant is what a caller's credential allows. A static token allows everything the
// namespace permissions allow; a JWT only what its scopes name.
type grant struct {
	user string
	// scoped is true for a JWT: then only scopes count.
	scoped bool
	scopes []scope
	issuer string
}

// Operations a scope may allow, named as the profile names them.
const (
	opRead   = "storage.read"
	opCreate = "storage.create"
	opModify = "storage.modify"
	// opStage brings files online without reading them: prepareToGet, besides read.
	opStage = "storage.stage"
)

type scope struct {
	op string
	// root is the absolute Pollux path the scope covers, itself and everything below.
	root string
}

func (s scope) covers(p string) bool {
	return s.root == "/" || p == s.root || strings.HasPrefix(p, s.root+"/")
}

// allows says whether the grant lets op touch p; for a create, modify serves as well (the
// profile's storage.modify includes creating files).
func (g grant) allows(op, p string) bool {
	if !g.scoped {
		return true
	}
	for _, s := range g.scopes {
		if (s.op == op || (op == opCreate && s.op == opModify)) && s.covers(p) {
			return true
		}
	}
	return false
}

// refuse is the 403 for a token whose scopes do not reach p.
func (g grant) refuse(op, p string) *httpError {
	have := make([]string, 0, len(g.scopes))
	for _, s := range g.scopes {
		have = append(have, s.op+":"+s.root)
	}
	held := "no storage scope"
	if len(have) > 0 {
		held = "scopes " + strings.Join(have, " ")
	}
	return userError(model.ErrorKindPermission, "permission denied: %s needs a token with %s covering it; this token (from %s) has %s",
		p, op, g.issuer, held)
}

// verifier checks JWTs of one issuer.
type verifier struct {
	cfg  JWTConfig
	keys *keySource
	now  func() time.Time
}

func newVerifier(ctx context.Context, cfg JWTConfig, log *zap.Logger) *verifier {
	v := &verifier{cfg: cfg, keys: &keySource{location: cfg.Keys, log: log,
		client: &http.Client{Timeout: 10 * time.Second}}, now: time.Now}
	// Fetched now so that a mistyped location shows in the log at start, not at the first
	// token; a failure is retried when a token comes.
	if _, err := v.keys.get(ctx, ""); err != nil {
		log.Error("the JWT issuer's keys cannot be read; tokens of the issuer are refused until they can",
			zap.String("issuer", cfg.Issuer), zap.String("keys", cfg.Keys), zap.Error(err))
	}
	log.Info("JWT bearer tokens accepted", zap.String("issuer", cfg.Issuer), zap.String("audience", cfg.Audience),
		zap.String("keys", cfg.Keys), zap.String("scope_root", cfg.ScopeRoot))
	return v
}

// looksLikeJWT tells a compact JWS (three base64url parts) from an opaque static token.
func looksLikeJWT(token string) bool {
	return strings.Count(token, ".") == 2 && strings.HasPrefix(token, "eyJ")
}

// wlcgClaims are the profile's claims beyond the registered ones.
type wlcgClaims struct {
	Scope string `json:"scope"`
	Ver   string `json:"wlcg.ver"`
}

// verify checks a token and returns what it grants, or a 401 saying what is wrong with it.
// Messages never quote the token.
func (v *verifier) verify(ctx context.Context, raw string) (grant, *httpError) {
	tok, err := jwt.ParseSigned(raw, signatureAlgorithms)
	if err != nil {
		return grant{}, unauthenticated(fmt.Sprintf("the bearer token is not a signed JWT of an accepted algorithm (%s): %v", algNames(), trimJose(err)))
	}
	kid := tok.Headers[0].KeyID
	keys, err := v.keys.get(ctx, kid)
	if err != nil {
		return grant{}, &httpError{status: http.StatusServiceUnavailable, kind: model.ErrorKindUnavailable,
			message: "the request handler cannot read the token issuer's keys now; retry later", cause: err}
	}
	var claims jwt.Claims
	var extra wlcgClaims
	verified := false
	for _, k := range keys {
		if kid != "" && k.KeyID != kid {
			continue
		}
		if err := tok.Claims(k.Key, &claims, &extra); err == nil {
			verified = true
			break
		}
	}
	if !verified {
		if kid != "" && !hasKey(keys, kid) {
			return grant{}, unauthenticated(fmt.Sprintf("the token is signed with key %q, which issuer %s does not publish (in %s)", kid, v.cfg.Issuer, v.cfg.Keys))
		}
		return grant{}, unauthenticated(fmt.Sprintf("the token's signature does not verify with the keys of issuer %s: it was not issued by it, or was altered", v.cfg.Issuer))
	}
	// Signed by the issuer's key: the claims can be read and explained.
	if claims.Issuer != v.cfg.Issuer {
		return grant{}, unauthenticated(fmt.Sprintf("the token was issued by %q; this service accepts tokens of %q", claims.Issuer, v.cfg.Issuer))
	}
	if !claims.Audience.Contains(v.cfg.Audience) && !claims.Audience.Contains(anyAudience) {
		return grant{}, unauthenticated(fmt.Sprintf("the token is for audience %v; this service is %q: ask the issuer for a token with that aud", []string(claims.Audience), v.cfg.Audience))
	}
	if claims.Expiry == nil {
		return grant{}, unauthenticated("the token has no exp: WLCG tokens must expire")
	}
	now := v.now()
	err = claims.ValidateWithLeeway(jwt.Expected{Time: now}, clockSkew)
	switch {
	case errors.Is(err, jwt.ErrExpired):
		return grant{}, unauthenticated(fmt.Sprintf("the token expired at %s: get a new one from %s", claims.Expiry.Time().UTC().Format(time.RFC3339), v.cfg.Issuer))
	case errors.Is(err, jwt.ErrNotValidYet):
		return grant{}, unauthenticated(fmt.Sprintf("the token is not valid before %s (nbf); it is %s here", claims.NotBefore.Time().UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)))
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return grant{}, unauthenticated(fmt.Sprintf("the token says it was issued at %s, in the future; it is %s here: check the clocks", claims.IssuedAt.Time().UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)))
	case err != nil:
		return grant{}, unauthenticated(fmt.Sprintf("the token's claims are not valid: %v", trimJose(err)))
	}
	if extra.Ver != "1.0" {
		return grant{}, unauthenticated(fmt.Sprintf("the token's wlcg.ver is %q: this service accepts WLCG profile 1.0 tokens", extra.Ver))
	}
	if claims.Subject == "" || strings.ContainsFunc(claims.Subject, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return grant{}, unauthenticated("the token's sub is empty or holds blanks or control characters: it cannot name a user")
	}
	scopes, herr := v.parseScopes(extra.Scope)
	if herr != nil {
		return grant{}, herr
	}
	return grant{user: claims.Subject, scoped: true, scopes: scopes, issuer: v.cfg.Issuer}, nil
}

// parseScopes reads the storage.* scopes; other scopes (openid, offline_access,
// storage.stage, ...) give nothing here. The profile says a storage scope without a path
// must be refused, so it is, and so is a path that is not clean: "storage.read:/a/../b"
// must not be taken to mean anything.
func (v *verifier) parseScopes(s string) ([]scope, *httpError) {
	var out []scope
	for _, f := range strings.Fields(s) {
		op, p, hasPath := strings.Cut(f, ":")
		switch op {
		case opRead, opCreate, opModify, opStage:
		default:
			continue
		}
		if !hasPath || !strings.HasPrefix(p, "/") || path.Clean(p) != p {
			return nil, unauthenticated(fmt.Sprintf("the token's scope %q has no clean absolute path (like %s:/ or %s:/u/alice): the WLCG profile refuses such a token", f, op, op))
		}
		out = append(out, scope{op: op, root: path.Join(v.cfg.ScopeRoot, p)})
	}
	return out, nil
}

func algNames() string {
	names := make([]string, len(signatureAlgorithms))
	for i, a := range signatureAlgorithms {
		names[i] = string(a)
	}
	return strings.Join(names, ", ")
}

// trimJose drops go-jose's package prefix from its messages, which the client reads.
func trimJose(err error) string {
	m := err.Error()
	for _, p := range []string{"go-jose/go-jose/jwt: ", "go-jose/go-jose: "} {
		m = strings.ReplaceAll(m, p, "")
	}
	return m
}

func hasKey(keys []jose.JSONWebKey, kid string) bool {
	for _, k := range keys {
		if k.KeyID == kid {
			return true
		}
	}
	return false
}

// keySource is an issuer's public keys, read from a file (again when it changes) or a URL
// (again after jwksMaxAge, or sooner for a key id it lacks, at most every jwksRefetch).
type keySource struct {
	location string
	log      *zap.Logger
	client   *http.Client

	mu      sync.Mutex
	keys    []jose.JSONWebKey
	stamp   fileStamp
	fetched time.Time
	tried   time.Time
}

func (s *keySource) isURL() bool { return strings.Contains(s.location, "://") }

// get returns the keys, re-read when they may be stale or lack kid.
func (s *keySource) get(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.isURL() {
		st, err := os.Stat(s.location)
		if err != nil {
			s.keys, s.stamp = nil, fileStamp{}
			return nil, fmt.Errorf("JWKS file: %w", err)
		}
		if stampOf(st) != s.stamp {
			keys, err := s.read(ctx)
			// A broken file verifies nothing: keeping the old keys could keep a withdrawn
			// key alive.
			s.keys, s.stamp = keys, stampOf(st)
			if err != nil {
				s.log.Error("JWKS file unreadable: no JWT verifies until it is fixed", zap.String("keys", s.location), zap.Error(err))
				return nil, err
			}
			s.log.Info("JWKS loaded", zap.String("keys", s.location), zap.Int("keys_count", len(keys)))
		}
		return s.keys, nil
	}
	now := time.Now()
	stale := s.keys == nil || now.Sub(s.fetched) > jwksMaxAge || (kid != "" && !hasKey(s.keys, kid))
	if stale && now.Sub(s.tried) >= jwksRefetch {
		s.tried = now
		keys, err := s.read(ctx)
		if err != nil {
			if s.keys == nil || now.Sub(s.fetched) > 2*jwksMaxAge {
				s.keys = nil
				return nil, err
			}
			s.log.Warn("JWKS not refreshed; using the keys fetched before", zap.String("keys", s.location), zap.Time("fetched", s.fetched), zap.Error(err))
		} else {
			s.keys, s.fetched = keys, now
			s.log.Info("JWKS fetched", zap.String("keys", s.location), zap.Int("keys_count", len(keys)))
		}
	}
	if s.keys == nil {
		return nil, fmt.Errorf("no keys fetched from %s yet", s.location)
	}
	return s.keys, nil
}

// read loads the set and keeps its public signing keys.
func (s *keySource) read(ctx context.Context) ([]jose.JSONWebKey, error) {
	var body []byte
	if s.isURL() {
		// Detached from the caller: a client that goes away must not spoil the fetch for
		// every other caller until the next try (the client's timeout bounds it).
		req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodGet, s.location, nil)
		if err != nil {
			return nil, fmt.Errorf("fetch JWKS: %w", err)
		}
		resp, err := s.client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("fetch JWKS: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("fetch JWKS %s: %s", s.location, resp.Status)
		}
		body, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return nil, fmt.Errorf("fetch JWKS %s: %w", s.location, err)
		}
	} else {
		var err error
		if body, err = os.ReadFile(s.location); err != nil {
			return nil, fmt.Errorf("JWKS file: %w", err)
		}
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("JWKS %s is not a JSON Web Key Set: %w", s.location, err)
	}
	var keys []jose.JSONWebKey
	for _, k := range set.Keys {
		// Only public keys: a symmetric key in the set would let anyone who reads the set
		// sign, and a private key there is the issuer's mistake to fix, not to use.
		if !k.Valid() || !k.IsPublic() || (k.Use != "" && k.Use != "sig") {
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("JWKS %s holds no public signing key", s.location)
	}
	return keys, nil
}
