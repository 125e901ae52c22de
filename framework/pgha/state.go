package pgha

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// NodeState is a data node as the monitor sees it (pgautofailover.current_state).
type NodeState struct {
	Name     string `json:"name"`
	Addr     string `json:"addr"`
	NodeID   int64  `json:"node_id"`
	Reported string `json:"reported_state"` // what its keeper last reported
	Assigned string `json:"assigned_state"` // what the monitor wants it to reach
	Healthy  bool   `json:"healthy"`        // the monitor's last health check succeeded
	TLI      int    `json:"timeline"`
	LSN      string `json:"lsn"`
}

// Settled reports whether the node is in the state the monitor assigned it.
func (s NodeState) Settled() bool { return s.Reported == s.Assigned }

// Writable reports whether the node is a primary that takes writes (wait_primary: without
// a standby in sync yet; single: the only node).
func (s NodeState) Writable() bool {
	return s.Settled() && slices.Contains([]string{"primary", "wait_primary", "single"}, s.Reported)
}

func (s NodeState) String() string {
	st := s.Reported
	if !s.Settled() {
		st += " → " + s.Assigned
	}
	return fmt.Sprintf("%s %s", s.Name, st)
}

// Event is one line of the monitor's story of the formation (pgautofailover.last_events).
type Event struct {
	Time        time.Time `json:"time"`
	Node        string    `json:"node"`
	Reported    string    `json:"reported_state"`
	Assigned    string    `json:"assigned_state"`
	Description string    `json:"description"`
}

// monitorQuery runs fn on a fresh connection to the monitor.
func (f *Formation) monitorQuery(ctx context.Context, fn func(*pgx.Conn) error) error {
	return query(ctx, f.MonitorDSN(), fn)
}

