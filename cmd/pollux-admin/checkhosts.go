package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/pollux-storage/pollux/framework/hotpatch"
	"github.com/pollux-storage/pollux/framework/migrate"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
	"github.com/pollux-storage/pollux/schema"
)

// What the sanity check learns from the daemons' hosts rather than from the database:
// which schema and logic each binary was built for, whether each is ready, each host's
// clock, what each disk server sees of its file systems, and the settings of each
// instance. Each judge returns findings, one line per check.

// hostClock is one host's clock as an HTTP answer's Date header gave it (to the second),
// with the local times the request went out and the answer came back.
type hostClock struct {
	date, sent, received time.Time
}

// offset is how far the host's clock is ahead of this one's, and the uncertainty of that:
// the Date header is truncated to the second, and the answer was written some time
// between sent and received.
func (h hostClock) offset() (offset, uncertainty time.Duration, ok bool) {
	if h.date.IsZero() {
		return 0, 0, false
	}
	mid := h.sent.Add(h.received.Sub(h.sent) / 2)
	return h.date.Add(500 * time.Millisecond).Sub(mid), 500*time.Millisecond + h.received.Sub(h.sent)/2, true
}

// Clock skew thresholds. Leases and heartbeats are judged by the database's clock alone,
// so skew does not break failover; but rhd checks a JWT's expiry with its host's clock
// (with a minute's leeway), and logs of hosts apart by seconds no longer line up.
const (
	skewWarn = 2 * time.Second
	skewFail = 60 * time.Second
)

// readyz asks an instance whether it is ready; nil when it is.
func readyz(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return fmt.Errorf("%s", strings.TrimSpace(string(b)))
}

// databaseView is what the database says about itself, read after the scrape.
type databaseView struct {
	schema      migrate.Versions
	logic       *hotpatch.Installed // nil: no logic installed
	fileSystems []model.FileSystemCheckListRow
	// offset is how far the database's clock is ahead of this host's, and its uncertainty.
	offset, uncertainty time.Duration
}

func readDatabaseView(ctx context.Context, db *pg.DB) (databaseView, error) {
	var v databaseView
	var err error
	if v.schema, err = migrate.Current(ctx, db, schema.Migrations()); err != nil {
		return v, err
	}
	st, err := hotpatch.New(db, model.LogicBundleTable).Status(ctx, hotpatch.Bundle{Files: map[string]string{}})
	if err != nil {
		return v, err
	}
	v.logic = st.Installed
	if err := db.DoIdempotent(ctx, "check: file systems", func(q pg.Querier) (err error) {
		v.fileSystems, err = model.FileSystemCheckList(ctx, q)
		return err
	}); err != nil {
		return v, err
	}
	// The shortest of a few round trips measures the clock best.
	best := time.Duration(math.MaxInt64)
	for range 3 {
		var at time.Time
		sent := time.Now()
		if err := db.DoIdempotent(ctx, "check: clock", func(q pg.Querier) (err error) {
			at, err = model.SystemCheckClock(ctx, q)
			return err
		}); err != nil {
			return v, err
		}
		received := time.Now()
		if rtt := received.Sub(sent); rtt < best {
			best = rtt
			v.offset, v.uncertainty = at.Sub(sent.Add(rtt/2)), rtt/2
		}
	}
	return v, nil
}

// who names an instance in a finding.
func who(d model.DaemonInstanceListRow) string {
	return fmt.Sprintf("%s %s on %s", d.Role, d.ID[:min(8, len(d.ID))], d.Host)
}

// judgeVersions: every instance built for the database's schema and the installed logic,
// and ready.
func judgeVersions(all []scraped, v databaseView) []finding {
	var schemaOff, logicOff, notReady []string
	n := 0
	for _, s := range all {
		if s.err != nil {
			continue
		}
		n++
		if b, ok := s.value("pollux_schema_binary_version"); ok && uint(b) != v.schema.Schema {
			schemaOff = append(schemaOff, fmt.Sprintf("%s (built for schema %d)", who(s.d), int(b)))
		}
		if m, ok := s.value("pollux_logic_matches_files"); ok && m != 1 {
			sum := ""
			if l := s.metrics["pollux_logic_binary_info"]; len(l) > 0 {
				sum = l[0].label("checksum")
			}
			logicOff = append(logicOff, fmt.Sprintf("%s (its files %s)", who(s.d), short(sum)))
		}
		if s.notReady != nil {
			notReady = append(notReady, fmt.Sprintf("%s: %v", who(s.d), s.notReady))
		}
	}
	installed := "no logic installed"
	if v.logic != nil {
		installed = fmt.Sprintf("logic version %d (%s)", v.logic.Version, short(v.logic.Checksum))
	}
	var out []finding
	switch {
	case len(schemaOff) > 0:
		out = append(out, finding{"daemons", "schema", "fail", fmt.Sprintf("the database is at schema %d; not built for it: %s. They take no work: upgrade them, or run `pollux-admin migrate` with the new binaries",
			v.schema.Schema, strings.Join(schemaOff, "; "))})
	default:
		out = append(out, finding{"daemons", "schema", "ok", fmt.Sprintf("%d instance(s) answering, every one built for schema %d", n, v.schema.Schema)})
	}
	switch {
	case len(logicOff) > 0:
		out = append(out, finding{"daemons", "logic", "warn", fmt.Sprintf("installed: %s, which is not the files of: %s. Intended (a hot patch from a directory)? Otherwise `pollux-admin logic status` and `logic apply`",
			installed, strings.Join(logicOff, "; "))})
	default:
		out = append(out, finding{"daemons", "logic", "ok", fmt.Sprintf("%s: the files of every instance answering", installed)})
	}
	if len(notReady) > 0 {
		out = append(out, finding{"daemons", "readiness", "warn", "not ready (they take no work; the reason says what to do): " + strings.Join(notReady, "; ")})
	} else {
		out = append(out, finding{"daemons", "readiness", "ok", fmt.Sprintf("%d instance(s) ready", n)})
	}
	return out
}

