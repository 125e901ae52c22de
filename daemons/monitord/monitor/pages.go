package monitor

import (
	"context"
	"fmt"
	"html/template"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pollux-storage/pollux/daemons/internal/instance"
	"github.com/pollux-storage/pollux/framework/hotpatch"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
	"github.com/pollux-storage/pollux/schema"
)

// instanceWindow is how far back the overview lists instances: long enough to show one
// that died a while ago as stale, short enough not to list every restart of the week.
const instanceWindow = 3600

// Instance is one daemon instance as the overview shows it.
type Instance struct {
	model.DaemonInstanceListRow
	// State is live, stale (heartbeat older than --stale-after) or stopped.
	State string
	// Ready is what its /readyz answered: "ready", the reason it is not, or "" when it
	// was not asked (stale or stopped).
	Ready string
	// MasterOf and BackupOf are the leases it holds and those it stands by for: DUCC's
	// "reliable: master" and "reliable: backup". One instance may be both, of two roles.
	MasterOf []string
	BackupOf []string
}

// Lease is one singleton role with its master and backups.
type Lease struct {
	model.LeaderLeaseListRow
	// Master is the leader's instance as listed (nil when none is known).
	Master *Instance
	Led    bool
}

type overviewData struct {
	Instances         []Instance
	Leases            []Lease
	Live, Stale, Down int
	Leaderless        int
}

func (s *server) overview(ctx context.Context, _ *http.Request) (any, string, error) {
	var d overviewData
	var rows []model.DaemonInstanceListRow
	var leases []model.LeaderLeaseListRow
	err := s.db.Snapshot(ctx, "read instances", func(q pg.Querier) (err error) {
		if rows, err = model.DaemonInstanceList(ctx, q, instanceWindow); err != nil {
			return err
		}
		// Backups heard from within three stale windows: a candidate renews with its tries.
		leases, err = model.LeaderLeaseList(ctx, q, int32(3*s.cfg.StaleAfter/time.Second)+1)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	byID := map[string]int{}
	for _, r := range rows {
		in := Instance{DaemonInstanceListRow: r}
		switch {
		case r.StoppedAt != nil:
			in.State = "stopped"
			d.Down++
		case r.HeartbeatAgeSeconds > s.cfg.StaleAfter.Seconds():
			in.State = "stale"
			d.Stale++
		default:
			in.State = "live"
			d.Live++
		}
		byID[r.ID] = len(d.Instances)
		d.Instances = append(d.Instances, in)
	}
	s.probeReady(ctx, d.Instances)
	for _, l := range leases {
		lease := Lease{LeaderLeaseListRow: l, Led: l.HolderID != nil && l.ExpiresInSeconds > 0}
		if !lease.Led {
			d.Leaderless++
		}
		if l.HolderID != nil {
			if i, ok := byID[*l.HolderID]; ok && lease.Led {
				in := &d.Instances[i]
				in.MasterOf = append(in.MasterOf, l.Name)
				lease.Master = in
			}
		}
		for _, b := range l.Backups {
			// "host shortid (preferred)", as leader_lease_list names a candidate.
			f := strings.Fields(b)
			if len(f) < 2 {
				continue
			}
			for i := range d.Instances {
				in := &d.Instances[i]
				if in.Host == f[0] && strings.HasPrefix(in.ID, f[1]) {
					in.BackupOf = append(in.BackupOf, l.Name)
				}
			}
		}
		d.Leases = append(d.Leases, lease)
	}
	return d, "", nil
}

// probeReady asks each live instance's admin listener for /readyz, all at once, each
// within --probe-timeout: readiness is what the load balancers see, which the database
// does not record.
func (s *server) probeReady(ctx context.Context, ins []Instance) {
	var wg sync.WaitGroup
	for i := range ins {
		in := &ins[i]
		if in.State != "live" || in.AdminURL == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			in.Ready = s.readyOf(ctx, in.AdminURL)
		}()
	}
	wg.Wait()
}

func (s *server) readyOf(ctx context.Context, adminURL string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(adminURL, "/")+"/readyz", nil)
	if err != nil {
		return "bad admin url"
	}
	resp, err := s.probe.Do(req)
	if err != nil {
		// Also what an admin listener on another host's loopback looks like from here.
		return "no answer from " + adminURL
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return "ready"
	}
	var b [200]byte
	n, _ := resp.Body.Read(b[:])
	if why := strings.TrimSpace(string(b[:n])); why != "" {
		return "not ready: " + why
	}
	return "not ready: " + resp.Status
}

