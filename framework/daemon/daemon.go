// Package daemon turns a declaration into a running daemon, as CASTOR's C++ framework did:
// a name, a command line (flags with POLLUX_* environment fall-backs and a --help that
// explains each), and named worker pools with their sizes. Main parses, builds the logger
// and metrics, connects to PostgreSQL (waiting for it if need be), starts the LISTEN
// fan-out, registers and heartbeats the instance, serves /healthz, /readyz and /metrics,
// starts the services Setup returns, and on SIGTERM or SIGINT drains them in reverse order
// within --drain-timeout (a second signal exits at once).
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pollux-storage/pollux/framework/certs"
	"github.com/pollux-storage/pollux/framework/claim"
	"github.com/pollux-storage/pollux/framework/flagenv"
	"github.com/pollux-storage/pollux/framework/leader"
	"github.com/pollux-storage/pollux/framework/logging"
	"github.com/pollux-storage/pollux/framework/metrics"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/service"
	"github.com/pollux-storage/pollux/framework/uuid"
)

// Spec declares a daemon.
type Spec struct {
	// Name is the role and program name, e.g. "stagerd".
	Name string
	// Summary is one line for --help.
	Summary string
	// Description is an optional paragraph for --help.
	Description string
	// Version is reported in logs, metrics and the instance registry.
	Version string
	// Pools are the daemon's named worker pools; each gets --<name>-workers and
	// --<name>-batch flags with these defaults.
	Pools []PoolSpec
	// Flags registers the daemon's own flags.
	Flags func(fs *flag.FlagSet)
	// Setup builds the daemon's services once the database is reachable. They are started
	// in order and stopped in reverse.
	Setup func(ctx context.Context, env *Env) ([]service.Service, error)
	// Registry records the instance in the database; nil means no registration.
	Registry Registry
	// Leases keeps the leases of singleton pools; required when a pool is a singleton.
	Leases leader.Store
	// Ready are checks /readyz runs besides reaching the database (migrations at head,
	// logic installed...). Each returns nil when ready or an error saying why not.
	Ready []func(ctx context.Context, db *pg.DB) error
	// MinDBConns is the least size of the database pool (default: the pools' workers + 4);
	// a daemon whose work is not in pools (an HTTP front end) sets it.
	MinDBConns int
	// IgnoreEnv lists POLLUX_* variables that are not this daemon's flags but are expected
	// in its environment (they are not reported as unknown).
	IgnoreEnv []string
}

// PoolSpec declares a named worker pool.
type PoolSpec struct {
	Name    string
	Workers int
	Batch   int
	Doc     string
	// Singleton pools do their work only on the instance holding the lease
	// "<daemon>.<pool>" (framework/leader); their steps go through Env.Elector(name).Tx.
	Singleton bool
}

// Instance identifies one running process of a daemon.
type Instance struct {
	ID       string
	Role     string
	Host     string
	PID      int
	Version  string
	Pools    map[string]int
	AdminURL string
}

// Registry records instances so that operators can list them with their heartbeat age.
type Registry interface {
	Register(ctx context.Context, db *pg.DB, in Instance) error
	Heartbeat(ctx context.Context, db *pg.DB, id string) error
	Deregister(ctx context.Context, db *pg.DB, id string) error
}

// Env is what Setup gets to build services with.
type Env struct {
	DB           *pg.DB
	Listener     *pg.Listener
	Log          *zap.Logger
	Metrics      *prometheus.Registry
	ClaimMetrics *claim.Metrics
	Instance     Instance
	// Mux is the admin HTTP mux; a daemon may add its own operator endpoints.
	Mux *http.ServeMux
	// Ready answers what /readyz answers (nil when ready), for a daemon that also serves
	// it elsewhere: a load balancer checks a front end on the port it balances.
	Ready func(ctx context.Context) error
	// TLS is how the daemon verifies the Pollux services it calls over HTTPS (a placing
	// daemon's wake-up hints to movers): the CAs of --ca-file, or the system's pool.
	TLS      *tls.Config
	pools    map[string]*poolFlags
	electors map[string]*leader.Elector
}

// Elector returns the elector of a singleton pool.
func (e *Env) Elector(pool string) *leader.Elector {
	el, ok := e.electors[pool]
	if !ok {
		panic(fmt.Sprintf("daemon: pool %q is not a singleton in the spec", pool))
	}
	return el
}

