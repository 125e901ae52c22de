package requesthandler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	stdlog "log"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/framework/certs"
	"github.com/pollux-storage/pollux/framework/daemon"
	"github.com/pollux-storage/pollux/framework/logging"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/uuid"
	"github.com/pollux-storage/pollux/model"
)

// server is rhd's one service: the clients' HTTP listener and the long-poll fan-out.
type server struct {
	cfg    Config
	db     *pg.DB
	ready  func(context.Context) error
	log    *zap.Logger
	tokens *tokens
	// jwt is nil unless --jwt-issuer is given.
	jwt   *verifier
	hub   *hub
	polls *pollLimit
	admit *admission
	srv   *http.Server

	// draining is closed by Stop: long polls answer at once, so the drain is not held up
	// by clients that are merely waiting.
	draining chan struct{}
	stopHub  context.CancelFunc
	hubDone  chan struct{}

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	views    *prometheus.CounterVec
}

// readyRoute is the pattern of the health check on the clients' port.
const readyRoute = "GET " + api.PathReady

// The buffer of the change subscription. The fan-out drains it with a map lookup per
// notification, so it only fills under a burst far beyond anything a database commits;
// a notification dropped then costs its waiters one --max-wait at worst.
const subscriptionBuffer = 4096

func newServer(cfg Config, env *daemon.Env) (*server, error) {
	log := env.Log
	var tok *tokens
	if cfg.TokensFile != "" {
		var err error
		if tok, err = loadTokens(cfg.TokensFile, log); err != nil {
			return nil, err
		}
	}
	var jv *verifier
	if cfg.JWT.Issuer != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		jv = newVerifier(ctx, cfg.JWT, log)
		cancel()
	}
	s := &server{
		cfg: cfg, db: env.DB, ready: env.Ready, log: log, tokens: tok, jwt: jv,
		hub:      newHub(env.Listener.Subscribe(changedChannel, subscriptionBuffer), uuid.New()),
		polls:    newPollLimit(cfg.MaxPollsPerUser),
		admit:    newAdmission(cfg.MaxDBCalls, cfg.AdmissionWait, cfg.RetryAfter),
		draining: make(chan struct{}),
		hubDone:  make(chan struct{}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollux_rhd_http_requests_total",
			Help: "HTTP requests answered, by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pollux_rhd_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request (long polls included), by route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route"}),
		views: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollux_rhd_request_views_total",
			Help: "Requests shown to clients, by source: read from the database, or carried by the change's notification (an answer showing a READY transfer of a request without a transfer key takes both: its token, which the notification does not carry, is read).",
		}, []string{"source"}),
	}
	waiting := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pollux_rhd_long_polls",
		Help: "Long polls waiting for a request to change.",
	}, func() float64 { return float64(s.hub.count()) })
	inFlight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pollux_rhd_db_calls_in_flight",
		Help: "Calls holding one of the --max-db-calls database slots.",
	}, func() float64 { return float64(s.admit.inFlight()) })
	for _, c := range []prometheus.Collector{s.requests, s.duration, s.views, waiting, inFlight, s.admit.refused} {
		if err := env.Metrics.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	tlsConfig, err := certs.Server(cfg.TLSCertFile, cfg.TLSKeyFile)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/requests", s.endpoint(http.MethodPost, s.submit))
	mux.Handle("/v1/requests/{id}", s.endpoint(http.MethodGet, s.getRequest))
	mux.Handle("/v1/requests/{id}/history", s.endpoint(http.MethodGet, s.getHistory))
	mux.Handle("/v1/files", s.endpoint(http.MethodGet, s.getFile))
	mux.Handle("/v1/quotas", s.endpoint(http.MethodGet, s.getQuotas))
	mux.HandleFunc(readyRoute, s.readyz)
	mux.Handle("/", s.endpoint("", func(http.ResponseWriter, *http.Request, *call) *httpError {
		return userError(model.ErrorKindNotFound, "no such endpoint: the API is POST /v1/requests, GET /v1/requests/{id}, GET /v1/files?path=..., GET /v1/quotas")
	}))
	s.srv = &http.Server{
		Handler:           s.logged(mux),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// A long poll writes nothing until it answers.
		WriteTimeout:   cfg.MaxWait + 45*time.Second,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       errorLog(log),
		TLSConfig:      tlsConfig,
	}
	return s, nil
}

// Name implements service.Service.
func (s *server) Name() string { return "http" }

