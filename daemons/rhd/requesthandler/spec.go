// Package requesthandler is rhd, Pollux's request handler: the clients' only door. It
// authenticates them by bearer token, validates what they send, stores each request and
// its subrequests in one transaction (request_submit), answers long polls on a request
// from the database with one LISTEN connection fanned out in memory, and answers
// stager_qry. It keeps nothing another rhd would need: any instance behind a DNS alias or
// a comma list can answer any call.
package requesthandler

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/pollux-storage/pollux/daemons/internal/instance"
	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/framework/daemon"
	"github.com/pollux-storage/pollux/framework/service"
)

// Config is rhd's own command line.
type Config struct {
	// Listen is the address of the clients' HTTP listener.
	Listen string
	// TokensFile holds "TOKEN USER" lines.
	TokensFile string
	// JWT says which issuer's WLCG-profile tokens are accepted besides the static ones.
	JWT JWTConfig
	// MaxWait caps the wait a client may ask of a long poll.
	MaxWait time.Duration
	// MaxBodyBytes caps a submission's body.
	MaxBodyBytes int64
	// MaxPollsPerUser bounds the long polls one user may have waiting on this instance
	// (0: no bound).
	MaxPollsPerUser int
	// TLSCertFile and TLSKeyFile, when given, make the listener serve HTTPS with this
	// certificate (PEM, with its chain) and key.
	TLSCertFile, TLSKeyFile string
	// MaxDBCalls bounds the calls doing database work at once; AdmissionWait is how long
	// one more waits for a slot before it is refused with 503 and RetryAfter.
	MaxDBCalls    int
	AdmissionWait time.Duration
	RetryAfter    time.Duration
}

const description = `rhd serves Pollux's HTTP/JSON API under /v1 to the client commands (stager_put,
stager_get, stager_qry, ..., pollux cp):

  POST /v1/requests                          store a request (client-chosen UUID: retries are idempotent)
  GET  /v1/requests/{id}?wait=30s&since=T    the request and its files; waits (long poll) until it
                                             changes after T, for at most --max-wait
  GET  /v1/files?path=/pollux/...            what stager_qry shows of a file

Clients authenticate with "Authorization: Bearer TOKEN"; --tokens-file maps static tokens to
users and is read again whenever it changes. With --jwt-issuer, rhd also accepts WLCG-profile
JWTs of that issuer (signature checked against --jwt-keys, iss, aud, exp, nbf), whose sub is
the user and whose storage.read/create/modify scopes limit what they may touch. Run any number of rhd behind a DNS alias or list them
in the clients' STAGE_HOST: they share nothing but the database. The admin listener serves
/readyz for load balancers.`

// Spec declares rhd. It returns a new declaration each time: one per daemon run.
func Spec(version string) daemon.Spec {
	cfg := Config{}
	return daemon.Spec{
		Name:        "rhd",
		Summary:     "the request handler: the clients' HTTP/JSON front door to Pollux",
		Description: description,
		Version:     version,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&cfg.Listen, "listen", fmt.Sprintf("127.0.0.1:%d", api.DefaultPort), "Address of the clients' HTTP listener (host:port; :9000 for every interface).")
			fs.StringVar(&cfg.TokensFile, "tokens-file", "", `File of "TOKEN USER" lines ('#' starts a comment) saying who a static bearer token is; re-read when it changes. Required unless --jwt-issuer is given.`)
			fs.StringVar(&cfg.JWT.Issuer, "jwt-issuer", "", "Issuer (iss claim, exactly) whose WLCG-profile JWT bearer tokens are accepted; empty accepts none.")
			fs.StringVar(&cfg.JWT.Audience, "jwt-audience", "", "Audience (aud claim) a JWT must name to be accepted here, e.g. https://pollux.example.org; the profile's https://wlcg.cern.ch/jwt/v1/any is accepted too.")
			fs.StringVar(&cfg.JWT.Keys, "jwt-keys", "", "The issuer's public keys (JWKS): a file, re-read when it changes, or an https:// URL, re-fetched every 10 minutes and when a token names a key it lacks.")
			fs.StringVar(&cfg.JWT.ScopeRoot, "jwt-scope-root", "/", "Pollux path the paths of a token's storage.* scopes are relative to (storage.read:/u/alice with /pollux means /pollux/u/alice).")
			fs.DurationVar(&cfg.MaxWait, "max-wait", 60*time.Second, "Longest a long poll (GET /v1/requests/{id}?wait=...) may wait for a change.")
			fs.Int64Var(&cfg.MaxBodyBytes, "max-body-bytes", 1<<20, "Largest request body accepted; larger ones get 413.")
			fs.IntVar(&cfg.MaxPollsPerUser, "max-long-polls-per-user", 100, "Most long polls one user may have waiting on this rhd at once; one more is refused with 429 (0: no limit). Each holds a connection for up to --max-wait.")
			fs.IntVar(&cfg.MaxDBCalls, "max-db-calls", 64, "Most calls doing database work at once on this rhd (submissions, reads); one more waits --admission-wait for a slot, then gets 503 with Retry-After, so that a burst is refused at once rather than left to time out.")
			fs.DurationVar(&cfg.AdmissionWait, "admission-wait", time.Second, "How long a call waits for one of the --max-db-calls slots before it is refused with 503.")
			fs.DurationVar(&cfg.RetryAfter, "retry-after", time.Second, "The Retry-After a call refused for lack of a slot is sent: the clients wait about this long (with jitter) before they try again.")
			fs.StringVar(&cfg.TLSCertFile, "tls-cert-file", "", "PEM certificate (with its chain) of the clients' listener: with --tls-key-file it serves HTTPS. Without both it serves plain HTTP, where tokens travel in clear: keep that to loopback.")
			fs.StringVar(&cfg.TLSKeyFile, "tls-key-file", "", "PEM private key of --tls-cert-file.")
		},
		Registry: instance.Registry{},
		// Requests are served outside pools: leave room for concurrent submits and reads.
		MinDBConns: 16,
		Ready:      instance.Ready,
		// Operators often run the clients from the same shell; their token is not a typo
		// of one of rhd's flags.
		IgnoreEnv: []string{"POLLUX_TOKEN"},
		Setup: func(ctx context.Context, env *daemon.Env) ([]service.Service, error) {
			if err := cfg.check(); err != nil {
				return nil, err
			}
			s, err := newServer(cfg, env)
			if err != nil {
				return nil, err
			}
			return []service.Service{s}, nil
		},
	}
}

func (c Config) check() error {
	switch {
	case c.TokensFile == "" && c.JWT.Issuer == "":
		return errors.New("--tokens-file (or POLLUX_TOKENS_FILE) is required, unless --jwt-issuer is given: a file of \"TOKEN USER\" lines")
	case c.MaxWait <= 0:
		return errors.New("--max-wait must be positive")
	case c.MaxBodyBytes <= 0:
		return errors.New("--max-body-bytes must be positive")
	case c.MaxPollsPerUser < 0:
		return errors.New("--max-long-polls-per-user must be 0 (no limit) or more")
	case c.MaxDBCalls < 1:
		return fmt.Errorf("--max-db-calls must be at least 1, not %d", c.MaxDBCalls)
	case c.AdmissionWait < 0:
		return errors.New("--admission-wait must not be negative")
	case c.RetryAfter < time.Second:
		return fmt.Errorf("--retry-after must be at least 1s (Retry-After is in whole seconds), not %s", c.RetryAfter)
	}
	return c.JWT.check()
}
