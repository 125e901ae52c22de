package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	pmodel "github.com/prometheus/common/model"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
)

// finding is one line of the sanity check.
type finding struct {
	Area   string `json:"area"`
	Item   string `json:"item"`
	State  string `json:"state"` // ok, warn, fail
	Detail string `json:"detail"`
}

// cmdCheck is the operator's sanity check (HTCondor's HA sanity-check script): the
// database's findings (system_check), then what only the daemons themselves can tell:
// whether each one answers on its admin listener, believes what the leases say, runs
// with the same lease settings and flags as its peers, is built for the database's schema
// and logic and is ready, how far its host's clock is from the database's, and what each
// disk server sees of its file systems. Exit 1 when something failed (or, with --strict,
// only warned).
func cmdCheck(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("check", true)
	strict := fs.Bool("strict", false, "Exit 1 on warnings too, not only on failures.")
	scrapeTimeout := fs.Duration("scrape-timeout", 2*time.Second, "How long each daemon's /metrics may take to answer.")
	if _, err := c.parse(fs, args); err != nil {
		return err
	}
	db, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	var found []finding
	var daemons []model.DaemonInstanceListRow
	var leases []model.LeaderLeaseListRow
	if err := db.Snapshot(ctx, "check", func(q pg.Querier) error {
		rows, err := model.SystemCheck(ctx, q)
		if err != nil {
			return err
		}
		for _, r := range rows {
			found = append(found, finding{r.Area, r.Item, r.State, r.Detail})
		}
		if daemons, err = model.DaemonInstanceList(ctx, q, 30); err != nil {
			return err
		}
		leases, err = model.LeaderLeaseList(ctx, q, 30)
		return err
	}); err != nil {
		return err
	}
	// The leases again after the scrape: a belief is stale only if neither reading of the
	// lease, before or after it, agrees with it (leadership may change in between).
	scraped := scrapeDaemons(ctx, daemons, *scrapeTimeout)
	var after []model.LeaderLeaseListRow
	if err := db.DoIdempotent(ctx, "check: leases", func(q pg.Querier) (err error) {
		after, err = model.LeaderLeaseList(ctx, q, 30)
		return err
	}); err != nil {
		return err
	}
	found = append(found, judgeDaemons(scraped, leases, after)...)
	view, err := readDatabaseView(ctx, db)
	if err != nil {
		return err
	}
	found = append(found, judgeVersions(scraped, view)...)
	found = append(found, judgeClocks(scraped, view)...)
	found = append(found, judgeFileSystems(scraped, view)...)
	found = append(found, judgeSettings(scraped)...)

	if c.jsonOut {
		if err := c.printJSON(found); err != nil {
			return err
		}
	} else {
		var rows [][]string
		for _, f := range found {
			rows = append(rows, []string{strings.ToUpper(f.State), f.Area, f.Item, f.Detail})
		}
		c.table("STATE\tAREA\tITEM\tDETAIL", rows)
	}
	fails, warns := 0, 0
	for _, f := range found {
		switch f.State {
		case "fail":
			fails++
		case "warn":
			warns++
		}
	}
	switch {
	case fails > 0:
		return fmt.Errorf("check: %d failure(s), %d warning(s)", fails, warns)
	case warns > 0 && *strict:
		return fmt.Errorf("check: %d warning(s) (--strict)", warns)
	}
	return nil
}

// scraped is what one running instance's /metrics and /readyz said.
type scraped struct {
	d       model.DaemonInstanceListRow
	metrics map[string][]sample
	err     error
	// clock is the instance's host's clock as its answer's Date header gave it.
	clock hostClock
	// notReady is why /readyz refused (nil: ready, or not asked because /metrics failed).
	notReady error
}

// scrapeDaemons reads every running instance's /metrics and /readyz.
func scrapeDaemons(ctx context.Context, daemons []model.DaemonInstanceListRow, timeout time.Duration) []scraped {
	client := &http.Client{Timeout: timeout}
	var out []scraped
	for _, d := range daemons {
		if d.StoppedAt != nil || d.HeartbeatAgeSeconds > 30 || d.AdminURL == "" {
			continue
		}
		s := scraped{d: d}
		s.metrics, s.clock, s.err = scrapeMetrics(ctx, client, d.AdminURL+"/metrics")
		if s.err == nil {
			s.notReady = readyz(ctx, client, d.AdminURL+"/readyz")
		}
		out = append(out, s)
	}
	return out
}

