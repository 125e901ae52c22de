package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pollux-storage/pollux/framework/pgha"
)

// cmdHA runs a highly available PostgreSQL for development and the failover suite: a
// pg_auto_failover monitor, a primary and a synchronous standby under ./var/ha.
func cmdHA(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("ha", false)
	dir := fs.String("dir", "var/ha", "Directory of the formation.")
	port := fs.Int("port", pgha.DefaultPort, "TCP port of every member (each listens at its own 127.x.y.z address); on start of a new formation only.")
	database := fs.String("database", pgha.DefaultDatabase, "Database created on the data nodes (start of a new formation), or named by dsn.")
	remove := fs.Bool("remove", false, "stop: also delete the formation's directory (data, logs, configuration).")
	events := fs.Int("events", 8, "status: how many of the monitor's last events to show.")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	actions := []string{"start", "stop", "status", "dsn", "kill"}
	if len(pos) == 0 || !slices.Contains(actions, pos[0]) {
		return usageError{"say start, stop, status, dsn or kill NODE|primary"}
	}
	switch want := 1 + btoi(pos[0] == "kill"); {
	case pos[0] == "kill" && len(pos) == 1:
		return usageError{"say which node to kill: ha kill NODE|primary"}
	case len(pos) > want:
		return usageError{fmt.Sprintf("unexpected arguments for ha %s: %s", pos[0], strings.Join(pos[want:], " "))}
	}
	if pos[0] == "start" {
		start := time.Now()
		f, err := pgha.Ensure(ctx, pgha.Options{Dir: *dir, Port: *port, Database: *database, Progress: c.stderr})
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stderr, "pgha: formation in %s ready in %s\n", f.Dir, time.Since(start).Round(100*time.Millisecond))
		fmt.Fprintln(c.stdout, f.DSN(f.Database))
		return nil
	}
	f, err := pgha.Open(*dir)
	if err != nil {
		return fmt.Errorf("%w (`pollux-admin ha start` creates one)", err)
	}
	f.SetProgress(c.stderr)
	switch pos[0] {
	case "dsn":
		fmt.Fprintln(c.stdout, f.DSN(*database))
		return nil
	case "stop":
		if *remove {
			return f.Remove(ctx)
		}
		return f.Stop(ctx)
	case "kill":
		name := pos[1]
		if name == "primary" {
			p, err := f.Primary(ctx)
			if err != nil {
				return fmt.Errorf("which node is primary: %w", err)
			}
			name = p.Name
		}
		pids, err := f.Kill(ctx, name)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "killed %s (pids %s); `pollux-admin ha start` brings it back\n", name, joinInts(pids))
		return nil
	}
	return haStatus(ctx, c, f, *events)
}

// haStatus prints every member, what the monitor says of the data nodes and its last
// events. It fails when a member is down or the nodes are not a primary and a standby.
func haStatus(ctx context.Context, c *cli, f *pgha.Formation, events int) error {
	states, stateErr := f.State(ctx)
	byName := map[string]pgha.NodeState{}
	for _, s := range states {
		byName[s.Name] = s
	}
	var rows [][]string
	down := 0
	for _, m := range f.Members() {
		keeper := "-"
		if pid, ok := f.KeeperPID(m); ok {
			keeper = strconv.Itoa(pid)
		} else {
			down++
		}
		pm := "-"
		if pid, ok := f.PostmasterPID(m); ok {
			pm = strconv.Itoa(pid)
		}
		role, assigned, health, lsn := "monitor", "", "", ""
		if s, ok := byName[m.Name]; ok {
			role, assigned, lsn = s.Reported, s.Assigned, fmt.Sprintf("%d: %s", s.TLI, s.LSN)
			health = "bad"
			if s.Healthy {
				health = "good"
			}
		} else if m.Name != pgha.MonitorName {
			role = "?"
		}
		rows = append(rows, []string{m.Name, m.Addr(), keeper, pm, role, assigned, health, lsn})
	}
	c.table("MEMBER\tADDRESS\tKEEPER\tPOSTGRES\tSTATE\tASSIGNED\tHEALTH\tTLI: LSN", rows)
	fmt.Fprintf(c.stdout, "\nDSN  %s\n", f.DSN(f.Database))
	if stateErr != nil {
		return stateErr
	}
	if events > 0 {
		evs, err := f.Events(ctx, events)
		if err != nil {
			return err
		}
		fmt.Fprintln(c.stdout, "\nlast events of the monitor:")
		for _, e := range evs {
			fmt.Fprintf(c.stdout, "  %s  %-6s %-18s %s\n", e.Time.Format("15:04:05.000"), e.Node, e.Reported+"/"+e.Assigned, e.Description)
		}
	}
	if down > 0 {
		return fmt.Errorf("%d members are not running (`pollux-admin ha start` starts them)", down)
	}
	if _, err := f.Primary(ctx); err != nil {
		return err
	}
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, " ")
}