type poolFlags struct{ workers, batch int }

// Pool returns the configured workers and batch of a declared pool.
func (e *Env) Pool(name string) (workers, batch int) {
	p, ok := e.pools[name]
	if !ok {
		panic(fmt.Sprintf("daemon: pool %q is not declared in the spec", name))
	}
	return p.workers, p.batch
}

// Logger returns the daemon's logger with the pool field set, for services other than
// claim pools (which add the field themselves).
func (e *Env) Logger(pool string) *zap.Logger { return e.Log.With(zap.String(logging.KeyPool, pool)) }

type options struct {
	databaseURL       string
	adminAddr         string
	logFormat         string
	logLevel          string
	drainTimeout      time.Duration
	heartbeatInterval time.Duration
	dbMaxConns        int
	host              string
	version           bool
	leaseTTL          time.Duration
	leaseRenew        time.Duration
	leasePreferred    bool
	debugEndpoints    bool
	caFile            string
}

// Main runs the daemon with the process's arguments and signals and returns the exit code:
// 0 after a clean drain, 1 on a runtime failure, 2 on a command-line error.
func Main(args []string, spec Spec) int {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "%s: %s received: draining (send it again to exit at once)\n", spec.Name, s)
		stop()
		s = <-sigs
		fmt.Fprintf(os.Stderr, "%s: second %s: exiting without drain\n", spec.Name, s)
		os.Exit(1)
	}()
	return Run(ctx, args, os.Environ(), os.Stdout, os.Stderr, spec)
}

