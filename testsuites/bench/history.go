package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/uuid"
	"github.com/pollux-storage/pollux/model"
)

// The history of finished requests must not slow the path: every claim and sweep reads a
// partial index that holds its queue and nothing else. This file builds a database with a
// small live queue of every claimable kind (HistoryFixture) and as much history as asked
// (FillHistory), and runs each claim and sweep (Probes) to read its plans (Plans) and time
// it (TimeProbe), each in a transaction that is rolled back, so every run sees the same
// state.

// Probe is one claim or sweep as a daemon runs it.
type Probe struct {
	Name string
	SQL  string
	// PlanOnly marks a probe whose work grows with the history (archiving what the
	// retention let go): its plan is checked, its time is not compared.
	PlanOnly bool
}

// Probes are the claims and sweeps of every daemon, with the fixture's disk server.
func Probes(diskServer int64) []Probe {
	ds := fmt.Sprint(diskServer)
	return []Probe{
		{Name: "stagerd put", SQL: "select * from subrequest_claim('put', 10)"},
		{Name: "stagerd get", SQL: "select * from subrequest_claim('get', 10)"},
		{Name: "stagerd putdone", SQL: "select * from subrequest_claim('putdone', 10)"},
		{Name: "stagerd rm", SQL: "select * from subrequest_claim('rm', 10)"},
		// The epoch moves first, as a capacity change would, so the claim tries every waiter.
		{Name: "schedulerd place", SQL: "select capacity_changed(); select * from subrequest_claim_waitsched(100)"},
		{Name: "diskserverd transfers", SQL: "select * from transfer_claim(" + ds + ", 'http://probe', array_fill('t'::text, array[10]))"},
		{Name: "diskserverd recover", SQL: "select disk_server_recover(" + ds + ")"},
		{Name: "diskserverd gc", SQL: "select * from disk_copy_claim_gc(" + ds + ", 100)"},
		{Name: "jobmanagerd expire", SQL: "select * from disk_server_expire(100); select * from subrequest_expire(100)"},
		{Name: "jobmanagerd archive", SQL: "select request_archive_finished(500); select request_archive_purge(500)"},
		{Name: "jobmanagerd archive, retention passed", PlanOnly: true, SQL: "update policy set value = 0 where name = 'request_retention_seconds'; " +
			"select request_archive_finished(500); update policy set value = 0 where name = 'request_archive_seconds'; select request_archive_purge(500)"},
	}
}

// HistoryFixture is the live queue the probes work on.
type HistoryFixture struct {
	DiskServer int64
}

