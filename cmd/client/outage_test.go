package client_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/cmd/client"
	"github.com/pollux-storage/pollux/daemons/rhd/rhdtest"
	"github.com/pollux-storage/pollux/framework/pgtest"
	"github.com/pollux-storage/pollux/schema/schematest"
)

// outage is rhd instances whose database sits behind a link the test can cut: the
// request handlers keep running and answering while their database is out of reach.
type outage struct {
	t    *testing.T
	link *pgtest.Link
	rhds []*rhdtest.Instance
}

func newOutage(t *testing.T, rhds int) *outage {
	t.Helper()
	o := &outage{t: t, link: pgtest.NewLink(t, schematest.DSN(t))}
	tokens := rhdtest.WriteTokens(t, map[string]string{token: "alice"})
	for range rhds {
		o.rhds = append(o.rhds, rhdtest.Start(t, o.link.DSN, tokens))
	}
	// Cleanups run last first: the database is back before the request handlers drain.
	t.Cleanup(o.link.Restore)
	return o
}

// stageHost is a STAGE_HOST naming every rhd.
func (o *outage) stageHost() string {
	var hosts []string
	for _, r := range o.rhds {
		hosts = append(hosts, r.Addr)
	}
	return strings.Join(hosts, ",")
}

// run runs a command in-process with vars as its environment; stderr, when not nil,
// receives what it writes there as it writes it.
func runCommand(cmd func(context.Context, client.Env) int, vars map[string]string, resolver client.Resolver, stderr *rhdtest.Buffer, args ...string) result {
	var stdout strings.Builder
	if stderr == nil {
		stderr = &rhdtest.Buffer{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code := cmd(ctx, client.Env{Args: args, Getenv: func(k string) string { return vars[k] }, Stdout: &stdout, Stderr: stderr, Resolver: resolver})
	return result{code, stdout.String(), stderr.String()}
}

// TestGivesUpWithinServiceTimeout: with the database out of reach, each rhd answers 503
// within the part of the wait the client gives it, and the client gives up once
// --service-timeout has passed, saying while it waits which rhd answered what and how long
// it will wait, and at the end why it gave up.
func TestGivesUpWithinServiceTimeout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		rhds  int
		bound time.Duration
	}{
		{"one rhd", 1, 5 * time.Second},
		{"two rhd in a comma list", 2, 8 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := newOutage(t, tc.rhds)
			o.link.Cut()
			vars := map[string]string{client.EnvHost: o.stageHost(), client.EnvToken: token, "POLLUX_SERVICE_TIMEOUT": tc.bound.String()}
			start := time.Now()
			r := runCommand(client.Put, vars, nil, nil, "-M", "/pollux/u/alice/down")
			took := time.Since(start)
			t.Logf("stager_put gave up after %s (--service-timeout %s); its stderr:\n%s", took.Round(time.Millisecond), tc.bound, r.stderr)
			require.Equal(t, 2, r.code, r.stderr)
			// Generous margins: the machine is shared and the race detector may be on.
			require.Greater(t, took, tc.bound-time.Second, "gave up before the bound")
			require.Less(t, took, tc.bound+5*time.Second, "gave up well after the bound")
			for _, rhd := range o.rhds {
				require.Contains(t, r.stderr, "stager_put: "+rhd.URL+": answered 503: the request handler cannot reach its database now",
					"each rhd's answer is told while the client waits")
			}
			require.Regexp(t, `giving up in [0-9.]+m?s\n`, r.stderr)
			final := r.stderr[strings.LastIndex(strings.TrimRight(r.stderr, "\n"), "\n")+1:]
			require.Contains(t, final, "stager_put: no request handler could serve the call in ")
			require.Contains(t, final, "gave up after --service-timeout "+tc.bound.String()+" (POLLUX_SERVICE_TIMEOUT)")
			for _, rhd := range o.rhds {
				require.Contains(t, final, rhd.URL+": answered 503")
			}
			// Once per change, not once per try: at most a line per address and outcome
			// (an answer, a try without an answer yet) and the final one.
			lines := strings.Count(r.stderr, "\n")
			require.LessOrEqual(t, lines, 3*tc.rhds+1, "a flood of notices:\n%s", r.stderr)
		})
	}
}

