package mover

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"
)

// Server serves a Handler on a listener as a service: it stops taking connections on
// Stop and lets transfers in flight finish until the drain deadline.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	log  *zap.Logger
	done chan struct{}
}

// NewServer serves h on ln once started. The listener is opened by the caller so that a
// busy port is reported before the daemon starts, and port 0 works in tests.
func NewServer(ln net.Listener, h http.Handler, log *zap.Logger) *Server {
	if log == nil {
		log = zap.NewNop()
	}
	return &Server{ln: ln, log: log, done: make(chan struct{}), srv: &http.Server{
		Handler: h,
		// Only the header is bounded: a body may rightly take as long as the policy's transfer_seconds,
		// which the transfer's watcher enforces.
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          zap.NewStdLog(log),
	}}
}

// Name names the service.
func (s *Server) Name() string { return "mover" }

// Start serves in the background.
func (s *Server) Start(context.Context) error {
	s.log.Info("mover listening", zap.String("addr", s.ln.Addr().String()))
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("mover listener failed", zap.Error(err))
		}
	}()
	return nil
}

// Stop waits for transfers in flight until ctx ends, then closes their connections.
func (s *Server) Stop(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
		err = fmt.Errorf("stop mover: transfers still running at the drain deadline were cut: %w", err)
	}
	<-s.done
	return err
}