// MakeHistoryFixture registers a disk server, writes ten files through the logic, and
// leaves ten subrequests waiting for each claim: new puts, gets, putdones and rms, puts
// placed on the disk server, and puts waiting for a disk server of a service class that has
// none.
func MakeHistoryFixture(ctx context.Context, db *pg.DB) (HistoryFixture, error) {
	var f HistoryFixture
	p := db.Pool()
	var err error
	// The fixture's disk server heartbeats only between sizes: a liveness window of seconds
	// would have every probe after the first find it silent and do other work.
	if _, err = model.PolicySet(ctx, p, "disk_server_live_seconds", 3600, "pollux-bench"); err != nil {
		return f, err
	}
	if f.DiskServer, err = model.DiskServerRegister(ctx, p, "probe-ds", "http://127.0.0.1:1", 0); err != nil {
		return f, err
	}
	if _, err = model.FileSystemRegister(ctx, p, f.DiskServer, "/data/probe", "default", 1<<40, 1<<39); err != nil {
		return f, err
	}
	if _, err = p.Exec(ctx, "insert into service_class (name) values ('probe-empty') on conflict do nothing"); err != nil {
		return f, err
	}
	stage := func() error {
		for _, fam := range []string{"put", "get", "putdone", "rm"} {
			if _, err := model.SubrequestClaim(ctx, p, fam, 1000); err != nil {
				return err
			}
		}
		return nil
	}
	submit := func(typ model.RequestType, class string, autoClose bool, paths []string) error {
		_, err := model.RequestSubmit(ctx, p, uuid.NewV7(), typ, class, "probe", "", "", paths, autoClose, nil, nil)
		return err
	}
	paths := func(prefix string) []string {
		var out []string
		for i := range 10 {
			out = append(out, fmt.Sprintf("/pollux/probe/%s%d", prefix, i))
		}
		return out
	}
	// Ten files, written and closed.
	if err := submit(model.RequestTypePut, "default", true, paths("f")); err != nil {
		return f, err
	}
	if err := stage(); err != nil {
		return f, err
	}
	rows, err := model.TransferClaim(ctx, p, f.DiskServer, "http://probe", strings.Split(strings.Repeat("t,", 10), ",")[:10])
	if err != nil {
		return f, err
	}
	for _, r := range rows {
		if err := model.TransferPutEnded(ctx, p, r.SubrequestID, r.Token, 1, "00020002", new("00020002")); err != nil {
			return f, err
		}
	}
	// Placed puts (SCHEDULED), and puts of a class without disk servers (WAITSCHED).
	if err := submit(model.RequestTypePut, "default", true, paths("placed")); err != nil {
		return f, err
	}
	if err := submit(model.RequestTypePut, "probe-empty", true, paths("waiting")); err != nil {
		return f, err
	}
	if err := stage(); err != nil {
		return f, err
	}
	// The queues the stager claims from.
	for _, q := range []struct {
		typ   model.RequestType
		paths []string
	}{
		{model.RequestTypePut, paths("new")}, {model.RequestTypeGet, paths("f")},
		{model.RequestTypePutdone, paths("f")}, {model.RequestTypeRm, paths("f")},
	} {
		if err := submit(q.typ, "default", false, q.paths); err != nil {
			return f, err
		}
	}
	return f, nil
}

// FillHistory adds n finished subrequests, ten to a finished request, of every request type,
// placed on the fixture's disk server, ended within the retention (so the archive sweep has
// nothing to move and measures only its look), then ANALYZEs, as autovacuum would have.
func FillHistory(ctx context.Context, db *pg.DB, f HistoryFixture, n int) error {
	const perRequest = 10
	const chunk = 500_000 // rows per statement: bounded memory and a visible pace
	for done := 0; done < n; done += chunk {
		rows := min(chunk, n-done)
		err := db.Tx(ctx, "fill history", func(q pg.Querier) error {
			// History is written as it ends up, FINISHED, which the state machine's triggers
			// refuse for a new row; replica mode skips the triggers (and the foreign keys'
			// checks) for this transaction alone. It needs a superuser, as Plans does.
			if _, err := q.Exec(ctx, "set local session_replication_role = replica"); err != nil {
				return err
			}
			_, err := q.Exec(ctx, `
				with r as (
					insert into request (id, type, status, service_class_id, user_name, updated_at)
					select gen_random_uuid(), (enum_range(null::request_type))[1 + g % 5], 'FINISHED', 1, 'history', now()
					from generate_series(1, $1::int) g
					returning id, type)
				insert into subrequest (request_id, type, path, status, disk_server_id, file_system_id, info, updated_at)
				select r.id, r.type, '/pollux/history/' || r.id || '/' || k, 'FINISHED', $2::bigint,
				       (select id from file_system where disk_server_id = $2::bigint limit 1), 'history', now()
				from r, generate_series(1, $3::int) k`, (rows+perRequest-1)/perRequest, f.DiskServer, perRequest)
			return err
		})
		if err != nil {
			return fmt.Errorf("fill history: %w", err)
		}
	}
	return db.Do(ctx, "analyze", func(q pg.Querier) error {
		_, err := q.Exec(ctx, "analyze request; analyze subrequest")
		return err
	})
}