// judgeClocks: each host's clock against the database's, and this host's own.
func judgeClocks(all []scraped, v databaseView) []finding {
	type skew struct {
		host        string
		skew, slack time.Duration
	}
	// This host's skew is minus the database's offset.
	skews := []skew{{"this host (pollux-admin)", -v.offset, v.uncertainty}}
	seen := map[string]bool{}
	for _, s := range all {
		off, unc, ok := s.clock.offset()
		if s.err != nil || !ok || seen[s.d.Host] {
			continue
		}
		seen[s.d.Host] = true
		skews = append(skews, skew{s.d.Host, off - v.offset, unc + v.uncertainty})
	}
	var out []finding
	worst := time.Duration(0)
	for _, k := range skews {
		// Only what exceeds the measurement's uncertainty counts.
		excess := max(k.skew.Abs()-k.slack, 0)
		worst = max(worst, k.skew.Abs())
		var state string
		switch {
		case excess > skewFail:
			state = "fail"
		case excess > skewWarn:
			state = "warn"
		default:
			continue
		}
		ahead := "ahead of"
		if k.skew < 0 {
			ahead = "behind"
		}
		out = append(out, finding{"clock", k.host, state, fmt.Sprintf("%s the database's clock by %s (±%s): synchronise it (chrony or systemd-timesyncd); JWT expiry is checked with rhd's clock, and logs no longer line up",
			ahead, k.skew.Abs().Round(time.Second), k.slack.Round(10*time.Millisecond))})
	}
	if len(out) == 0 {
		out = append(out, finding{"clock", "skew", "ok", fmt.Sprintf("%d host(s) within %s of the database's clock (largest measured %s)", len(skews), skewWarn, worst.Round(10*time.Millisecond))})
	}
	return out
}

// Free space may move between the heartbeat that reported it and the scrape by uploads
// and deletions; beyond this much, the report and the file system disagree.
func freeTolerance(capacity int64) int64 { return max(capacity/50, 256<<20) }

// judgeFileSystems: every file system of an available disk server present, writable and
// with the space the database was told, as its disk server sees it now.
func judgeFileSystems(all []scraped, v databaseView) []finding {
	type fsView struct{ present, writable, free, capacity *float64 }
	seen := map[[2]string]*fsView{} // disk server, mount point → what it reports now
	servers := map[string]bool{}
	for _, s := range all {
		if s.err != nil || s.d.Role != "diskserverd" {
			continue
		}
		for metric, field := range map[string]func(*fsView) **float64{
			"pollux_diskserver_file_system_present":        func(f *fsView) **float64 { return &f.present },
			"pollux_diskserver_file_system_writable":       func(f *fsView) **float64 { return &f.writable },
			"pollux_diskserver_file_system_free_bytes":     func(f *fsView) **float64 { return &f.free },
			"pollux_diskserver_file_system_capacity_bytes": func(f *fsView) **float64 { return &f.capacity },
		} {
			for _, m := range s.metrics[metric] {
				k := [2]string{m.label("disk_server"), m.label("mount_point")}
				servers[k[0]] = true
				if seen[k] == nil {
					seen[k] = &fsView{}
				}
				val := m.value
				*field(seen[k]) = &val
			}
		}
	}
	var out []finding
	checked, unseen := 0, []string{}
	for _, f := range v.fileSystems {
		if !f.Available {
			continue // the disk servers check says why it is not
		}
		name := f.DiskServer + ":" + f.MountPoint
		got := seen[[2]string{f.DiskServer, f.MountPoint}]
		if got == nil {
			if servers[f.DiskServer] {
				out = append(out, finding{"file systems", name, "fail", "registered in the database but not served by its disk server any more: restart the disk server with its --data-dir, or take the file system out"})
			} else {
				unseen = append(unseen, name)
			}
			continue
		}
		checked++
		switch {
		case got.present == nil || *got.present != 1:
			out = append(out, finding{"file systems", name, "fail", "its data directory is missing on the disk server: mount it again and restart the disk server"})
		case got.writable == nil || *got.writable != 1:
			out = append(out, finding{"file systems", name, "fail", "does not take writes (read-only, full or failing): uploads placed there fail; repair it or stop the disk server"})
		case got.free == nil:
			out = append(out, finding{"file systems", name, "warn", "statfs fails on the disk server: it reports the file system full"})
		default:
			if diff := int64(*got.free) - f.FreeBytes; diff > freeTolerance(f.CapacityBytes) || -diff > freeTolerance(f.CapacityBytes) {
				out = append(out, finding{"file systems", name, "warn", fmt.Sprintf("the database was told %s free %.0f s ago, the disk server sees %s: heartbeats do not get through (see the disk server's log)",
					gib(f.FreeBytes), f.HeartbeatAgeSeconds, gib(int64(*got.free)))})
			}
		}
	}
	if len(unseen) > 0 {
		out = append(out, finding{"file systems", "unverified", "warn", "their disk server's /metrics did not answer, so presence, writes and space are unchecked: " + strings.Join(unseen, ", ")})
	}
	if len(out) == 0 {
		out = append(out, finding{"file systems", "present", "ok", fmt.Sprintf("%d file system(s) of available disk servers present, writable, with the space they report", checked)})
	}
	return out
}