// TestRidesThroughADatabaseOutage: a call that is not served while the database is out
// of reach goes on trying and is served once it is back, and says so.
func TestRidesThroughADatabaseOutage(t *testing.T) {
	t.Parallel()
	o := newOutage(t, 1)
	o.link.Cut()
	stderr := &rhdtest.Buffer{}
	done := make(chan result, 1)
	vars := map[string]string{client.EnvHost: o.stageHost(), client.EnvToken: token}
	go func() {
		done <- runCommand(client.Qry, vars, nil, stderr, "--service-timeout", "12s", "-M", "/pollux/u/alice/none")
	}()
	// The client has said what it waits for before the database comes back, at the end of
	// its first try (6 s: half the bound).
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), "answered 503") {
		require.True(t, time.Now().Before(deadline), "no notice of the outage in 10s:\n%s", stderr)
		select {
		case r := <-done:
			t.Fatalf("stager_qry ended during the outage: %d\n%s", r.code, r.stderr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	o.link.Restore()
	r := <-done
	require.Equal(t, 1, r.code, "served once the database is back (no such file): %s", r.stderr)
	require.Contains(t, r.stderr, "stager_qry: "+o.rhds[0].URL+" answered; going on\n")
	require.Contains(t, r.stderr, "no such file: /pollux/u/alice/none")
}

// resolver is a DNS that knows one alias of many request handlers.
type resolver struct {
	name    string
	addrs   []string
	lookups atomic.Int32
}

func (r *resolver) LookupHost(_ context.Context, host string) ([]string, error) {
	if host != r.name {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	r.lookups.Add(1)
	return r.addrs, nil
}

// TestFailoverAcrossADNSName: a STAGE_HOST name that resolves to several addresses stands
// for all of them: the client fails over from an address nothing listens on and from an
// rhd whose database is out of reach to the one that serves.
func TestFailoverAcrossADNSName(t *testing.T) {
	t.Parallel()
	o := newOutage(t, 1) // the rhd whose database goes
	live := newCluster(t, true)
	o.link.Cut()
	_, port, err := net.SplitHostPort(live.rhd.Addr)
	require.NoError(t, err)
	// The alias's other addresses use the live rhd's port, as a DNS alias of request
	// handlers does: the cut-off rhd is reached through a proxy bound there on another
	// loopback address, and one more address refuses connections.
	proxyLn := bindLoopback(t, port)
	target, err := url.Parse(o.rhds[0].URL)
	require.NoError(t, err)
	proxy := &http.Server{Handler: httputil.NewSingleHostReverseProxy(target), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = proxy.Serve(proxyLn) }()
	t.Cleanup(func() { _ = proxy.Close() })
	refused := refusingLoopback(t, port)
	hostOf := func(addr string) string { h, _, _ := net.SplitHostPort(addr); return h }
	dns := &resolver{name: "rh.pollux.test", addrs: []string{hostOf(live.rhd.Addr), hostOf(proxyLn.Addr().String()), refused}}

	// A short bound: the rhd without its database answers 503 within a try's share of it.
	vars := map[string]string{client.EnvHost: "rh.pollux.test", client.EnvPort: port, client.EnvToken: token, "POLLUX_SERVICE_TIMEOUT": "3s"}
	seen := map[string]bool{}
	// The order is random: run until both bad addresses came before the live one.
	for i := 0; i < 40 && !(seen["503"] && seen["refused"]); i++ {
		r := runCommand(client.Put, vars, dns, nil, "-M", fmt.Sprintf("/pollux/u/alice/dns%d", i), "--no-wait")
		require.Equal(t, 0, r.code, r.stderr)
		seen["503"] = seen["503"] || strings.Contains(r.stderr, "answered 503: the request handler cannot reach its database now")
		seen["refused"] = seen["refused"] || strings.Contains(r.stderr, refused+":"+port+": connect: connection refused")
	}
	require.True(t, seen["503"], "the rhd without its database was never tried first")
	require.True(t, seen["refused"], "the refusing address was never tried first")
	require.Positive(t, dns.lookups.Load())
	require.Positive(t, live.count("select count(*) from request"))
}

// bindLoopback listens on port at a random address of 127.0.0.0/8, trying others while the
// port is taken there.
func bindLoopback(t *testing.T, port string) net.Listener {
	t.Helper()
	var last error
	for range 20 {
		ln, err := net.Listen("tcp", net.JoinHostPort(randomLoopback(), port))
		if err == nil {
			t.Cleanup(func() { ln.Close() })
			return ln
		}
		last = err
	}
	t.Fatalf("no free loopback address for port %s: %v", port, last)
	return nil
}

// refusingLoopback returns a random address of 127.0.0.0/8 where a connection to port is
// refused now.
func refusingLoopback(t *testing.T, port string) string {
	t.Helper()
	for range 20 {
		ip := randomLoopback()
		c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, port), time.Second)
		if err == nil {
			c.Close()
			continue
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			return ip
		}
	}
	t.Fatalf("no loopback address refuses port %s", port)
	return ""
}

// randomLoopback is an address of 127.0.0.0/8 other than the usual ones (127.0.0.1 and
// Debian's 127.0.1.1).
func randomLoopback() string {
	return "127." + strconv.Itoa(2+rand.IntN(250)) + "." + strconv.Itoa(rand.IntN(256)) + "." + strconv.Itoa(1+rand.IntN(254))
}