// Start confirms that notifications arrive, then listens and serves. ctx ends at the
// drain deadline; handlers still running then are cancelled with it.
func (s *server) Start(ctx context.Context) error {
	hubCtx, stop := context.WithCancel(ctx)
	s.stopHub = stop
	go func() { defer close(s.hubDone); s.hub.run(hubCtx) }()
	s.confirmListening(ctx)

	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		stop()
		<-s.hubDone
		s.hub.sub.Unsubscribe()
		return fmt.Errorf("listen on %s: %w", s.cfg.Listen, err)
	}
	s.srv.BaseContext = func(net.Listener) context.Context { return ctx }
	scheme := "https"
	if s.srv.TLSConfig == nil {
		scheme = "http"
	}
	s.log.Info("request handler listening", zap.String("addr", ln.Addr().String()), zap.String("scheme", scheme),
		zap.Duration("max_wait", s.cfg.MaxWait), zap.Int64("max_body_bytes", s.cfg.MaxBodyBytes))
	switch {
	case scheme == "https":
	case certs.Loopback(ln.Addr()):
		s.log.Info("plain HTTP on loopback: tokens are readable by this machine's users only; give --tls-cert-file and --tls-key-file to serve HTTPS")
	default:
		s.log.Warn("plain HTTP on a network address: bearer tokens and data travel in clear; give --tls-cert-file and --tls-key-file to serve HTTPS",
			zap.String("addr", ln.Addr().String()))
	}
	go func() {
		serve := s.srv.Serve
		if scheme == "https" {
			// The certificate is in TLSConfig already.
			serve = func(ln net.Listener) error { return s.srv.ServeTLS(ln, "", "") }
		}
		if err := serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", zap.Error(err))
		}
	}()
	return nil
}

// confirmListening sends this process a notification of its own until it comes back. The
// framework's listener may still be adding the channel when Start runs, and a long poll
// that began before the LISTEN would miss the change it waits for.
func (s *server) confirmListening(ctx context.Context) {
	deadline := time.After(10 * time.Second)
	for {
		// request_refresh of an id no request has updates nothing and notifies every rhd,
		// which ignore an id nobody waits on.
		err := s.db.DoIdempotent(ctx, "probe listener", func(q pg.Querier) error { return model.RequestRefresh(ctx, q, s.hub.probe) })
		if err != nil {
			s.log.Warn("cannot confirm that change notifications arrive; long polls may wait their full time", zap.Error(err))
			return
		}
		select {
		case <-s.hub.probeSeen:
			return
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			s.log.Warn("no change notification arrived within 10s; long polls may wait their full time")
			return
		case <-ctx.Done():
			return
		}
	}
}

// Stop answers the waiting long polls at once, then lets requests in flight finish until
// ctx ends, when their connections are closed and their transactions roll back.
func (s *server) Stop(ctx context.Context) error {
	close(s.draining)
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
		err = fmt.Errorf("shut down http server: %w", err)
	}
	s.stopHub()
	<-s.hubDone
	s.hub.sub.Unsubscribe()
	return err
}

// call is what one HTTP request's handling learns for its log line.
type call struct {
	user string
	// grant is what the caller's credential lets it touch (on top of the namespace
	// permissions, which the logic checks).
	grant     grant
	requestID string
	err       *httpError
	// patience bounds each piece of the call's database work when the client said how
	// long it waits (api.HeaderTimeout); zero when it did not say.
	patience time.Duration
}

type handler func(w http.ResponseWriter, r *http.Request, c *call) *httpError

type callKey struct{}