// Run is Main without the process: cancelling ctx is the first SIGTERM. Tests run daemons
// in-process through it.
func Run(ctx context.Context, args, environ []string, stdout, stderr io.Writer, spec Spec) int {
	fs := flag.NewFlagSet(spec.Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var o options
	fs.StringVar(&o.databaseURL, "database-url", "", "PostgreSQL connection string (libpq URL or key=value; several hosts with target_session_attrs=read-write for failover). Required.")
	fs.StringVar(&o.adminAddr, "admin-addr", "127.0.0.1:0", "Address of the admin HTTP listener serving /healthz, /readyz and /metrics (port 0: any free port, published in the instance registry); with --debug-endpoints also Go's profiler under /debug/pprof/.")
	fs.StringVar(&o.caFile, "ca-file", "", "PEM file of the certificate authorities that sign the certificates of the Pollux services this daemon calls over HTTPS (movers serving TLS, for wake-up hints); default: the system's pool.")
	fs.BoolVar(&o.debugEndpoints, "debug-endpoints", false, "Serve Go's profiler under /debug/pprof/ on the admin listener. Off by default: a profile shows the daemon's command line and memory (connection strings, tokens in flight), and a CPU profile or trace costs it time, to anyone who reaches the listener.")
	fs.StringVar(&o.logFormat, "log-format", "auto", "Log encoding: json, console, or auto (console on a terminal, json otherwise).")
	fs.StringVar(&o.logLevel, "log-level", "info", "Log level: debug, info, warn or error.")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 30*time.Second, "On SIGTERM, how long work in flight may take to finish before it is aborted (its transactions roll back).")
	fs.DurationVar(&o.heartbeatInterval, "heartbeat-interval", 5*time.Second, "How often the instance refreshes its heartbeat in the database.")
	fs.IntVar(&o.dbMaxConns, "db-max-conns", 0, "Largest number of database connections (0: the sum of all pools' workers plus 4).")
	fs.StringVar(&o.host, "host", "", "Host name to register under (default: the machine's host name).")
	fs.BoolVar(&o.version, "version", false, "Print the version and exit.")
	singletons := false
	for _, p := range spec.Pools {
		singletons = singletons || p.Singleton
	}
	if singletons {
		fs.DurationVar(&o.leaseTTL, "leader-lease-ttl", 3*time.Second, "How long a singleton pool's lease lasts without renewal: a leader that dies is replaced within this plus --leader-renew-interval.")
		fs.DurationVar(&o.leaseRenew, "leader-renew-interval", time.Second, "How often the leader renews each lease and backups try to take it; under --leader-lease-ttl.")
		fs.BoolVar(&o.leasePreferred, "leader-preferred", false, "Make this instance the preferred leader of every singleton pool: it takes the leases back from other instances when it returns (HTCondor's HAD_USE_PRIMARY).")
	}
	pools := map[string]*poolFlags{}
	for _, p := range spec.Pools {
		pf := &poolFlags{}
		pools[p.Name] = pf
		fs.IntVar(&pf.workers, p.Name+"-workers", p.Workers, fmt.Sprintf("Goroutines in the %s pool: %s", p.Name, p.Doc))
		fs.IntVar(&pf.batch, p.Name+"-batch", p.Batch, fmt.Sprintf("Most rows one %s worker claims per transaction.", p.Name))
	}
	if spec.Flags != nil {
		spec.Flags(fs)
	}
	help := false
	fs.BoolVar(&help, "help", false, "Explain the daemon and its flags.")

	ignore := map[string]bool{}
	for _, k := range spec.IgnoreEnv {
		ignore[k] = true
	}
	unknownEnv, err := flagenv.Parse(fs, args, environ, ignore)
	switch {
	case errors.Is(err, flag.ErrHelp) || help:
		flagenv.PrintHelp(stdout, spec.Name, spec.Summary, spec.Name+" [flags]", spec.Description, fs)
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "%s: %v\nRun %s --help to see every flag.\n", spec.Name, err, spec.Name)
		return 2
	case o.version:
		fmt.Fprintf(stdout, "%s %s\n", spec.Name, spec.Version)
		return 0
	case o.databaseURL == "":
		fmt.Fprintf(stderr, "%s: --database-url (or %s) is required\n", spec.Name, flagenv.Name("database-url"))
		return 2
	}
	if singletons && spec.Leases == nil {
		fmt.Fprintf(stderr, "%s: a singleton pool needs Spec.Leases (a fault of the daemon, not of its flags)\n", spec.Name)
		return 2
	}
	if singletons && (o.leaseTTL < time.Second || o.leaseRenew <= 0 || o.leaseRenew >= o.leaseTTL) {
		fmt.Fprintf(stderr, "%s: --leader-lease-ttl must be at least 1s and --leader-renew-interval above 0 and under it (got %s and %s)\n",
			spec.Name, o.leaseTTL, o.leaseRenew)
		return 2
	}
	for name, p := range pools {
		if p.workers < 1 || p.batch < 1 {
			fmt.Fprintf(stderr, "%s: --%s-workers and --%s-batch must be at least 1\n", spec.Name, name, name)
			return 2
		}
	}

	d := &run{spec: spec, o: o, pools: pools, stderr: stderr, flags: fs}
	if err := d.main(ctx, unknownEnv); err != nil {
		if d.log != nil {
			d.log.Error("daemon failed", zap.Error(err))
		} else {
			fmt.Fprintf(stderr, "%s: %v\n", spec.Name, err)
		}
		return 1
	}
	return 0
}

// run is one daemon process's life.
type run struct {
	spec   Spec
	o      options
	pools  map[string]*poolFlags
	stderr io.Writer
	log    *zap.Logger
	flags  *flag.FlagSet

	mu       sync.Mutex
	draining bool
	ready    readiness
}

type readiness struct {
	at  time.Time
	err error
}