// PlanNode is the part of an EXPLAIN (FORMAT JSON) node a check needs.
type PlanNode struct {
	NodeType  string `json:"Node Type"`
	Relation  string `json:"Relation Name"`
	Index     string `json:"Index Name"`
	IndexCond string `json:"Index Cond"`
	Filter    string `json:"Filter"`
	// ActualMs and ActualRows are set when the plan was analysed (Plans with analyse).
	ActualMs   float64    `json:"Actual Total Time"`
	ActualRows float64    `json:"Actual Rows"`
	Plans      []PlanNode `json:"Plans"`
}

// Render writes the plan one node a line, indented, with what was read and how long it took.
func (n PlanNode) Render(b *strings.Builder, depth int) {
	fmt.Fprintf(b, "%s%s", strings.Repeat("  ", depth), n.NodeType)
	if n.Relation != "" {
		fmt.Fprintf(b, " on %s", n.Relation)
	}
	if n.Index != "" {
		fmt.Fprintf(b, " using %s", n.Index)
	}
	if n.IndexCond != "" {
		fmt.Fprintf(b, " [%s]", n.IndexCond)
	}
	if n.Filter != "" {
		f := n.Filter
		if len(f) > 120 {
			f = f[:120] + "…"
		}
		fmt.Fprintf(b, " filter %s", f)
	}
	fmt.Fprintf(b, "  (%.2f ms, %.0f rows)\n", n.ActualMs, n.ActualRows)
	for _, c := range n.Plans {
		c.Render(b, depth+1)
	}
}

// WalksHistory says how a plan would read history: a sequential scan of request or
// subrequest, or an index scan of one of them with no condition on the index (an ordered
// walk that filters, the shape that cost 65x behind a million finished rows) unless the
// index is one of live, partial indexes that hold no finished row. Empty when the plan
// reads only what its conditions select.
func (n PlanNode) WalksHistory(live map[string]bool) []string {
	var out []string
	hot := n.Relation == "subrequest" || n.Relation == "request"
	filter := n.Filter
	if len(filter) > 200 {
		filter = filter[:200] + "…"
	}
	switch {
	case hot && n.NodeType == "Seq Scan":
		out = append(out, fmt.Sprintf("Seq Scan on %s (filter %s)", n.Relation, filter))
	case hot && (n.NodeType == "Index Scan" || n.NodeType == "Index Only Scan") && n.IndexCond == "" && !live[n.Index]:
		out = append(out, fmt.Sprintf("%s using %s on %s with no index condition (filter %s)", n.NodeType, n.Index, n.Relation, filter))
	}
	for _, c := range n.Plans {
		out = append(out, c.WalksHistory(live)...)
	}
	return out
}

// Plan is one statement a probe ran, as auto_explain saw it.
type Plan struct {
	Query string
	Root  PlanNode
}

// LiveIndexes are the partial indexes of request and subrequest whose predicate keeps every
// finished row out (a status list without FINISHED and FAILED, or one that excludes them):
// walking one reads a queue, never the history.
func LiveIndexes(ctx context.Context, db *pg.DB) (map[string]bool, error) {
	rows, err := db.Pool().Query(ctx, `select i.indexrelid::regclass::text, pg_get_expr(i.indpred, i.indrelid)
		from pg_index i where i.indrelid in ('subrequest'::regclass, 'request'::regclass) and i.indpred is not null`)
	if err != nil {
		return nil, fmt.Errorf("list partial indexes: %w", err)
	}
	live := map[string]bool{}
	for rows.Next() {
		var name, pred string
		if err := rows.Scan(&name, &pred); err != nil {
			return nil, err
		}
		final := strings.Contains(pred, "FINISHED") || strings.Contains(pred, "FAILED")
		excludes := strings.Contains(pred, "<> ALL")
		live[name] = strings.Contains(pred, "status") && (!final || excludes)
	}
	return live, rows.Err()
}

