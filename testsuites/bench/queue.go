package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pollux-storage/pollux/cmd/client"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
	"github.com/pollux-storage/pollux/testsuites/e2e"
)

// A long queue must not slow the claims either: each claim reads the front of a partial
// index, so the stager's claim with a million puts queued behind ten costs what it costs
// with a thousand, and a PUT's round trip does not feel a million other puts waiting for a
// disk server of another service class. This file measures both, in the shape of issue
// 15's figure: claim latency and the PUT round trip with 1,000 and with 1,000,000 waiting.

// QueueDatabase and QueueRequestDatabase are the scratch databases of the queue benchmark.
const (
	QueueDatabase        = "pollux_bench_queue"
	QueueRequestDatabase = "pollux_bench_queue_requests"
)

// queueClass is the service class the waiting puts are for: it has no disk server, so they
// wait (WAITSCHED) for one, as a queue waits for a resource.
const queueClass = "bench-waiting"

// QueueProbes are the claims a long queue lies in front of or behind.
func QueueProbes() []Probe {
	return []Probe{
		{Name: "stagerd put (puts queued)", SQL: "select * from subrequest_claim('put', 10)"},
		{Name: "stagerd get", SQL: "select * from subrequest_claim('get', 10)"},
		// The epoch moves first, as a capacity change would, so every waiter may be tried.
		{Name: "schedulerd place (waiters queued)", SQL: "select capacity_changed(); select * from subrequest_claim_waitsched(100)"},
	}
}

// QueueReport is each probe's median latency at each queue length, the indexes their
// plans read, and the PUT round trip with each queue.
type QueueReport struct {
	Sizes   []int
	Probes  []Probe
	Latency map[string][]time.Duration // probe name → one per size
	Indexes map[string][]string        // probe name → the subrequest indexes its plans read at the largest size
	Walks   map[string][]string        // probe name → reads of history or a whole queue, if any
	Load    []string
	// RoundTrip is pollux cp's p50 with each queue length waiting (same Sizes), measured
	// on a whole instance; RoundTripLoad the load average of each.
	RoundTrip     []Latency
	RoundTripLoad []string
}

// FillQueue adds n puts queued for the stager (START, in the default class) and n puts
// waiting for a disk server of queueClass (WAITSCHED, tried at the current capacity epoch),
// ten to a request, written as the logic leaves them, then ANALYZEs. stagerQueue false
// leaves the stager's queue alone (a running stager would drain it).
func FillQueue(ctx context.Context, db *pg.DB, n int, stagerQueue bool) error {
	const perRequest = 10
	const chunk = 250_000
	for done := 0; done < n; done += chunk {
		rows := min(chunk, n-done)
		err := db.Tx(ctx, "fill queue", func(q pg.Querier) error {
			// Replica mode skips the state machine's triggers (a new row may not start as
			// WAITSCHED) and the NOTIFYs, for this transaction alone; it needs a superuser.
			if _, err := q.Exec(ctx, "set local session_replication_role = replica"); err != nil {
				return err
			}
			if stagerQueue {
				if _, err := q.Exec(ctx, `
					with r as (
						insert into request (id, type, service_class_id, user_name)
						select gen_random_uuid(), 'PUT', (select id from service_class where name = 'default'), 'queue'
						from generate_series(1, $1::int) g returning id)
					insert into subrequest (request_id, type, path, status)
					select r.id, 'PUT', '/pollux/queue/' || r.id || '/' || k, 'START' from r, generate_series(1, $2::int) k`,
					(rows+perRequest-1)/perRequest, perRequest); err != nil {
					return err
				}
			}
			_, err := q.Exec(ctx, `
				with r as (
					insert into request (id, type, service_class_id, user_name)
					select gen_random_uuid(), 'PUT', (select id from service_class where name = $3), 'queue'
					from generate_series(1, $1::int) g returning id)
				insert into subrequest (request_id, type, path, status, placement_epoch, info)
				select r.id, 'PUT', '/pollux/waiting/' || r.id || '/' || k, 'WAITSCHED', (select epoch from capacity_epoch where id = 1),
				       'queued, no disk server of its service class is available'
				from r, generate_series(1, $2::int) k`, (rows+perRequest-1)/perRequest, perRequest, queueClass)
			return err
		})
		if err != nil {
			return fmt.Errorf("fill queue: %w", err)
		}
	}
	return db.Do(ctx, "analyze", func(q pg.Querier) error {
		_, err := q.Exec(ctx, "analyze request; analyze subrequest")
		return err
	})
}