// endpoint checks the method (any when method is empty) and the bearer token, then runs h
// and writes its error, if any, as an api.ErrorBody.
func (s *server) endpoint(method string, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := r.Context().Value(callKey{}).(*call)
		if c == nil {
			c = &call{}
		}
		err := s.authorise(r, c)
		if err == nil {
			err = c.readTimeout(r)
		}
		if err == nil && method != "" && r.Method != method {
			w.Header().Set("Allow", method)
			err = &httpError{status: http.StatusMethodNotAllowed, kind: model.ErrorKindInvalid,
				message: fmt.Sprintf("method %s not allowed on %s: use %s", r.Method, r.URL.Path, method)}
		}
		if err == nil {
			err = h(w, r, c)
		}
		if err != nil {
			c.err = err
			if err.status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="pollux"`)
			}
			if err.retryAfter > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(err.retryAfter.Seconds()))))
			}
			writeJSON(w, err.status, err.body())
		}
	})
}

func (s *server) authorise(r *http.Request, c *call) *httpError {
	h := r.Header.Get("Authorization")
	if h == "" {
		return unauthenticated("no Authorization header: send \"Authorization: Bearer TOKEN\" (the clients take TOKEN from POLLUX_TOKEN)")
	}
	scheme, token, _ := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return unauthenticated("the Authorization header is not \"Bearer TOKEN\"")
	}
	// A static token is looked up first: a hash and a map read, where a JWT costs a
	// signature check.
	if s.tokens != nil {
		if user := s.tokens.user(token); user != "" {
			c.user, c.grant = user, grant{user: user}
			return nil
		}
	}
	if looksLikeJWT(token) {
		if s.jwt == nil {
			return unauthenticated("the token is a JWT, and this request handler accepts none: its operator has configured no token issuer (--jwt-issuer)")
		}
		g, herr := s.jwt.verify(r.Context(), token)
		if herr != nil {
			return herr
		}
		c.user, c.grant = g.user, g
		return nil
	}
	return unauthenticated("unknown token: check POLLUX_TOKEN, or ask the operator to add it to rhd's tokens file")
}

// readTimeout reads api.HeaderTimeout, when the client sent it.
func (c *call) readTimeout(r *http.Request) *httpError {
	v := r.Header.Get(api.HeaderTimeout)
	if v == "" {
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return invalid("header %s: %q is not a positive duration: send how long you wait for an answer beyond the long poll's wait, e.g. 14s", api.HeaderTimeout, v)
	}
	c.patience = patience(d)
	return nil
}

// readyz answers a load balancer's health check on the clients' port (api.PathReady) as
// the admin listener's /readyz does, without the reason: that may name internals, and
// this port faces the clients (the admin listener's /readyz says why).
func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if s.ready != nil {
		if err := s.ready(r.Context()); err != nil {
			http.Error(w, "not ready (the admin listener's /readyz says why)", http.StatusServiceUnavailable)
			return
		}
	}
	fmt.Fprintln(w, "ready")
}

// statusWriter remembers the status a handler wrote, for the log line and metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// logged writes one line per request handled and counts it.
func (s *server) logged(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		c := &call{}
		sw := &statusWriter{ResponseWriter: w}
		// The mux records the route on the request it serves: this copy, not r.
		served := r.WithContext(context.WithValue(r.Context(), callKey{}, c))
		next.ServeHTTP(sw, served)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		elapsed := time.Since(start)
		route := served.Pattern
		if route == "" {
			route = "other"
		}
		s.requests.WithLabelValues(route, strconv.Itoa(sw.status)).Inc()
		s.duration.WithLabelValues(route).Observe(elapsed.Seconds())
		if route == readyRoute {
			// A load balancer asks every few seconds: the counter above tells how it went,
			// a line each time would bury the requests.
			return
		}

		fields := []zap.Field{zap.String("method", r.Method), zap.String("path", r.URL.Path),
			zap.Int("status", sw.status), zap.Duration("duration", elapsed), zap.String("remote", r.RemoteAddr)}
		if c.requestID != "" {
			fields = append(fields, zap.String(logging.KeyRequestID, c.requestID))
		}
		if c.user != "" {
			fields = append(fields, zap.String("user", c.user))
		}
		if c.grant.issuer != "" {
			// Which credential spoke: a JWT's issuer (a static token's user has none).
			fields = append(fields, zap.String("token_issuer", c.grant.issuer))
		}
		level := zap.InfoLevel
		if c.err != nil {
			fields = append(fields, zap.String("kind", string(c.err.kind)), zap.String("reason", c.err.message))
			if c.err.cause != nil {
				fields = append(fields, zap.Error(c.err.cause))
			}
			if c.err.status >= 500 {
				level = zap.ErrorLevel
			}
		}
		s.log.Log(level, "http request", fields...)
	})
}

// writeJSON answers v with status. Nothing a client reads from rhd may be cached: it
// holds one-time tokens and changes under the client's feet.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v) // the client went away; its log line says so by its duration
}

// errorLog carries net/http's own complaints (bad TLS handshakes, accept errors) into the
// daemon's log at warn level.
func errorLog(log *zap.Logger) *stdlog.Logger {
	l, err := zap.NewStdLogAt(log, zap.WarnLevel)
	if err != nil {
		return zap.NewStdLog(log)
	}
	return l
}
