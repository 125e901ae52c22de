package client

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/framework/certs"
	"github.com/pollux-storage/pollux/model/wire"
)

// The environment the clients read, as CASTOR's did.
const (
	// EnvHost names the request handlers: host:port, a comma list of them, or a host name
	// (a DNS alias may resolve to many addresses). An entry may also be a URL
	// (https://rh.example.org:9443).
	EnvHost = "STAGE_HOST"
	// EnvPort is the port of a STAGE_HOST entry that names none (default 9000).
	EnvPort = "STAGE_PORT"
	// EnvServiceClass is the service class when -S is not given (default "default").
	EnvServiceClass = "STAGE_SVCCLASS"
	// EnvToken is the bearer token that says who the user is.
	EnvToken = "POLLUX_TOKEN"
	// EnvBearerToken and EnvBearerTokenFile are WLCG Bearer Token Discovery's variables,
	// looked at when EnvToken is not set: a grid user's token agent (oidc-agent,
	// htgettoken) sets them or writes $XDG_RUNTIME_DIR/bt_u<uid> or /tmp/bt_u<uid>.
	EnvBearerToken     = "BEARER_TOKEN"
	EnvBearerTokenFile = "BEARER_TOKEN_FILE"
	// EnvCAFile is a PEM file of the certificate authorities that sign the request
	// handlers' and movers' certificates (https:// entries in STAGE_HOST, movers serving
	// TLS); without it the system's pool is trusted.
	EnvCAFile = "POLLUX_CA_FILE"
)

// Config is what a client needs to reach rhd.
type Config struct {
	// Hosts are the STAGE_HOST entries.
	Hosts []string
	// Port is used for entries without one.
	Port int
	// Token is the bearer token.
	Token string
	// ServiceClass is the default service class.
	ServiceClass string
	// Resolver looks up the addresses of a STAGE_HOST name; nil means the system's.
	Resolver Resolver
	// TLS is how https:// request handlers and movers are verified; nil means against
	// the system's pool.
	TLS *tls.Config
}

// Resolver looks up host names, as *net.Resolver does: a name of many request handlers
// (a DNS alias) resolves to all their addresses.
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// ConfigFromEnv reads the configuration through getenv (os.Getenv in the commands).
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := Config{Port: api.DefaultPort, ServiceClass: api.DefaultServiceClass}
	for _, h := range strings.Split(getenv(EnvHost), ",") {
		if h = strings.TrimSpace(h); h != "" {
			c.Hosts = append(c.Hosts, h)
		}
	}
	if len(c.Hosts) == 0 {
		return c, errorf(wire.ErrorKindInvalid, "%s is not set: export %s=host:port naming the request handler (rhd), a comma list of them, or their DNS alias", EnvHost, EnvHost)
	}
	if p := strings.TrimSpace(getenv(EnvPort)); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return c, errorf(wire.ErrorKindInvalid, "%s=%q is not a port number", EnvPort, p)
		}
		c.Port = n
	}
	if s := strings.TrimSpace(getenv(EnvServiceClass)); s != "" {
		c.ServiceClass = s
	}
	if f := strings.TrimSpace(getenv(EnvCAFile)); f != "" {
		t, err := certs.Client(f)
		if err != nil {
			return c, errorf(wire.ErrorKindInvalid, "%s: %v", EnvCAFile, err)
		}
		c.TLS = t
	}
	tok, err := discoverToken(getenv)
	if err != nil {
		return c, err
	}
	c.Token = tok
	return c, nil
}

// discoverToken finds the bearer token: POLLUX_TOKEN, else where WLCG Bearer Token
// Discovery looks (BEARER_TOKEN, BEARER_TOKEN_FILE, $XDG_RUNTIME_DIR/bt_u<uid>,
// /tmp/bt_u<uid>), so that a grid user's JWT is found where their token agent put it.
// Errors never quote a token.
func discoverToken(getenv func(string) string) (string, error) {
	if t := strings.TrimSpace(getenv(EnvToken)); t != "" {
		return t, nil
	}
	if t := strings.TrimSpace(getenv(EnvBearerToken)); t != "" {
		return t, nil
	}
	if f := getenv(EnvBearerTokenFile); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", errorf(wire.ErrorKindInvalid, "%s=%s cannot be read: %v", EnvBearerTokenFile, f, err)
		}
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
		return "", errorf(wire.ErrorKindInvalid, "%s=%s is empty: get a new token from your issuer", EnvBearerTokenFile, f)
	}
	name := "bt_u" + strconv.Itoa(os.Getuid())
	var places []string
	if d := getenv("XDG_RUNTIME_DIR"); d != "" {
		places = append(places, filepath.Join(d, name))
	}
	places = append(places, filepath.Join("/tmp", name))
	for _, p := range places {
		if b, err := os.ReadFile(p); err == nil {
			if t := strings.TrimSpace(string(b)); t != "" {
				return t, nil
			}
		}
	}
	return "", errorf(wire.ErrorKindInvalid, "%s is not set and no WLCG bearer token was found (%s, %s, %s): export %s=<your token> (ask the operator of Pollux for one)",
		EnvToken, EnvBearerToken, EnvBearerTokenFile, strings.Join(places, ", "), EnvToken)
}

// resolve turns the STAGE_HOST entries into base URLs, one per address: a name that
// resolves to several addresses (a DNS alias of many rhd) gives several, so that the
// client can fail over between them. Names that do not resolve are skipped while any
// other entry gives an address.
func (c Config) resolve(ctx context.Context, r Resolver) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(u string) {
		if !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	var failures []string
	for _, h := range c.Hosts {
		if strings.HasPrefix(h, "http://") || strings.HasPrefix(h, "https://") {
			add(strings.TrimRight(h, "/"))
			continue
		}
		host, port, err := net.SplitHostPort(h)
		if err != nil {
			host, port = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), strconv.Itoa(c.Port)
		}
		if net.ParseIP(host) != nil {
			add("http://" + net.JoinHostPort(host, port))
			continue
		}
		addrs, err := r.LookupHost(ctx, host)
		if err != nil {
			failures = append(failures, err.Error())
			continue
		}
		for _, a := range addrs {
			add("http://" + net.JoinHostPort(a, port))
		}
	}
	if len(out) == 0 {
		return nil, errorf(wire.ErrorKindUnavailable, "no address for the request handler in %s=%s (%s): check the name, or your DNS",
			EnvHost, strings.Join(c.Hosts, ","), strings.Join(failures, "; "))
	}
	return out, nil
}