// RunQueue times the claims with each queue length of sizes (ascending) on a database of
// its own, then runs a whole instance on another and times pollux cp with as many puts
// waiting for a disk server. o gives the checkout, server and scratch space (RequestOptions'
// Root, AdminDSN, Dir); roundTrips is the number of cp measured at each size.
func RunQueue(ctx context.Context, o RequestOptions, sizes []int, roundTrips int, install func(ctx context.Context, dsn string) error,
	progress io.Writer) (QueueReport, error) {
	rep := QueueReport{Sizes: sizes, Probes: QueueProbes(), Latency: map[string][]time.Duration{},
		Indexes: map[string][]string{}, Walks: map[string][]string{}}
	if err := rep.claims(ctx, o.AdminDSN, install, progress); err != nil {
		return rep, err
	}
	if roundTrips > 0 {
		if err := rep.roundTrips(ctx, o, roundTrips, progress); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func (rep *QueueReport) claims(ctx context.Context, adminDSN string, install func(ctx context.Context, dsn string) error, progress io.Writer) error {
	if err := recreateDatabase(ctx, adminDSN, QueueDatabase); err != nil {
		return err
	}
	defer dropDatabase(context.WithoutCancel(ctx), adminDSN, QueueDatabase)
	dsn, err := pg.WithDatabase(adminDSN, QueueDatabase)
	if err != nil {
		return err
	}
	if err := install(ctx, dsn); err != nil {
		return fmt.Errorf("install the schema: %w", err)
	}
	db, err := pg.Open(ctx, pg.Config{DSN: dsn, MaxConns: 2, ApplicationName: "pollux-bench queue"})
	if err != nil {
		return err
	}
	defer db.Close()
	// The history fixture's live queue (ten of each kind) is the front of every queue: the
	// fill goes behind it, so each probe does the same work at every length.
	f, err := MakeHistoryFixture(ctx, db)
	if err != nil {
		return fmt.Errorf("queue fixture: %w", err)
	}
	if _, err := db.Pool().Exec(ctx, "insert into service_class (name) values ($1) on conflict do nothing", queueClass); err != nil {
		return err
	}
	live, err := LiveIndexes(ctx, db)
	if err != nil {
		return err
	}
	have := 0
	for _, size := range rep.Sizes {
		fmt.Fprintf(progress, "pollux-bench: queueing up to %d puts for the stager and %d waiting for a disk server\n", size, size)
		if err := FillQueue(ctx, db, size-have, true); err != nil {
			return err
		}
		have = size
		if _, err := model.DiskServerHeartbeat(ctx, db.Pool(), f.DiskServer, 0); err != nil {
			return err
		}
		rep.Load = append(rep.Load, loadAverage())
		for _, p := range rep.Probes {
			d, err := TimeProbe(ctx, db, p, 21)
			if err != nil {
				return err
			}
			rep.Latency[p.Name] = append(rep.Latency[p.Name], d)
		}
	}
	for _, p := range rep.Probes {
		pls, err := Plans(ctx, dsn, p)
		if err != nil {
			return err
		}
		for _, pl := range pls {
			rep.Indexes[p.Name] = appendIndexes(rep.Indexes[p.Name], pl.Root)
			rep.Walks[p.Name] = append(rep.Walks[p.Name], pl.Root.WalksHistory(live)...)
		}
	}
	return nil
}

// Indexes are the subrequest indexes the plan reads, once each.
func (n PlanNode) Indexes() []string { return appendIndexes(nil, n) }

// appendIndexes adds the subrequest indexes the plan reads, once each.
func appendIndexes(out []string, n PlanNode) []string {
	if n.Relation == "subrequest" && n.Index != "" && !slices.Contains(out, n.Index) {
		out = append(out, n.Index)
	}
	for _, c := range n.Plans {
		out = appendIndexes(out, c)
	}
	return out
}

func (rep *QueueReport) roundTrips(ctx context.Context, o RequestOptions, n int, progress io.Writer) error {
	bin := filepath.Join(o.Dir, "bin")
	if err := e2e.Build(o.Root, bin); err != nil {
		return err
	}
	dsn, err := instanceDatabase(ctx, o.AdminDSN, bin, QueueRequestDatabase)
	if err != nil {
		return err
	}
	defer dropDatabase(context.WithoutCancel(ctx), o.AdminDSN, QueueRequestDatabase)
	db, err := pg.Open(ctx, pg.Config{DSN: dsn, MaxConns: 2, ApplicationName: "pollux-bench queue"})
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.Pool().Exec(ctx, "insert into service_class (name) values ($1) on conflict do nothing", queueClass); err != nil {
		return err
	}
	fmt.Fprintln(progress, "pollux-bench: starting an instance for the PUT round trip behind waiting puts")
	in, err := e2e.Start(ctx, e2e.Options{Bin: bin, DSN: dsn, Dir: filepath.Join(o.Dir, "queue-instance")})
	if err != nil {
		return err
	}
	defer in.Stop()
	c := client.New(client.Config{Hosts: []string{in.StageHost()}, Token: in.Token, ServiceClass: "default"})
	defer c.Close()
	b := &reqBench{c: c, dir: filepath.Join(o.Dir, "queue-files")}
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		return err
	}
	small := filepath.Join(b.dir, "1k")
	if err := writeRandom(small, 1024); err != nil {
		return err
	}
	have := 0
	for _, size := range rep.Sizes {
		fmt.Fprintf(progress, "pollux-bench: %d puts waiting for a disk server; %d × pollux cp\n", size, n)
		// The waiters are filled at the current capacity epoch, after the instance's disk
		// servers registered: the scheduler tries them again only when capacity changes, as
		// it would in production once it has tried them.
		if err := FillQueue(ctx, db, size-have, false); err != nil {
			return err
		}
		have = size
		var ds []time.Duration
		for i := range n + 20 { // the first 20 warm connections and plans up
			d, err := b.put(ctx, small, fmt.Sprintf("/pollux/bench/q%d_%d", size, i), true)
			if err != nil {
				return err
			}
			if i >= 20 {
				ds = append(ds, d.total)
			}
		}
		rep.RoundTrip = append(rep.RoundTrip, latency(ds))
		rep.RoundTripLoad = append(rep.RoundTripLoad, loadAverage())
	}
	return nil
}

// worst is a probe's largest latency over its latency at the first size.
func (r QueueReport) worst(name string) float64 {
	lat := r.Latency[name]
	w := 0.0
	for _, d := range lat[1:] {
		if lat[0] > 0 {
			w = max(w, float64(d)/float64(lat[0]))
		}
	}
	return w
}

// roundTripRatio is the cp p50 with the longest queue over the first.
func (r QueueReport) roundTripRatio() float64 {
	if len(r.RoundTrip) < 2 || r.RoundTrip[0].P50 == 0 {
		return 0
	}
	return float64(r.RoundTrip[len(r.RoundTrip)-1].P50) / float64(r.RoundTrip[0].P50)
}

// Print writes the table, the indexes each claim reads and the verdicts.
func (r QueueReport) Print(w io.Writer) error {
	var b strings.Builder
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
	fmt.Fprintf(&b, "\nclaims with a long queue (median of 21 runs, each rolled back; the fixture's ten of each kind at its front):\n")
	fmt.Fprintf(&b, "  %-40s", "queued puts, and puts waiting →")
	for _, s := range r.Sizes {
		fmt.Fprintf(&b, " %12d", s)
	}
	fmt.Fprintf(&b, "   worst ratio\n  %-40s", "load average (1 min)")
	for _, l := range r.Load {
		fmt.Fprintf(&b, " %12s", l)
	}
	b.WriteString("\n")
	for _, p := range r.Probes {
		fmt.Fprintf(&b, "  %-40s", p.Name)
		for _, d := range r.Latency[p.Name] {
			fmt.Fprintf(&b, " %12s", ms(d))
		}
		fmt.Fprintf(&b, "   %.2f×\n", r.worst(p.Name))
	}
	b.WriteString("  indexes of subrequest the plans read (EXPLAIN, at the longest queue):\n")
	for _, p := range r.Probes {
		fmt.Fprintf(&b, "    %-38s %s\n", p.Name, strings.Join(r.Indexes[p.Name], ", "))
		for _, walk := range r.Walks[p.Name] {
			fmt.Fprintf(&b, "      reads more than its queue: %s\n", walk)
		}
	}
	if len(r.RoundTrip) > 0 {
		b.WriteString("  pollux cp (put + 1 KiB upload, closed) with puts of another class waiting for a disk server:\n")
		for i, l := range r.RoundTrip {
			fmt.Fprintf(&b, "    %9d waiting   p50 %s   p99 %s   (n=%d)   load %s\n", r.Sizes[i], ms(l.P50), ms(l.P99), l.N, r.RoundTripLoad[i])
		}
	}
	printVerdicts(&b, r.Verdicts())
	_, err := io.WriteString(w, b.String())
	return err
}
