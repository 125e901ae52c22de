package e2e_test

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	pmodel "github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/pgcluster"
	"github.com/pollux-storage/pollux/testsuites/e2e"
)

// series is one scraped sample: its labels and value.
type series struct {
	labels map[string]string
	value  float64
}

// scrapeSeries reads a daemon's /metrics as Prometheus would.
func scrapeSeries(t require.TestingT, admin string) map[string][]series {
	resp, err := http.Get("http://" + admin + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	parser := expfmt.NewTextParser(pmodel.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(b)))
	require.NoError(t, err)
	out := map[string][]series{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			s := series{labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.Counter != nil:
				s.value = m.GetCounter().GetValue()
			case m.Gauge != nil:
				s.value = m.GetGauge().GetValue()
			case m.Histogram != nil:
				s.value = float64(m.GetHistogram().GetSampleCount())
			}
			out[name] = append(out[name], s)
		}
	}
	return out
}

// sumOf adds the samples of name whose labels include want.
func sumOf(m map[string][]series, name string, want map[string]string) float64 {
	total := 0.0
	for _, s := range m[name] {
		match := true
		for k, v := range want {
			match = match && s.labels[k] == v
		}
		if match {
			total += s.value
		}
	}
	return total
}

// roleOf is the daemon a process of the harness runs (rhd1 → rhd, disk2 → diskserverd).
func roleOf(name string) string {
	name = strings.TrimRight(name, "0123456789")
	if name == "disk" {
		return "diskserverd"
	}
	return name
}