type queuesData struct {
	Queues []model.MonitorQueuesRow
	Rates  []model.MonitorClaimRatesRow
	Window time.Duration
	Total  int64
}

// rateWindow is the window of the claim rates.
const rateWindow = 5 * time.Minute

func (s *server) queues(ctx context.Context, _ *http.Request) (any, string, error) {
	d := queuesData{Window: rateWindow}
	err := s.db.Snapshot(ctx, "read queues", func(q pg.Querier) (err error) {
		if d.Queues, err = model.MonitorQueues(ctx, q); err != nil {
			return err
		}
		d.Rates, err = model.MonitorClaimRates(ctx, q, int32(rateWindow/time.Second))
		return err
	})
	for _, q := range d.Queues {
		d.Total += q.Subrequests
	}
	return d, "", err
}

// DiskServer is one disk server with its file systems.
type DiskServer struct {
	model.MonitorDiskServersRow
	FileSystems []model.MonitorDiskServersRow
	Capacity    int64
	Free        int64
}

func (s *server) diskServers(ctx context.Context, _ *http.Request) (any, string, error) {
	var rows []model.MonitorDiskServersRow
	err := s.db.Snapshot(ctx, "read disk servers", func(q pg.Querier) (err error) {
		rows, err = model.MonitorDiskServers(ctx, q)
		return err
	})
	var out []DiskServer
	for _, r := range rows {
		if len(out) == 0 || out[len(out)-1].DiskServer != r.DiskServer {
			out = append(out, DiskServer{MonitorDiskServersRow: r})
		}
		if r.MountPoint != nil {
			ds := &out[len(out)-1]
			ds.FileSystems = append(ds.FileSystems, r)
			ds.Capacity += deref(r.CapacityBytes)
			ds.Free += deref(r.FreeBytes)
		}
	}
	return out, "", err
}

type logicData struct {
	Status     hotpatch.Status
	History    []hotpatch.Installed
	Migrations string // "" when at head, else why not
	Files      int
}

func (s *server) logic(ctx context.Context, _ *http.Request) (any, string, error) {
	files, err := hotpatch.Load(schema.Logic())
	if err != nil {
		return nil, "", err
	}
	d := logicData{Files: len(files.Files)}
	// Drift against the files this binary carries: the same check readiness makes, through
	// functions, as monitord's role reads no table.
	if d.Status, _, err = instance.LogicStatus(ctx, s.db, files); err != nil {
		return nil, "", err
	}
	var rows []model.LogicHistoryRow
	if err := s.db.DoIdempotent(ctx, "read logic history", func(q pg.Querier) (err error) {
		rows, err = model.LogicHistory(ctx, q, 20)
		return err
	}); err != nil {
		return nil, "", err
	}
	for _, r := range rows {
		in := hotpatch.Installed{Version: r.Version, Checksum: r.Checksum, AppliedAt: r.AppliedAt, AppliedBy: r.AppliedBy, Note: r.Note}
		d.History = append(d.History, in)
		if cur := d.Status.Installed; cur != nil && cur.Version == in.Version {
			cur.AppliedAt, cur.AppliedBy, cur.Note = in.AppliedAt, in.AppliedBy, in.Note
		}
	}
	if err := instance.MigrationsAtHead(ctx, s.db); err != nil {
		d.Migrations = err.Error()
	}
	return d, "", nil
}

func (s *server) events(ctx context.Context, _ *http.Request) (any, string, error) {
	var ev []model.SystemEvent
	err := s.db.DoIdempotent(ctx, "read events", func(q pg.Querier) (err error) {
		ev, err = model.SystemEventList(ctx, q, 100)
		return err
	})
	return ev, "", err
}

