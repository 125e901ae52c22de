package monitor

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/pollux-storage/pollux/framework/daemon"
	"github.com/pollux-storage/pollux/framework/pg"
)

//go:embed templates/*.html
var templateFiles embed.FS

// HeaderFragment asks a page for its live part alone: what the page's script fetches
// to refresh itself in place.
const HeaderFragment = "X-Pollux-Fragment"

type server struct {
	cfg   Config
	db    *pg.DB
	log   *zap.Logger
	inst  daemon.Instance
	pages map[string]*template.Template
	srv   *http.Server
	probe *http.Client
}

// page is what every template sees: the page's own data and the frame around it.
type page struct {
	Title     string
	Path      string
	Instance  daemon.Instance
	Now       time.Time
	RefreshMS int64
	// RefreshSeconds is RefreshMS for the reload without JavaScript (at least 1).
	RefreshSeconds int64
	Data           any
}

var pageNames = []string{"overview", "queues", "diskservers", "logic", "events", "requests", "request"}

func newServer(cfg Config, env *daemon.Env) (*server, error) {
	s := &server{cfg: cfg, db: env.DB, log: env.Logger("http"), inst: env.Instance, pages: map[string]*template.Template{},
		probe: &http.Client{Timeout: cfg.ProbeTimeout}}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFiles, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("parse page %s: %w", name, err)
		}
		s.pages[name] = t
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.handle("overview", "Instance", s.overview))
	mux.HandleFunc("GET /queues", s.handle("queues", "Queues", s.queues))
	mux.HandleFunc("GET /diskservers", s.handle("diskservers", "Disk servers", s.diskServers))
	mux.HandleFunc("GET /logic", s.handle("logic", "SQL logic", s.logic))
	mux.HandleFunc("GET /events", s.handle("events", "Events", s.events))
	recent := s.handle("requests", "Requests", s.requests)
	mux.HandleFunc("GET /requests", func(w http.ResponseWriter, r *http.Request) {
		// The search box without JavaScript: on to the request's own page.
		if id := strings.TrimSpace(r.URL.Query().Get("id")); id != "" {
			http.Redirect(w, r, "/requests/"+url.PathEscape(id), http.StatusSeeOther)
			return
		}
		recent(w, r)
	})
	mux.HandleFunc("GET /requests/{id}", s.handle("request", "Request", s.request))
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: zap.NewStdLog(s.log)}
	return s, nil
}

// Name implements service.Service.
func (s *server) Name() string { return "http" }

// Start listens and serves; ctx ends at the drain deadline.
func (s *server) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Listen, err)
	}
	s.srv.BaseContext = func(net.Listener) context.Context { return ctx }
	s.log.Info("monitor listening", zap.String("url", "http://"+ln.Addr().String()))
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", zap.Error(err))
		}
	}()
	return nil
}

// Stop lets the pages being rendered finish until ctx ends.
func (s *server) Stop(ctx context.Context) error {
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close()
		return fmt.Errorf("shut down http server: %w", err)
	}
	return nil
}

// userError is a fault of the URL (a malformed id): 4xx with its message.
type userError struct {
	status int
	msg    string
}

func (e *userError) Error() string { return e.msg }

// handle renders page name with what load returns: the whole page, or only its live part
// when the page's own script asks (HeaderFragment).
func (s *server) handle(name, title string, load func(ctx context.Context, r *http.Request) (any, string, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		data, subtitle, err := load(ctx, r)
		if err != nil {
			var ue *userError
			if errors.As(err, &ue) {
				http.Error(w, ue.msg, ue.status)
				return
			}
			s.log.Warn("render page", zap.String("page", name), zap.Error(err))
			http.Error(w, "the monitor could not read the database: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		if subtitle != "" {
			title += " " + subtitle
		}
		p := page{Title: title, Path: r.URL.Path, Instance: s.inst, Now: time.Now().UTC(), RefreshMS: s.cfg.Refresh.Milliseconds(),
			RefreshSeconds: max(1, int64(s.cfg.Refresh.Round(time.Second)/time.Second)), Data: data}
		tmpl := "layout.html"
		if r.Header.Get(HeaderFragment) != "" {
			tmpl = "live"
		}
		var b bytes.Buffer
		if err := s.pages[name].ExecuteTemplate(&b, tmpl, p); err != nil {
			s.log.Error("render page", zap.String("page", name), zap.Error(err))
			http.Error(w, "render page: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(b.Bytes())
	}
}