// TestMetricsOfRealProcesses: what a scrape of each daemon shows after a put and a get —
// rhd's requests by their route (never "other" for the API), the disk servers' bytes and
// transfers by outcome, their file systems present and writable, the job manager's queue
// gauges, and every daemon on the database's schema and logic. Then a real Prometheus
// with the shipped configuration and rules scrapes the instance and answers a query.
func TestMetricsOfRealProcesses(t *testing.T) {
	t.Parallel()
	in, ctx := start(t, e2e.Options{})
	dir := t.TempDir()
	const size = 1<<20 + 3
	src, _ := randomFile(t, dir, "f", size)
	ok(t, in.Run(ctx, nil, "pollux", "cp", src, "/pollux/metrics/f"))
	ok(t, in.Run(ctx, nil, "pollux", "cp", "/pollux/metrics/f", filepath.Join(dir, "back")))
	ok(t, in.Run(ctx, nil, "stager_qry", "-M", "/pollux/metrics/f"))
	procs := in.Procs()

	rhd := scrapeSeries(t, procs["rhd1"].Admin())
	for _, s := range rhd["pollux_rhd_http_requests_total"] {
		require.NotEqual(t, "other", s.labels["route"], "a request counted without its route: %v", s.labels)
	}
	require.GreaterOrEqual(t, sumOf(rhd, "pollux_rhd_http_requests_total", map[string]string{"route": "/v1/requests"}), 2.0, "the two submissions")
	require.Positive(t, sumOf(rhd, "pollux_rhd_http_requests_total", map[string]string{"route": "/v1/files"}), "the query")
	require.Positive(t, sumOf(rhd, "pollux_rhd_http_request_duration_seconds", map[string]string{"route": "/v1/requests"}))

	// Which disk server took each transfer depends on placement, so the two are added. An
	// upload's end is recorded before its client hears of it; a download's only after the
	// last byte went out, so the client may be gone before the mover counted it.
	var disks []map[string][]series
	total := func(name string, labels map[string]string) float64 {
		return sumOf(disks[0], name, labels) + sumOf(disks[1], name, labels)
	}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		disks = []map[string][]series{scrapeSeries(c, procs["disk1"].Admin()), scrapeSeries(c, procs["disk2"].Admin())}
		assert.Equal(c, 1.0, total("pollux_diskserver_transfers_total", map[string]string{"direction": "download"}))
	}, 10*time.Second, 50*time.Millisecond, "the download was not counted")
	require.Equal(t, float64(size), total("pollux_diskserver_transfer_bytes_total", map[string]string{"direction": "upload"}))
	require.Equal(t, float64(size), total("pollux_diskserver_transfer_bytes_total", map[string]string{"direction": "download"}))
	require.Equal(t, 1.0, total("pollux_diskserver_transfers_total", map[string]string{"direction": "upload", "outcome": "ok"}))
	require.Equal(t, 1.0, total("pollux_diskserver_transfers_total", map[string]string{"direction": "download", "outcome": "ok"}))
	require.Equal(t, 0.0, total("pollux_diskserver_transfers_total", map[string]string{"outcome": "failed"}))
	require.Equal(t, 2.0, total("pollux_diskserver_transfer_duration_seconds", nil), "one observation per transfer")
	require.Equal(t, 0.0, total("pollux_diskserver_checksum_failures_total", nil))
	for i, d := range disks {
		name := fmt.Sprintf("disk%d", i+1)
		require.Len(t, d["pollux_diskserver_file_system_writable"], 1, name)
		fs := d["pollux_diskserver_file_system_writable"][0]
		require.Equal(t, name, fs.labels["disk_server"])
		require.Equal(t, 1.0, fs.value, "%s: its data directory takes writes", name)
		require.Equal(t, 1.0, sumOf(d, "pollux_diskserver_file_system_present", nil), name)
		require.Positive(t, sumOf(d, "pollux_diskserver_file_system_capacity_bytes", nil), name)
	}

	jm := scrapeSeries(t, procs["jobmanagerd1"].Admin())
	require.Equal(t, 1.0, sumOf(jm, "pollux_queue_scrape_ok", nil))
	require.Len(t, jm["pollux_queue_oldest_seconds"], 7*5, "every non-final status × every request type")
	require.Equal(t, 0.0, sumOf(jm, "pollux_queue_subrequests", nil), "both requests are over")

	for name, p := range procs {
		m := scrapeSeries(t, p.Admin())
		require.Equal(t, 1.0, sumOf(m, "pollux_logic_matches_files", nil), "%s: the logic installed is its files", name)
		require.Equal(t, sumOf(m, "pollux_schema_binary_version", nil), sumOf(m, "pollux_schema_database_version", nil), "%s: on the database's schema", name)
		require.Len(t, m["pollux_logic_binary_info"], 1, name)
	}

	// A real Prometheus, with the shipped configuration and rules.
	root, err := pgcluster.RepoRoot()
	require.NoError(t, err)
	var targets []e2e.Target
	for name, p := range procs {
		targets = append(targets, e2e.Target{Role: roleOf(name), Addr: p.Admin()})
	}
	prom, err := e2e.StartPrometheus(ctx, filepath.Join(root, "docs", "prometheus"), t.TempDir(), targets, time.Second)
	require.NoError(t, err)
	t.Cleanup(prom.Stop)
	rules, err := prom.Rules(ctx)
	require.NoError(t, err)
	require.Equal(t, 10, rules, "every alerting rule of docs/prometheus/pollux.rules.yml loaded:\n%s", prom.Output())
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		up, err := prom.Query(ctx, `sum by (role) (up{job="pollux"})`)
		if !assert.NoError(c, err) {
			return
		}
		got := map[string]string{}
		for _, s := range up {
			got[s.Metric["role"]] = fmt.Sprint(s.Value[1])
		}
		assert.Equal(c, map[string]string{"rhd": "1", "stagerd": "1", "jobmanagerd": "1", "schedulerd": "1", "diskserverd": "2"}, got)
		bytes, err := prom.Query(ctx, `sum(pollux_diskserver_transfer_bytes_total{direction="upload"})`)
		if assert.NoError(c, err) && assert.Len(c, bytes, 1) {
			assert.Equal(c, fmt.Sprint(size), fmt.Sprint(bytes[0].Value[1]))
		}
	}, time.Minute, 250*time.Millisecond, "prometheus did not scrape the instance:\n%s", prom.Output())
	// The leases have leaders: the rule that would say otherwise finds none.
	leaders, err := prom.Query(ctx, `max by (lease) (pollux_leader_is_leader)`)
	require.NoError(t, err)
	require.Len(t, leaders, 2, "jobmanagerd.expire and jobmanagerd.archive")
	for _, l := range leaders {
		require.Equal(t, "1", fmt.Sprint(l.Value[1]), "%v", l.Metric)
	}
}