// judgeDaemons reports instances that do not answer, instances that believe they lead a
// lease the database gives to another (they would be fenced: a split brain, caught), and
// lease settings that differ between the instances standing for one lease.
func judgeDaemons(all []scraped, before, after []model.LeaderLeaseListRow) []finding {
	holders := func(list []model.LeaderLeaseListRow) map[string]string {
		h := map[string]string{}
		for _, l := range list {
			if l.HolderID != nil && l.ExpiresInSeconds > 0 {
				h[l.Name] = *l.HolderID
			}
		}
		return h
	}
	was, is := holders(before), holders(after)
	var out []finding
	ttls := map[string]map[string][]string{} // lease → ttl → hosts
	var unreachable []string
	for _, s := range all {
		who := fmt.Sprintf("%s %s on %s", s.d.Role, s.d.ID[:8], s.d.Host)
		if s.err != nil {
			unreachable = append(unreachable, fmt.Sprintf("%s (%v)", who, s.err))
			continue
		}
		for _, m := range s.metrics["pollux_leader_is_leader"] {
			lease := m.label("lease")
			if m.value == 1 && was[lease] != s.d.ID && is[lease] != s.d.ID {
				out = append(out, finding{"leaders", lease, "warn", fmt.Sprintf(
					"%s believes it leads, but the lease is held by %s: its writes are refused by the fence until it notices", who, orNobody(is[lease]))})
			}
		}
		for _, m := range s.metrics["pollux_leader_lease_ttl_seconds"] {
			lease := m.label("lease")
			if ttls[lease] == nil {
				ttls[lease] = map[string][]string{}
			}
			k := fmt.Sprint(time.Duration(m.value * float64(time.Second)))
			ttls[lease][k] = append(ttls[lease][k], s.d.Host)
		}
	}
	if len(unreachable) > 0 {
		out = append(out, finding{"daemons", "admin listeners", "warn",
			"not answering /metrics (dead since its last heartbeat, or on another host's loopback): " + strings.Join(unreachable, "; ")})
	} else {
		out = append(out, finding{"daemons", "admin listeners", "ok", "every running instance answered /metrics"})
	}
	names := make([]string, 0, len(ttls))
	for l := range ttls {
		names = append(names, l)
	}
	slices.Sort(names)
	for _, lease := range names {
		if len(ttls[lease]) > 1 {
			var parts []string
			for ttl, hosts := range ttls[lease] {
				parts = append(parts, fmt.Sprintf("%s on %s", ttl, strings.Join(hosts, ", ")))
			}
			slices.Sort(parts)
			out = append(out, finding{"leaders", lease, "warn",
				"instances disagree on --leader-lease-ttl (" + strings.Join(parts, "; ") + "): failover time depends on which one leads"})
		}
	}
	return out
}

func orNobody(id string) string {
	if id == "" {
		return "nobody"
	}
	return id
}

type sample struct {
	labels map[string]string
	value  float64
}

func (s sample) label(name string) string { return s.labels[name] }

// scrapeMetrics reads gauges and counters from a Prometheus text endpoint, and the
// serving host's clock from the answer's Date header.
func scrapeMetrics(ctx context.Context, client *http.Client, url string) (map[string][]sample, hostClock, error) {
	var clock hostClock
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, clock, err
	}
	clock.sent = time.Now()
	resp, err := client.Do(req)
	clock.received = time.Now()
	if err != nil {
		return nil, clock, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, clock, fmt.Errorf("%s answered %s", url, resp.Status)
	}
	if d, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
		clock.date = d
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, clock, err
	}
	parser := expfmt.NewTextParser(pmodel.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, clock, fmt.Errorf("parse %s: %w", url, err)
	}
	out := map[string][]sample{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			s := sample{labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.Gauge != nil:
				s.value = m.GetGauge().GetValue()
			case m.Counter != nil:
				s.value = m.GetCounter().GetValue()
			default:
				continue
			}
			out[name] = append(out[name], s)
		}
	}
	return out, clock, nil
}
