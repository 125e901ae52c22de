// Package diskserver is diskserverd, one per disk server: it registers the server and its
// data directories itself (no central configuration, as xrootd data servers log in to
// their manager), heartbeats load and free space, claims the transfers placed on it
// (transfer_claim: a mover endpoint and a one-time token published, the client's long poll
// returns), serves the movers over HTTP (package mover), and deletes the copies the stager
// invalidated.
//
// It learns of new work from the placing daemon's wake-up hint (a POST to mover.PathWake
// after their commit) and polls as a safety net; it never LISTENs, so the sessions
// PostgreSQL signals at every NOTIFY do not grow with the number of disk servers.
//
// Nothing here decides: the logic in schema/logic (diskserver.sql, transfer.sql) does, time
// limits and liveness included (the policy table; the heartbeat's pace is a quarter of
// policy disk_server_live_seconds, as the heartbeat returns it). A process that dies loses
// nothing: its successor takes back the transfers it was running (disk_server_recover) and
// claims those still placed on it, and a server that stays dead or cut off is found SILENT
// by the job manager once its heartbeat is stale (its queued transfers are placed
// elsewhere, those in flight fail). A clean stop leaves placement at the first signal
// (disk_server_stop), before the drain.
package diskserver

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pollux-storage/pollux/daemons/diskserverd/mover"
	"github.com/pollux-storage/pollux/daemons/internal/instance"
	"github.com/pollux-storage/pollux/daemons/internal/wake"
	"github.com/pollux-storage/pollux/framework/certs"
	"github.com/pollux-storage/pollux/framework/claim"
	"github.com/pollux-storage/pollux/framework/daemon"
	"github.com/pollux-storage/pollux/framework/service"
)

// gcBatch is the most copies one collection step deletes in its transaction.
const gcBatch = 100

// config is diskserverd's command line.
type config struct {
	name            string
	url             string
	listen          string
	dataDirs        dirList
	serviceClass    string
	transferWorkers int
	claimPoll       time.Duration
	gcInterval      time.Duration
	tlsCert         string
	tlsKey          string
}

// dirList is a repeatable flag that also takes comma-separated lists (the form an
// environment variable can carry).
type dirList []string

func (d *dirList) String() string {
	if d == nil {
		return ""
	}
	return strings.Join(*d, ",")
}

func (d *dirList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*d = append(*d, p)
		}
	}
	return nil
}

// Spec declares diskserverd.
func Spec() daemon.Spec {
	host, _ := os.Hostname()
	cfg := &config{}
	return daemon.Spec{
		Name:    "diskserverd",
		Summary: "run a disk server: register it, heartbeat, move data for transfers, delete invalidated copies",
		Description: "One per disk server. It registers itself and its data directories, claims the transfers " +
			"placed on it (each publishes a mover endpoint with a one-time token), serves uploads and " +
			"downloads over HTTP on --listen, and deletes the copies the stager invalidated. Time limits, " +
			"liveness and retries are the database's policy (pollux-admin policy).",
		Version: instance.Version(),
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&cfg.name, "name", host, "Name of the disk server, unique in the instance.")
			fs.StringVar(&cfg.url, "url", "", "Public base URL of the movers, as clients reach them (default: http://<listen address>, https:// with --tls-cert-file).")
			fs.StringVar(&cfg.tlsCert, "tls-cert-file", "", "PEM certificate (with its chain) of the movers' listener: with --tls-key-file the movers serve HTTPS. Without both they serve plain HTTP, where transfer tokens and data travel in clear: keep that to loopback or a trusted network.")
			fs.StringVar(&cfg.tlsKey, "tls-key-file", "", "PEM private key of --tls-cert-file.")
			fs.StringVar(&cfg.listen, "listen", "127.0.0.1:9100", "Address the mover HTTP listener binds.")
			fs.Var(&cfg.dataDirs, "data-dir", "A data directory (file system) of the server; repeat it or give a comma-separated list. Created if missing. Required.")
			fs.StringVar(&cfg.serviceClass, "service-class", "default", "Service class the data directories serve.")
			fs.IntVar(&cfg.transferWorkers, "transfer-workers", 16, "Transfers (movers) run at once.")
			fs.DurationVar(&cfg.claimPoll, "claim-poll-interval", time.Second, "How often to look for transfers placed on this server when no wake-up hint came (a safety net: placing daemons send one).")
			fs.DurationVar(&cfg.gcInterval, "gc-interval", 10*time.Second, "How often invalidated copies are looked for and deleted.")
		},
		Registry: instance.Registry{},
		Ready:    instance.Ready,
		Setup:    func(ctx context.Context, env *daemon.Env) ([]service.Service, error) { return setup(ctx, env, cfg) },
	}
}