// Plans runs the probe in a transaction that is rolled back, with auto_explain logging the
// plan of every statement inside the functions it calls as a NOTICE. The connection must be
// a superuser's (LOAD).
func Plans(ctx context.Context, dsn string, p Probe) ([]Plan, error) {
	return plans(ctx, dsn, p, false)
}

// AnalysedPlans is Plans with each statement's actual times and rows.
func AnalysedPlans(ctx context.Context, dsn string, p Probe) ([]Plan, error) {
	return plans(ctx, dsn, p, true)
}

func plans(ctx context.Context, dsn string, p Probe, analyse bool) ([]Plan, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	var plans []Plan
	var bad error
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		_, body, ok := strings.Cut(n.Message, "plan:\n")
		if !ok {
			return
		}
		var doc struct {
			Query string   `json:"Query Text"`
			Plan  PlanNode `json:"Plan"`
		}
		mu.Lock()
		defer mu.Unlock()
		if err := json.Unmarshal([]byte(body), &doc); err != nil {
			bad = errors.Join(bad, fmt.Errorf("read a plan: %w", err))
			return
		}
		plans = append(plans, Plan{Query: doc.Query, Root: doc.Plan})
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	setup := []string{"load 'auto_explain'", "set auto_explain.log_min_duration = 0", "set auto_explain.log_nested_statements = on",
		"set auto_explain.log_format = json", "set auto_explain.log_level = notice", "set client_min_messages = notice"}
	if analyse {
		setup = append(setup, "set auto_explain.log_analyze = on")
	}
	for _, s := range setup {
		if _, err := conn.Exec(ctx, s); err != nil {
			return nil, fmt.Errorf("set up auto_explain (%s): %w", s, err)
		}
	}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, p.SQL); err != nil {
			return fmt.Errorf("probe %s: %w", p.Name, err)
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		return nil, err
	}
	mu.Lock()
	defer mu.Unlock()
	return plans, bad
}

var errRollback = errors.New("rolled back on purpose")

// TimeProbe runs the probe runs times, each in a transaction rolled back, after one run
// that warms the session's plans, and returns the median time.
func TimeProbe(ctx context.Context, db *pg.DB, p Probe, runs int) (time.Duration, error) {
	conn, err := db.Pool().Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Release()
	var times []time.Duration
	for i := range runs + 1 {
		start := time.Now()
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, p.SQL); err != nil {
				return fmt.Errorf("probe %s: %w", p.Name, err)
			}
			return errRollback
		})
		if !errors.Is(err, errRollback) {
			return 0, err
		}
		if i > 0 {
			times = append(times, time.Since(start))
		}
	}
	return latency(times).P50, nil
}

// HistoryDatabase is the database the history benchmark builds and drops.
const HistoryDatabase = "pollux_bench_history"

// HistoryReport is each probe's median latency at each size of history.
type HistoryReport struct {
	Sizes   []int
	Probes  []Probe
	Latency map[string][]time.Duration // probe name → one per size
	Load    []string                   // the one-minute load average at each size
	// Slow holds, for each probe over 2x at the largest size, its statements' analysed
	// plans there, slowest first: where the time goes.
	Slow map[string]string
}