func gib(b int64) string { return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30)) }

func short(sum string) string { return sum[:min(12, len(sum))] }

// perInstanceFlags differ between instances of one role by design: where each listens,
// its name and data, its host, and which one is preferred. --leader-lease-ttl is compared
// by the leaders check.
var perInstanceFlags = map[string]bool{
	"admin-addr": true, "host": true, "listen": true, "name": true, "data-dir": true, "url": true,
	"leader-preferred": true, "tls-cert-file": true, "tls-key-file": true, "leader-lease-ttl": true,
}

// judgeSettings: flags that differ between the instances of one role (from
// pollux_daemon_flag_info), each with its values and where.
func judgeSettings(all []scraped) []finding {
	// role → flag → value → hosts
	byRole := map[string]map[string]map[string][]string{}
	instances := map[string]int{}
	for _, s := range all {
		if s.err != nil || len(s.metrics["pollux_daemon_flag_info"]) == 0 {
			continue
		}
		instances[s.d.Role]++
		if byRole[s.d.Role] == nil {
			byRole[s.d.Role] = map[string]map[string][]string{}
		}
		for _, m := range s.metrics["pollux_daemon_flag_info"] {
			flag := m.label("flag")
			if perInstanceFlags[flag] {
				continue
			}
			if byRole[s.d.Role][flag] == nil {
				byRole[s.d.Role][flag] = map[string][]string{}
			}
			v := m.label("value")
			byRole[s.d.Role][flag][v] = append(byRole[s.d.Role][flag][v], s.d.Host)
		}
	}
	var out []finding
	roles := make([]string, 0, len(byRole))
	for r := range byRole {
		roles = append(roles, r)
	}
	slices.Sort(roles)
	compared := 0
	for _, role := range roles {
		var diffs []string
		flags := make([]string, 0, len(byRole[role]))
		for f := range byRole[role] {
			flags = append(flags, f)
		}
		slices.Sort(flags)
		for _, flag := range flags {
			values := byRole[role][flag]
			count := 0
			for _, hosts := range values {
				count += len(hosts)
			}
			// A flag some instances lack is a difference too (another binary).
			if len(values) < 2 && count == instances[role] {
				continue
			}
			var parts []string
			for v, hosts := range values {
				parts = append(parts, fmt.Sprintf("%q on %s", v, strings.Join(hosts, ", ")))
			}
			if count < instances[role] {
				parts = append(parts, fmt.Sprintf("absent on %d instance(s)", instances[role]-count))
			}
			slices.Sort(parts)
			diffs = append(diffs, "--"+flag+": "+strings.Join(parts, "; "))
		}
		if instances[role] > 1 {
			compared++
		}
		if len(diffs) > 0 {
			out = append(out, finding{"settings", role, "warn", "instances disagree: " + strings.Join(diffs, " | ") + ": make their /etc/pollux/" + role + ".env agree"})
		}
	}
	if len(out) == 0 {
		out = append(out, finding{"settings", "flags", "ok", fmt.Sprintf("the instances of each of %d role(s) with more than one run with the same settings", compared)})
	}
	return out
}

// value is the first sample of an unlabelled metric.
func (s scraped) value(name string) (float64, bool) {
	if l := s.metrics[name]; len(l) > 0 {
		return l[0].value, true
	}
	return 0, false
}