func (d *run) main(ctx context.Context, unknownEnv []string) error {
	host := d.o.host
	if host == "" {
		host, _ = os.Hostname()
	}
	inst := Instance{ID: uuid.New(), Role: d.spec.Name, Host: host, PID: os.Getpid(), Version: d.spec.Version, Pools: map[string]int{}}
	for name, p := range d.pools {
		inst.Pools[name] = p.workers
	}
	base, err := logging.New(logging.Config{Format: d.o.logFormat, Level: d.o.logLevel}, d.stderr)
	if err != nil {
		return err
	}
	defer base.Sync() //nolint:errcheck // stderr sync fails on some terminals; nothing to do about it
	d.log = base.With(zap.String(logging.KeyDaemon, d.spec.Name), zap.String(logging.KeyInstance, inst.ID), zap.String(logging.KeyHost, host))
	for _, k := range unknownEnv {
		d.log.Warn("unknown environment variable ignored (no flag of this name)", zap.String("variable", k))
	}

	reg := metrics.NewRegistry(d.spec.Name, d.spec.Version)
	if err := reg.Register(settingsGauge(d.flags)); err != nil {
		return fmt.Errorf("register settings: %w", err)
	}
	mux := http.NewServeMux()
	ln, err := net.Listen("tcp", d.o.adminAddr)
	if err != nil {
		return fmt.Errorf("admin listener on %s: %w", d.o.adminAddr, err)
	}
	inst.AdminURL = "http://" + ln.Addr().String()
	admin := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = admin.Serve(ln) }()
	defer admin.Close()
	d.log.Info("admin listener up", zap.String("url", inst.AdminURL))

	maxConns := int32(d.o.dbMaxConns)
	if maxConns == 0 {
		maxConns = 4
		for _, p := range d.pools {
			maxConns += int32(p.workers)
		}
		maxConns = max(maxConns, int32(d.spec.MinDBConns))
	}
	db, err := d.connect(ctx, maxConns, reg, inst)
	if err != nil {
		return err
	}
	if db == nil {
		return nil // stopped while waiting for the database
	}
	defer db.Close()

	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := d.readiness(r.Context(), db); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("/metrics", metrics.Handler(reg))
	if d.o.debugEndpoints {
		// Go's profiler, for an operator asking where a daemon's CPU goes, only when asked
		// for: it hands out the command line (pprof.Cmdline) and heap contents, and lets
		// its caller make the daemon spend time profiling.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		d.log.Warn("debug endpoints on", zap.String("url", inst.AdminURL+"/debug/pprof/"))
	}

	// The listener and heartbeat outlive the services: they stop after the drain.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	var bgDone sync.WaitGroup
	listener := pg.NewListener(db, d.log)
	bgDone.Add(1)
	go func() { defer bgDone.Done(); _ = listener.Run(bg) }()
	defer bgDone.Wait()
	defer stopBG()

	if d.spec.Registry != nil {
		if err := d.spec.Registry.Register(ctx, db, inst); err != nil {
			return fmt.Errorf("register instance: %w", err)
		}
		defer func() {
			c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := d.spec.Registry.Deregister(c, db, inst.ID); err != nil {
				d.log.Warn("deregister instance", zap.Error(err))
			}
		}()
		bgDone.Add(1)
		go func() { defer bgDone.Done(); d.heartbeat(bg, db, inst) }()
	}

	clientTLS, err := certs.Client(d.o.caFile)
	if err != nil {
		return fmt.Errorf("--ca-file: %w", err)
	}
	env := &Env{DB: db, Listener: listener, Log: d.log, Metrics: reg, ClaimMetrics: claim.NewMetrics(reg),
		Instance: inst, Mux: mux, pools: d.pools, electors: map[string]*leader.Elector{}, TLS: clientTLS,
		Ready: func(ctx context.Context) error { return d.readiness(ctx, db) }}
	var electors []*leader.Elector
	leaderMetrics := leader.NewMetrics(reg)
	for _, p := range d.spec.Pools {
		if !p.Singleton {
			continue
		}
		el, err := leader.New(leader.Config{Name: d.spec.Name + "." + p.Name,
			Candidate: leader.Candidate{InstanceID: inst.ID, Host: host, Preferred: d.o.leasePreferred},
			TTL:       d.o.leaseTTL, RenewInterval: d.o.leaseRenew}, db, d.spec.Leases, leaderMetrics, d.log)
		if err != nil {
			return err
		}
		env.electors[p.Name] = el
		electors = append(electors, el)
	}
	var services []service.Service
	if d.spec.Setup != nil {
		if services, err = d.spec.Setup(ctx, env); err != nil {
			return fmt.Errorf("set up: %w", err)
		}
	}
	// Services run until the drain deadline, not until the first signal.
	work, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()
	for _, el := range electors {
		_ = el.Start(work)
	}
	// A daemon that fails to start still gives its leases up.
	resign := func() {
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		for _, el := range electors {
			if err := el.Stop(c); err != nil {
				d.log.Warn("resign", zap.Error(err))
			}
		}
	}
	var resignOnce sync.Once
	defer resignOnce.Do(resign)
	var started []service.Service
	for _, s := range services {
		if err := s.Start(work); err != nil {
			d.stop(started)
			return fmt.Errorf("start %s: %w", s.Name(), err)
		}
		started = append(started, s)
	}
	d.log.Info("daemon started", zap.String("version", d.spec.Version), zap.Any("pools", inst.Pools))

	<-ctx.Done()
	d.mu.Lock()
	d.draining = true
	d.mu.Unlock()
	d.log.Info("draining", zap.Duration("drain_timeout", d.o.drainTimeout))
	// Leases go first, so a backup takes over the singleton work while this instance
	// drains: a step still in flight holds the fence and finishes before the takeover.
	resignOnce.Do(resign)
	if err := d.stop(started); err != nil {
		return err
	}
	d.log.Info("daemon stopped")
	return nil
}