// RunHistory builds a database with the live fixture, times every probe, then adds
// history up to each of sizes (ascending; 0 is measured first whatever sizes says) and
// times them again. install migrates the empty database at dsn and installs the logic.
func RunHistory(ctx context.Context, adminDSN string, sizes []int, install func(ctx context.Context, dsn string) error,
	progress io.Writer) (HistoryReport, error) {
	rep := HistoryReport{Sizes: append([]int{0}, sizes...), Latency: map[string][]time.Duration{}}
	if err := recreateDatabase(ctx, adminDSN, HistoryDatabase); err != nil {
		return rep, err
	}
	defer dropDatabase(context.WithoutCancel(ctx), adminDSN, HistoryDatabase)
	dsn, err := pg.WithDatabase(adminDSN, HistoryDatabase)
	if err != nil {
		return rep, err
	}
	if err := install(ctx, dsn); err != nil {
		return rep, fmt.Errorf("install the schema: %w", err)
	}
	db, err := pg.Open(ctx, pg.Config{DSN: dsn, MaxConns: 2, ApplicationName: "pollux-bench history"})
	if err != nil {
		return rep, err
	}
	defer db.Close()
	f, err := MakeHistoryFixture(ctx, db)
	if err != nil {
		return rep, fmt.Errorf("history fixture: %w", err)
	}
	rep.Probes = Probes(f.DiskServer)
	have := 0
	for _, size := range rep.Sizes {
		if size > have {
			fmt.Fprintf(progress, "pollux-bench: adding history up to %d finished subrequests\n", size)
			if err := FillHistory(ctx, db, f, size-have); err != nil {
				return rep, err
			}
			have = size
		}
		// Filling takes minutes: without a fresh heartbeat the fixture's disk server would be
		// silent, and every probe would do other work (take back, wait) than with no history.
		if _, err := model.DiskServerHeartbeat(ctx, db.Pool(), f.DiskServer, 0); err != nil {
			return rep, err
		}
		fmt.Fprintf(progress, "pollux-bench: timing every claim and sweep behind %d finished subrequests\n", size)
		rep.Load = append(rep.Load, loadAverage())
		for _, p := range rep.Probes {
			d, err := TimeProbe(ctx, db, p, 21)
			if err != nil {
				return rep, err
			}
			rep.Latency[p.Name] = append(rep.Latency[p.Name], d)
		}
	}
	rep.Slow = map[string]string{}
	for _, p := range rep.Probes {
		lat := rep.Latency[p.Name]
		if p.PlanOnly || len(lat) < 2 || lat[len(lat)-1] <= 2*lat[0] {
			continue
		}
		pls, err := AnalysedPlans(ctx, dsn, p)
		if err != nil {
			return rep, err
		}
		sort.Slice(pls, func(i, j int) bool { return pls[i].Root.ActualMs > pls[j].Root.ActualMs })
		var b strings.Builder
		for _, pl := range pls[:min(3, len(pls))] {
			fmt.Fprintf(&b, "    %s\n", strings.Join(strings.Fields(pl.Query), " "))
			pl.Root.Render(&b, 3)
		}
		rep.Slow[p.Name] = b.String()
	}
	return rep, nil
}

// Print writes the table and the verdict: every probe within 2x of its latency with no
// history, at every size.
func (r HistoryReport) Print(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "\nclaims and sweeps behind finished history (median of 21 runs, each rolled back; load average at each size):\n")
	fmt.Fprintf(&b, "  %-40s", "finished subrequests →")
	for _, s := range r.Sizes {
		fmt.Fprintf(&b, " %12d", s)
	}
	fmt.Fprintf(&b, "   worst ratio\n  %-40s", "load average (1 min)")
	for _, l := range r.Load {
		fmt.Fprintf(&b, " %12s", l)
	}
	b.WriteString("\n")
	for _, p := range r.Probes {
		lat := r.Latency[p.Name]
		fmt.Fprintf(&b, "  %-40s", p.Name)
		ratio := 0.0
		for i, d := range lat {
			fmt.Fprintf(&b, " %9.2f ms", float64(d.Microseconds())/1000)
			if i > 0 && lat[0] > 0 {
				ratio = max(ratio, float64(d)/float64(lat[0]))
			}
		}
		if p.PlanOnly {
			b.WriteString("   (work grows with history: not compared)\n")
			continue
		}
		fmt.Fprintf(&b, "   %.2f×\n", ratio)
	}
	printVerdicts(&b, r.Verdicts())
	for _, p := range r.Probes {
		if plan, ok := r.Slow[p.Name]; ok {
			fmt.Fprintf(&b, "  where the time of %s goes behind %d finished subrequests (its slowest statements, analysed):\n%s", p.Name, r.Sizes[len(r.Sizes)-1], plan)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