func query(ctx context.Context, dsn string, fn func(*pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return fn(conn)
}

// State returns the data nodes as the monitor sees them, in node id order.
func (f *Formation) State(ctx context.Context) ([]NodeState, error) {
	var out []NodeState
	err := f.monitorQuery(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, `select nodename, nodehost, nodeport, node_id, current_group_state::text,
			assigned_group_state::text, health, reported_tli, reported_lsn::text
			from pgautofailover.current_state('default')`)
		if err != nil {
			return err
		}
		for rows.Next() {
			var s NodeState
			var host string
			var port, health int
			if err := rows.Scan(&s.Name, &host, &port, &s.NodeID, &s.Reported, &s.Assigned, &health, &s.TLI, &s.LSN); err != nil {
				return err
			}
			s.Addr = Member{Host: host, Port: port}.Addr()
			s.Healthy = health == 1
			out = append(out, s)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("read the formation's state from the monitor at %s: %w", f.Monitor.Addr(), err)
	}
	return out, nil
}

// Events returns the monitor's last n events, oldest first.
func (f *Formation) Events(ctx context.Context, n int) ([]Event, error) {
	var out []Event
	err := f.monitorQuery(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, `select eventtime, nodename, reportedstate::text, goalstate::text, description
			from pgautofailover.last_events(formation_id => 'default', count => $1::int)`, n)
		if err != nil {
			return err
		}
		for rows.Next() {
			var e Event
			if err := rows.Scan(&e.Time, &e.Node, &e.Reported, &e.Assigned, &e.Description); err != nil {
				return err
			}
			out = append(out, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("read the monitor's events: %w", err)
	}
	return out, nil
}

// Primary returns the node that takes writes now, or an error describing every node when
// none does (during a failover).
func (f *Formation) Primary(ctx context.Context) (Member, error) {
	states, err := f.State(ctx)
	if err != nil {
		return Member{}, err
	}
	var writable []NodeState
	for _, s := range states {
		if s.Writable() {
			writable = append(writable, s)
		}
	}
	if len(writable) != 1 {
		return Member{}, fmt.Errorf("%d primaries: %s", len(writable), describe(states))
	}
	return f.Member(writable[0].Name)
}

func describe(states []NodeState) string {
	if len(states) == 0 {
		return "the monitor knows no node"
	}
	parts := make([]string, len(states))
	for i, s := range states {
		parts[i] = s.String()
	}
	return strings.Join(parts, ", ")
}

// poll calls check every 100 ms until it returns true or an error it calls final, or ctx
// ends; the error of the last check says why it was not done yet.
func poll(ctx context.Context, what string, check func() (bool, error)) error {
	var last error
	for {
		done, err := check()
		var fe finalError
		switch {
		case errors.As(err, &fe):
			return fe.err
		case err == nil && done:
			return nil
		case err != nil:
			last = err
		}
		select {
		case <-ctx.Done():
			if last == nil {
				return fmt.Errorf("%s: %w", what, ctx.Err())
			}
			return fmt.Errorf("%s: %w (last: %v)", what, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// finalError stops a poll at once.
type finalError struct{ err error }

func (e finalError) Error() string { return e.err.Error() }

// WaitSync waits until one node is primary, every other one is its secondary, and each
// secondary streams as a synchronous standby (so that every commit acknowledged from then
// on is on every node). It returns the primary.
func (f *Formation) WaitSync(ctx context.Context) (Member, error) {
	var primary Member
	err := poll(ctx, "wait for the standby to be in sync", func() (bool, error) {
		if err := f.keepersAlive(); err != nil {
			return false, finalError{err}
		}
		states, err := f.State(ctx)
		if err != nil {
			return false, err
		}
		p := -1
		for i, s := range states {
			switch {
			case !s.Settled():
				return false, fmt.Errorf("not settled: %s", describe(states))
			case s.Reported == "primary" && p < 0:
				p = i
			case s.Reported != "secondary":
				return false, fmt.Errorf("not a primary and its secondaries: %s", describe(states))
			}
		}
		if p < 0 || len(states) != len(f.Nodes) {
			return false, fmt.Errorf("not a primary and its secondaries: %s", describe(states))
		}
		m, err := f.Member(states[p].Name)
		if err != nil {
			return false, err
		}
		var sync int
		var names string
		err = query(ctx, f.NodeDSN(m, "postgres"), func(c *pgx.Conn) error {
			return c.QueryRow(ctx, `select count(*) filter (where state = 'streaming' and sync_state in ('sync', 'quorum')),
				current_setting('synchronous_standby_names') from pg_stat_replication`).Scan(&sync, &names)
		})
		if err != nil {
			return false, fmt.Errorf("ask %s about its standbys: %w", m.Name, err)
		}
		if sync != len(f.Nodes)-1 || names == "" {
			return false, fmt.Errorf("%s has %d synchronous standbys streaming (synchronous_standby_names = %q)", m.Name, sync, names)
		}
		primary = m
		return true, nil
	})
	return primary, err
}

// WaitPrimary waits until a node other than old is primary and takes writes: the monitor
// says it is, and a connection to it finds it out of recovery and not read-only. It
// returns that node.
func (f *Formation) WaitPrimary(ctx context.Context, old string) (Member, error) {
	var primary Member
	err := poll(ctx, "wait for a new primary", func() (bool, error) {
		states, err := f.State(ctx)
		if err != nil {
			return false, err
		}
		for _, s := range states {
			if s.Name == old || !s.Writable() {
				continue
			}
			m, err := f.Member(s.Name)
			if err != nil {
				return false, err
			}
			var recovery bool
			var readOnly string
			if err := query(ctx, f.NodeDSN(m, "postgres"), func(c *pgx.Conn) error {
				return c.QueryRow(ctx, "select pg_is_in_recovery(), current_setting('transaction_read_only')").Scan(&recovery, &readOnly)
			}); err != nil {
				return false, fmt.Errorf("ask %s: %w", m.Name, err)
			}
			if recovery || readOnly != "off" {
				return false, fmt.Errorf("%s: in recovery %t, read-only %s", m.Name, recovery, readOnly)
			}
			primary = m
			return true, nil
		}
		return false, fmt.Errorf("no new primary yet: %s", describe(states))
	})
	return primary, err
}

// waitMonitor waits until the monitor answers.
func (f *Formation) waitMonitor(ctx context.Context, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	return poll(ctx, "wait for the monitor", func() (bool, error) {
		if _, ok := f.KeeperPID(f.Monitor); !ok {
			return false, finalError{fmt.Errorf("the monitor's keeper exited; last lines of %s:\n%s", f.LogFile(f.Monitor), tailFile(f.LogFile(f.Monitor), 15))}
		}
		err := f.monitorQuery(ctx, func(c *pgx.Conn) error {
			_, err := c.Exec(ctx, "select from pgautofailover.formation limit 1")
			return err
		})
		return err == nil, err
	})
}

// waitState waits until the monitor says node is settled in state.
func (f *Formation) waitState(ctx context.Context, node, state string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	return poll(ctx, fmt.Sprintf("wait for %s to be %s", node, state), func() (bool, error) {
		if err := f.keepersAlive(); err != nil {
			return false, finalError{err}
		}
		states, err := f.State(ctx)
		if err != nil {
			return false, err
		}
		for _, s := range states {
			if s.Name == node && s.Settled() && s.Reported == state {
				return true, nil
			}
		}
		return false, fmt.Errorf("%s", describe(states))
	})
}

// keepersAlive fails when a member that was started has no keeper any more: waiting for it
// would be in vain.
func (f *Formation) keepersAlive() error {
	for _, m := range f.Members() {
		if readPID(f.pidFile(m)) == 0 {
			continue // never started
		}
		if pid, ok := f.KeeperPID(m); !ok {
			return fmt.Errorf("the keeper of %s (pid %d) is not running%s; last lines of %s:\n%s", m.Name, pid, keeperExits.how(pid),
				f.LogFile(m), tailFile(f.LogFile(m), 15))
		}
	}
	return nil
}