// Session settings every connection of a daemon carries, so that the database's logic
// knows which process made a change (Pollux's subrequest_transition reads them).
const (
	SettingDaemon   = "pollux.daemon"
	SettingInstance = "pollux.instance_id"
	SettingHost     = "pollux.host"
)

// SessionSettings are the settings (SettingDaemon, SettingInstance, SettingHost) of the
// connections of inst.
func SessionSettings(inst Instance) map[string]string {
	return map[string]string{SettingDaemon: inst.Role, SettingInstance: inst.ID, SettingHost: inst.Host}
}

// connect opens the pool, waiting for the database while it is unreachable (a daemon may
// start before PostgreSQL, or during a failover).
func (d *run) connect(ctx context.Context, maxConns int32, reg prometheus.Registerer, inst Instance) (*pg.DB, error) {
	for attempt := 0; ; attempt++ {
		db, err := pg.Open(ctx, pg.Config{DSN: d.o.databaseURL, MaxConns: maxConns, Logger: d.log,
			ApplicationName: fmt.Sprintf("%s %s", d.spec.Name, inst.ID[:8]), Registerer: reg,
			Settings: SessionSettings(inst)})
		if err == nil {
			return db, nil
		}
		if class, _ := pg.Classify(err); class != pg.Transient {
			return nil, err
		}
		delay := pg.Backoff(min(attempt+4, 12))
		d.log.Warn("database unreachable; waiting", zap.Error(err), zap.Duration("retry_in", delay))
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(delay):
		}
	}
}

func (d *run) stop(services []service.Service) error {
	ctx, cancel := context.WithTimeout(context.Background(), d.o.drainTimeout)
	defer cancel()
	var errs []error
	for i := len(services) - 1; i >= 0; i-- {
		if err := services[i].Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", services[i].Name(), err))
		}
	}
	return errors.Join(errs...)
}

func (d *run) heartbeat(ctx context.Context, db *pg.DB, inst Instance) {
	t := time.NewTicker(d.o.heartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := d.spec.Registry.Heartbeat(ctx, db, inst.ID); err != nil && ctx.Err() == nil {
			d.log.Warn("heartbeat failed; registering again", zap.Error(err))
			if err := d.spec.Registry.Register(ctx, db, inst); err != nil && ctx.Err() == nil {
				d.log.Error("register instance again", zap.Error(err))
			}
		}
	}
}

// readiness answers /readyz: false while draining, else the database must answer and
// every Ready check pass. Results are cached for a second so a busy load balancer does not
// load the database.
func (d *run) readiness(ctx context.Context, db *pg.DB) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.draining {
		return errors.New("draining")
	}
	if time.Since(d.ready.at) < time.Second {
		return d.ready.err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	err := db.Pool().Ping(ctx)
	if err != nil {
		err = fmt.Errorf("database: %w", err)
	}
	for _, check := range d.spec.Ready {
		if err != nil {
			break
		}
		err = check(ctx, db)
	}
	d.ready = readiness{at: time.Now(), err: err}
	return err
}

// unexportedFlags are the flags whose values the settings gauge leaves out: a connection
// string may carry a password, and help and version are not settings.
var unexportedFlags = map[string]bool{"database-url": true, "help": true, "version": true}

// settingsGauge exports the value of every flag but those in unexportedFlags as
// pollux_daemon_flag_info{flag, value} (always 1), so that an operator's sanity check
// (pollux-admin check) sees instances of one role that run with different settings.
func settingsGauge(fs *flag.FlagSet) prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pollux_daemon_flag_info",
		Help: "Always 1; its labels are one flag of this process and its value (every flag but --database-url, which may carry a password).",
	}, []string{"flag", "value"})
	fs.VisitAll(func(f *flag.Flag) {
		if !unexportedFlags[f.Name] {
			g.WithLabelValues(f.Name, f.Value.String()).Set(1)
		}
	})
	return g
}
