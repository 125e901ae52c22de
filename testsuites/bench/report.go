package bench

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Target is the goal the benchmark checks: at batch TargetBatch with TargetWorkers workers,
// the claim pool completes at least TargetRatio times as many rows per second as pgbench -N
// runs transactions with as many clients.
const (
	TargetWorkers = 16
	TargetBatch   = 10
	TargetRatio   = 3.0
)

// RiverTargetRatio is the anchor's goal: the best claim configuration completes at least this
// many times as many rows per second as River's bench shape completes jobs on the same server.
const RiverTargetRatio = 3.0

// Claim returns the result for workers × batch, if measured.
func (r *Report) Claim(workers, batch int) (ClaimResult, bool) {
	for _, c := range r.Claims {
		if c.Workers == workers && c.Batch == batch {
			return c, true
		}
	}
	return ClaimResult{}, false
}

// Reference returns the pgbench run a pool of this many workers is compared with: the run
// at the same client count, else, for more than one worker, the run with the most clients
// (exact is then false). ok is false when there is none.
func (r *Report) Reference(workers int) (p PgbenchResult, exact, ok bool) {
	for _, p := range r.Pgbench {
		if p.Clients == workers {
			return p, true, true
		}
	}
	if workers == 1 {
		return PgbenchResult{}, false, false
	}
	for _, q := range r.Pgbench {
		if !ok || q.Clients > p.Clients {
			p, ok = q, true
		}
	}
	return p, false, ok
}

// Target returns the target configuration's rows/s over pgbench -N TPS at
// TargetWorkers clients; ok is false when either was not measured.
func (r *Report) Target() (ratio float64, met, ok bool) {
	c, found := r.Claim(TargetWorkers, TargetBatch)
	if !found {
		return 0, false, false
	}
	p, exact, found := r.Reference(TargetWorkers)
	if !found || !exact || p.TPS <= 0 {
		return 0, false, false
	}
	ratio = c.RowsPerSecond() / p.TPS
	return ratio, ratio >= TargetRatio, true
}

// Best returns the claim configuration with the highest rows/s; ok is false when none was
// measured.
func (r *Report) Best() (best ClaimResult, ok bool) {
	for _, c := range r.Claims {
		if !ok || c.RowsPerSecond() > best.RowsPerSecond() {
			best, ok = c, true
		}
	}
	return best, ok
}

// RiverTarget returns the best claim configuration's rows/s over River's jobs/s; ok is false
// when either was not measured.
func (r *Report) RiverTarget() (ratio float64, met, ok bool) {
	best, found := r.Best()
	if !found || r.River == nil || r.River.JobsPerSecond() <= 0 {
		return 0, false, false
	}
	ratio = best.RowsPerSecond() / r.River.JobsPerSecond()
	return ratio, ratio >= RiverTargetRatio, true
}