func (c *config) check() error {
	switch {
	case c.name == "":
		return errors.New("--name is required (the host name is unknown)")
	case len(c.dataDirs) == 0:
		return errors.New("--data-dir is required: give at least one data directory")
	case c.claimPoll <= 0 || c.gcInterval <= 0:
		return errors.New("--claim-poll-interval and --gc-interval must be positive")
	case c.transferWorkers < 1:
		return fmt.Errorf("--transfer-workers must be at least 1, got %d", c.transferWorkers)
	}
	return nil
}

// mountPoints makes the data directories absolute and creates them.
func (c *config) mountPoints() ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for _, d := range c.dataDirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			return nil, fmt.Errorf("data directory %s: %w", d, err)
		}
		if seen[abs] {
			continue
		}
		seen[abs] = true
		// 0700, as the directories the movers create under it: only this daemon's account
		// reads the data (an existing directory keeps the mode its operator gave it).
		if err := os.MkdirAll(abs, 0o700); err != nil {
			return nil, fmt.Errorf("data directory: %w", err)
		}
		out = append(out, abs)
	}
	return out, nil
}

// publicURL is --url, or scheme:// and the address the listener got (with the host name
// when it listens on every interface). A --url of http:// for movers that serve TLS is
// refused: no client could reach them. (https:// for plain movers may name a proxy that
// terminates TLS in front of them.)
func publicURL(flagURL, scheme string, addr net.Addr) (string, error) {
	if flagURL != "" {
		u, err := url.Parse(flagURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", fmt.Errorf("--url %q is not an http(s) URL with a host", flagURL)
		}
		if scheme == "https" && u.Scheme == "http" {
			return "", fmt.Errorf("--url %q is plain http, but the movers serve TLS (--tls-cert-file): give https://", flagURL)
		}
		return strings.TrimRight(flagURL, "/"), nil
	}
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "", fmt.Errorf("listener address %s: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if host, err = os.Hostname(); err != nil {
			return "", fmt.Errorf("listening on every interface, and the host name is unknown: give --url: %w", err)
		}
	}
	return scheme + "://" + net.JoinHostPort(host, port), nil
}