func (s *server) requests(ctx context.Context, _ *http.Request) (any, string, error) {
	var rows []model.MonitorRecentRequestsRow
	err := s.db.DoIdempotent(ctx, "read recent requests", func(q pg.Querier) (err error) {
		rows, err = model.MonitorRecentRequests(ctx, q, 50)
		return err
	})
	return rows, "", err
}

// Story is one subrequest's part of a request's story.
type Story struct {
	ID          int64
	Path        string
	Transitions []model.RequestHistoryRow
	Wait        *model.RequestWaitsRow
}

type requestData struct {
	ID      string
	Status  string
	Type    string
	Owner   string
	Stories []Story
	Found   bool
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func (s *server) request(ctx context.Context, r *http.Request) (any, string, error) {
	id := r.PathValue("id")
	if !uuidRE.MatchString(id) {
		return nil, "", &userError{status: http.StatusBadRequest, msg: fmt.Sprintf("%q is not a request id: give the UUID a client printed", id)}
	}
	id = strings.ToLower(id)
	d := requestData{ID: id}
	var hist []model.RequestHistoryRow
	var waits []model.RequestWaitsRow
	var reqs []model.Request
	err := s.db.Snapshot(ctx, "read request story", func(q pg.Querier) (err error) {
		if reqs, err = model.RequestGet(ctx, q, id); err != nil {
			return err
		}
		if hist, err = model.RequestHistory(ctx, q, id); err != nil {
			return err
		}
		waits, err = model.RequestWaits(ctx, q, id)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	if len(reqs) > 0 {
		d.Found, d.Status, d.Type, d.Owner = true, string(reqs[0].Status), string(reqs[0].Type), reqs[0].UserName
	} else if len(hist) > 0 {
		d.Found, d.Status = true, "archived"
	}
	stories := map[int64]*Story{}
	var order []int64
	for _, h := range hist {
		st, ok := stories[h.SubrequestID]
		if !ok {
			st = &Story{ID: h.SubrequestID, Path: h.Path}
			stories[h.SubrequestID] = st
			order = append(order, h.SubrequestID)
		}
		st.Transitions = append(st.Transitions, h)
	}
	for i := range waits {
		w := waits[i]
		st, ok := stories[w.SubrequestID]
		if !ok {
			st = &Story{ID: w.SubrequestID, Path: w.Path}
			stories[w.SubrequestID] = st
			order = append(order, w.SubrequestID)
		}
		st.Wait = &w
	}
	sort.Slice(order, func(i, j int) bool { return order[i] < order[j] })
	for _, id := range order {
		d.Stories = append(d.Stories, *stories[id])
	}
	return d, id, nil
}

func deref[T any](v *T) T {
	var zero T
	if v == nil {
		return zero
	}
	return *v
}

var funcs = template.FuncMap{
	"age": func(seconds float64) string {
		return (time.Duration(seconds * float64(time.Second))).Round(100 * time.Millisecond).String()
	},
	"since": func(t time.Time) string { return time.Since(t).Round(time.Second).String() },
	"when":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000") },
	"whenp": func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05")
	},
	"short": func(id string) string { return id[:min(8, len(id))] },
	"shortp": func(id *string) string {
		if id == nil {
			return ""
		}
		return (*id)[:min(8, len(*id))]
	},
	"str": func(s *string) string { return deref(s) },
	"num": func(n *int64) int64 { return deref(n) },
	"bytes": func(n int64) string {
		const unit = 1024
		if n < unit {
			return fmt.Sprintf("%d B", n)
		}
		div, exp := int64(unit), 0
		for m := n / unit; m >= unit; m /= unit {
			div *= unit
			exp++
		}
		return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
	},
	"bytesp": func(n *int64) string {
		if n == nil {
			return ""
		}
		return fmt.Sprintf("%.1f GiB", float64(*n)/(1<<30))
	},
	"pct": func(free, capacity int64) string {
		if capacity <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f%%", 100*float64(free)/float64(capacity))
	},
	"pctp": func(free, capacity *int64) string {
		if capacity == nil || free == nil || *capacity <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f%%", 100*float64(*free)/float64(*capacity))
	},
	"rate":      func(f float64) string { return fmt.Sprintf("%.1f", f) },
	"join":      strings.Join,
	"hasPrefix": strings.HasPrefix,
}
