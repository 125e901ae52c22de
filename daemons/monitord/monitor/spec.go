// Package monitor is monitord, Pollux's web monitor: plain HTML pages, readable in a
// terminal browser, that show the whole instance from the database alone — every daemon
// instance with its role, host, version, heartbeat and readiness, who leads each singleton
// role and who stands by ("reliable: master" / "backup", in DUCC's words), the queues and
// the rates they are worked off at, the disk servers and their file systems, the SQL
// logic and its drift, the event journal, and a request's whole story. A little
// JavaScript refreshes each page in place; without it a page reloads itself.
//
// It keeps nothing between calls: any number may run behind one name, and it changes
// nothing in the database (each page is one read-only snapshot), so it needs no lease.
package monitor

import (
	"context"
	"errors"
	"flag"
	"time"

	"github.com/pollux-storage/pollux/daemons/internal/instance"
	"github.com/pollux-storage/pollux/framework/daemon"
	"github.com/pollux-storage/pollux/framework/service"
)

// DefaultListen is where monitord serves its pages unless told otherwise.
const DefaultListen = "127.0.0.1:9090"

// Config is monitord's own command line.
type Config struct {
	// Listen is the address of the pages' HTTP listener.
	Listen string
	// Refresh is how often a page refreshes itself.
	Refresh time.Duration
	// StaleAfter is the heartbeat age past which an instance is shown stale.
	StaleAfter time.Duration
	// ProbeTimeout bounds the /readyz probe of each instance's admin listener.
	ProbeTimeout time.Duration
}

const description = `monitord serves Pollux's web monitor on --listen (plain HTML, any browser, a
terminal one too):

  /                the instance at a glance: daemons, roles, hosts, versions, heartbeats,
                   readiness, and for singleton roles the master and its backups
  /queues          subrequests by status and service class, the oldest waiting, claim rates
  /diskservers     disk servers and file systems: state, free space, load, transfers
  /logic           the SQL logic: installed version, who applied it when, drift
  /events          the latest system_event rows
  /requests        the requests changed last; /requests/{id} a request's whole story

It reads only the database (and each live instance's /readyz) and keeps no state: run any
number behind one name. Pages carry no credentials and show no tokens, but they name users
and paths: keep --listen on a network that operators only reach.`

// Spec declares monitord. It returns a new declaration each time: one per daemon run.
func Spec(version string) daemon.Spec {
	cfg := Config{}
	return daemon.Spec{
		Name:        "monitord",
		Summary:     "the web monitor: the whole instance at a glance, and each request's story",
		Description: description,
		Version:     version,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&cfg.Listen, "listen", DefaultListen, "Address of the monitor's HTTP listener (host:port; port 0: any free port, logged).")
			fs.DurationVar(&cfg.Refresh, "refresh", 2*time.Second, "How often an open page refreshes itself.")
			fs.DurationVar(&cfg.StaleAfter, "stale-after", 15*time.Second, "Heartbeat age past which an instance is shown stale (keep it above the daemons' --heartbeat-interval).")
			fs.DurationVar(&cfg.ProbeTimeout, "probe-timeout", 800*time.Millisecond, "How long the probe of an instance's /readyz may take before it is shown unanswered.")
		},
		Registry:   instance.Registry{},
		MinDBConns: 4,
		Ready:      instance.Ready,
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
	case c.Listen == "":
		return errors.New("--listen is empty: give host:port")
	case c.Refresh < 100*time.Millisecond:
		return errors.New("--refresh must be at least 100ms")
	case c.StaleAfter <= 0:
		return errors.New("--stale-after must be positive")
	case c.ProbeTimeout <= 0:
		return errors.New("--probe-timeout must be positive")
	}
	return nil
}