func setup(ctx context.Context, env *daemon.Env, cfg *config) (_ []service.Service, err error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if err := instance.RegisterMetrics(env); err != nil {
		return nil, err
	}
	mounts, err := cfg.mountPoints()
	if err != nil {
		return nil, err
	}
	tlsConfig, err := certs.Server(cfg.tlsCert, cfg.tlsKey)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return nil, fmt.Errorf("mover listener on %s: %w", cfg.listen, err)
	}
	defer func() {
		if err != nil {
			_ = ln.Close()
		}
	}()
	scheme := "http"
	switch {
	case tlsConfig != nil:
		scheme = "https"
	case certs.Loopback(ln.Addr()):
		env.Log.Info("movers on plain HTTP on loopback: transfer tokens and data are readable by this machine's users only; give --tls-cert-file and --tls-key-file to serve HTTPS")
	default:
		env.Log.Warn("movers on plain HTTP on a network address: transfer tokens and data travel in clear; give --tls-cert-file and --tls-key-file to serve HTTPS",
			zap.String("addr", ln.Addr().String()))
	}
	base, err := publicURL(cfg.url, scheme, ln.Addr())
	if err != nil {
		return nil, err
	}
	if tlsConfig != nil {
		// Handshakes happen in the server's connection goroutines, not in Accept.
		ln = tls.NewListener(ln, tlsConfig)
	}

	srv := &server{db: env.DB, log: env.Logger("server"), name: cfg.name, url: base,
		serviceClass: cfg.serviceClass, mounts: mounts, fsIDs: map[string]int64{}}
	if err := srv.register(ctx); err != nil {
		return nil, err
	}
	if err := srv.recover(ctx); err != nil {
		return nil, err
	}

	transfers := mover.NewTransfers()
	watchCtx, abort := context.WithCancel(context.WithoutCancel(ctx))
	claims := &claimer{db: env.DB, server: srv, transfers: transfers, log: env.Logger("transfer"),
		limit: cfg.transferWorkers, draining: make(chan struct{}), watchCtx: watchCtx, abort: abort}
	claims.pool, err = claim.New(claim.Config{Name: "transfers", Workers: 1, Batch: cfg.transferWorkers,
		PollInterval: cfg.claimPoll, Step: claims.step}, nil, env.ClaimMetrics, env.Log)
	if err != nil {
		abort()
		return nil, err
	}
	moverMetrics, err := mover.NewMetrics(env.Metrics)
	if err == nil {
		err = env.Metrics.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pollux_diskserver_transfers_running",
			Help: "Transfers this disk server's jobs watch now: placed and waiting for their client, or moving data.",
		}, func() float64 { return float64(transfers.Len()) }))
	}
	if err == nil {
		err = env.Metrics.Register(fsCollector{name: cfg.name, mounts: mounts})
	}
	if err != nil {
		abort()
		return nil, err
	}
	handler := mover.NewHandler(mover.Config{DB: env.DB, Transfers: transfers, DiskServerID: srv.id, MountPoints: mounts, Log: env.Logger("mover"),
		Wake: claims.pool.Wake, Metrics: moverMetrics})
	gc := &collector{db: env.DB, server: srv, log: env.Logger("gc")}
	gcPool, err := claim.New(claim.Config{Name: "gc", Workers: 1, Batch: gcBatch, PollInterval: cfg.gcInterval, Step: gc.step},
		nil, env.ClaimMetrics, env.Log)
	if err != nil {
		abort()
		return nil, err
	}
	hints := wake.New(env.Logger("wake"), env.Metrics, env.TLS)
	started := time.Now()
	srv.log.Info("disk server ready", zap.Int64("disk_server_id", srv.id()), zap.String("name", srv.name),
		zap.String("url", base), zap.Strings("data_dirs", mounts),
		zap.Int("transfer_workers", cfg.transferWorkers))
	// Started in this order and stopped in reverse: the server leaves placement first (what
	// was only placed here goes elsewhere at once, nothing new comes), then claiming stops
	// and transfers still waiting for their client give up, the watchers end before the
	// movers they watch, heartbeats last until the end, and whatever transfer is still
	// READY on this server is taken back at the very end.
	return []service.Service{
		&takeBack{server: srv},
		&loop{name: "heartbeat", run: srv.heartbeatLoop},
		mover.NewServer(ln, handler, env.Logger("mover")),
		claims,
		gcPool,
		&loop{name: "sweep", run: func(ctx context.Context) { sweepParts(ctx, mounts, started, gc.log) }},
		hints,
		&leave{server: srv, hints: hints},
	}, nil
}

// leave takes the server out of placement when the daemon starts to stop, before it stops
// serving: without it, stagers would go on placing transfers here until its heartbeat
// aged out, each one stalling until it was taken back.
type leave struct {
	server *server
	hints  *wake.Hinter
}

func (l *leave) Name() string                    { return "leave" }
func (l *leave) Start(ctx context.Context) error { return nil }

func (l *leave) Stop(ctx context.Context) error {
	// One short transaction; the drain deadline is for the transfers.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	urls, err := l.server.leave(ctx)
	if err != nil {
		// The job manager finds the server silent once its heartbeat ages out.
		return err
	}
	l.hints.Hint(urls...)
	return nil
}

// loop runs a function in the background until Stop.
type loop struct {
	name   string
	run    func(ctx context.Context)
	cancel context.CancelFunc
	done   chan struct{}
}

func (l *loop) Name() string { return l.name }

func (l *loop) Start(ctx context.Context) error {
	ctx, l.cancel = context.WithCancel(ctx)
	l.done = make(chan struct{})
	go func() { defer close(l.done); l.run(ctx) }()
	return nil
}

func (l *loop) Stop(ctx context.Context) error {
	l.cancel()
	select {
	case <-l.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop %s: %w", l.name, ctx.Err())
	}
}

// takeBack hands the transfers still READY on this server back to the stager when the
// daemon stops (their movers stop with it), so that clients are retried elsewhere now
// rather than when this server's heartbeat goes stale.
type takeBack struct{ server *server }

func (t *takeBack) Name() string                    { return "take-back" }
func (t *takeBack) Start(ctx context.Context) error { return nil }

func (t *takeBack) Stop(ctx context.Context) error {
	// The drain deadline may have passed already; this is one short transaction.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return t.server.recover(ctx)
}