// Print writes the report as text.
func (r *Report) Print(w io.Writer) error {
	var b strings.Builder
	o := r.Options
	fmt.Fprintf(&b, "Pollux claim benchmark, %s\n", r.Started.UTC().Format("2006-01-02 15:04 MST"))
	load := ""
	if r.Machine.LoadStart != "" {
		load = fmt.Sprintf("; 1-minute load average %s before, %s after", r.Machine.LoadStart, r.Machine.LoadEnd)
	}
	fmt.Fprintf(&b, "machine: nproc %d%s (clients and server share it)\n", r.Machine.NProc, load)
	fmt.Fprintf(&b, "server:  PostgreSQL %s; shared_buffers %s, synchronous_commit %s, fsync %s\n",
		r.Server.Version, r.Server.SharedBuffers, r.Server.SynchronousCommit, r.Server.Fsync)
	fmt.Fprintf(&b, "method:  per configuration a freshly filled queue (VACUUM ANALYZE, CHECKPOINT), %s warm-up, %s window;\n"+
		"         one step = one statement, its own transaction: SELECT id FROM bench_item_claim(batch)\n", o.Warmup, o.Duration)
	for _, wn := range r.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", wn)
	}

	b.WriteString("\nclaim rows/s (× ratio to pgbench -N TPS at the same client count)\n")
	r.grid(&b, true, func(c ClaimResult) string {
		cell := group(c.RowsPerSecond())
		if p, _, ok := r.Reference(c.Workers); ok && p.TPS > 0 {
			cell += fmt.Sprintf("  %.2f×", c.RowsPerSecond()/p.TPS)
		}
		return cell
	})
	for _, workers := range r.Options.Workers {
		if p, exact, ok := r.Reference(workers); ok && !exact {
			fmt.Fprintf(&b, "  * %d workers are compared with pgbench -N -c %d (pgbench runs at %s only)\n",
				workers, p.Clients, r.pgbenchClients())
		}
	}

	b.WriteString("\nclaim transactions/s (steps that claimed at least one row)\n")
	r.grid(&b, false, func(c ClaimResult) string { return group(c.TxPerSecond()) })

	fmt.Fprintf(&b, "\npgbench -N (scale %d)\n", PgbenchScale)
	tw := tabwriter.NewWriter(&b, 0, 0, 3, ' ', tabwriter.AlignRight)
	for _, p := range r.Pgbench {
		fmt.Fprintf(tw, "  -c %d -j %d -T %d\t%s tps\t\n", p.Clients, p.Threads, int(p.Duration/time.Second), group(p.TPS))
	}
	tw.Flush()

	if rv := r.River; rv != nil {
		version := ""
		if rv.Version != "" {
			version = " " + rv.Version
		}
		fmt.Fprintf(&b, "\nRiver's bench shape (river%s library with `river bench`'s settings: one queue, MaxWorkers %s,\n"+
			"FetchCooldown %s, FetchPollInterval %s, no-op worker, InsertMany batches of %s topped up to %s pending,\n"+
			"River's batch completer; jobs counted from river_job: completed, finalized_at in the window)\n",
			version, group(float64(rv.MaxWorkers)), RiverFetchCooldown, RiverFetchPollInterval,
			group(float64(rv.InsertBatch)), group(float64(rv.Backlog)))
		load := ""
		if rv.LoadStart != "" {
			load = fmt.Sprintf("; 1-minute load average %s before, %s after", rv.LoadStart, rv.LoadEnd)
		}
		fmt.Fprintf(&b, "  %s jobs/s over %s (%s warm-up%s)\n", group(rv.JobsPerSecond()), rv.Window.Round(time.Millisecond), o.Warmup, load)
		if best, ok := r.Best(); ok {
			fmt.Fprintf(&b, "  best claim configuration: %d workers, batch %d, %s rows/s\n", best.Workers, best.Batch, group(best.RowsPerSecond()))
		}
	}

	b.WriteString("\n")
	target := fmt.Sprintf("target: batch %d × %d workers ≥ %g × pgbench -N (-c %d) TPS: ", TargetBatch, TargetWorkers, TargetRatio, TargetWorkers)
	if ratio, met, ok := r.Target(); ok {
		verdict := "MISSED"
		if met {
			verdict = "MET"
		}
		fmt.Fprintf(&b, "%s%.2f → %s\n", target, ratio, verdict)
	} else {
		fmt.Fprintf(&b, "%snot measured (needs --workers with %d and --batches with %d)\n", target, TargetWorkers, TargetBatch)
	}
	target = fmt.Sprintf("target: claim rows/s at the best batch ≥ %g× River's bench shape on the same cluster: ", RiverTargetRatio)
	if ratio, met, ok := r.RiverTarget(); ok {
		verdict := "MISSED"
		if met {
			verdict = "MET"
		}
		best, _ := r.Best()
		fmt.Fprintf(&b, "%s%s / %s = %.2f× → %s\n", target, group(best.RowsPerSecond()), group(r.River.JobsPerSecond()), ratio, verdict)
	} else {
		fmt.Fprintf(&b, "%snot measured\n", target)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// grid writes one line per worker count and one column per batch size; with mark, a worker
// count compared with pgbench at another client count is starred.
func (r *Report) grid(b *strings.Builder, mark bool, cell func(ClaimResult) string) {
	tw := tabwriter.NewWriter(b, 0, 0, 3, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "  workers\t")
	for _, batch := range r.Options.Batches {
		fmt.Fprintf(tw, "batch %d\t", batch)
	}
	fmt.Fprintln(tw)
	for _, workers := range r.Options.Workers {
		star := ""
		if _, exact, ok := r.Reference(workers); mark && ok && !exact {
			star = "*"
		}
		fmt.Fprintf(tw, "  %d%s\t", workers, star)
		for _, batch := range r.Options.Batches {
			if c, ok := r.Claim(workers, batch); ok {
				fmt.Fprintf(tw, "%s\t", cell(c))
			} else {
				fmt.Fprint(tw, "–\t")
			}
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

func (r *Report) pgbenchClients() string {
	var s []string
	for _, p := range r.Pgbench {
		s = append(s, "-c "+strconv.Itoa(p.Clients))
	}
	return strings.Join(s, " and ")
}

// group formats x rounded to a whole number with thousands separators: 12,345.
func group(x float64) string {
	s := strconv.FormatInt(int64(math.Round(x)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
