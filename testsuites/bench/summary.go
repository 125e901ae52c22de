package bench

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// Verdict is one target of the issues, as one run measured it: the line of the summary
// table `make bench` ends with, and of the history in docs/benchmarks.md.
type Verdict struct {
	Issue  int
	Figure string
	Value  string // what this run measured
	Target string
	Met    bool
	Load   string // the one-minute load average when it was measured
}

func (v Verdict) verdict() string {
	if v.Met {
		return "MET"
	}
	return "MISSED"
}

// Verdicts are the claim benchmark's targets.
func (r *Report) Verdicts() []Verdict {
	var out []Verdict
	if ratio, met, ok := r.Target(); ok {
		c, _ := r.Claim(TargetWorkers, TargetBatch)
		p, _, _ := r.Reference(TargetWorkers)
		out = append(out, Verdict{Issue: 3, Figure: fmt.Sprintf("claim rows/s, %d workers × batch %d, / pgbench -N -c %d TPS", TargetWorkers, TargetBatch, TargetWorkers),
			Value: fmt.Sprintf("%s / %s = %.2f×", group(c.RowsPerSecond()), group(p.TPS), ratio), Target: fmt.Sprintf("≥ %g×", TargetRatio),
			Met: met, Load: r.Machine.LoadEnd})
	}
	if ratio, met, ok := r.RiverTarget(); ok {
		best, _ := r.Best()
		out = append(out, Verdict{Issue: 12, Figure: fmt.Sprintf("claim rows/s at the best batch (%d × %d) / River's bench shape jobs/s", best.Workers, best.Batch),
			Value:  fmt.Sprintf("%s / %s = %.2f×", group(best.RowsPerSecond()), group(r.River.JobsPerSecond()), ratio),
			Target: fmt.Sprintf("≥ %g×", RiverTargetRatio), Met: met, Load: r.River.LoadEnd})
	}
	return out
}

// Verdicts are the request benchmark's targets (issue 12).
func (r RequestReport) Verdicts() []Verdict {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	out := []Verdict{
		{Issue: 12, Figure: "put + 1 KiB upload + putdone, p50 / p99", Value: ms(r.PutRoundTrip.P50) + " / " + ms(r.PutRoundTrip.P99),
			Target: "≤ 10 / ≤ 25 ms", Met: r.PutRoundTrip.P50 <= 10*time.Millisecond && r.PutRoundTrip.P99 <= 25*time.Millisecond, Load: r.Load["put"]},
		{Issue: 12, Figure: "pollux cp up, p50", Value: ms(r.CpRoundTrip.P50), Target: "≤ 7 ms", Met: r.CpRoundTrip.P50 <= 7*time.Millisecond, Load: r.Load["cp"]},
		{Issue: 12, Figure: "get + 1 KiB download, p50", Value: ms(r.GetRoundTrip.P50), Target: "≤ 7 ms", Met: r.GetRoundTrip.P50 <= 7*time.Millisecond, Load: r.Load["get"]},
		{Issue: 12, Figure: "CPU per PUT: client, daemons and database server (/proc), less the idle rate", Value: ms(r.CPUPerCp), Target: "≤ 10 ms", Met: r.CPUPerCp <= 10*time.Millisecond, Load: r.Load["cp"]},
	}
	if r.StatementTx != nil {
		stmt := 0.0
		for _, v := range r.StatementTx["cp"] {
			stmt += v
		}
		out = append(out, Verdict{Issue: 12, Figure: "transactions per pollux cp, by statement / as the server counts",
			Value: fmt.Sprintf("%.2f / %.1f", stmt, r.TxPerCp), Target: "≤ 6 / ≤ 12", Met: stmt <= 6 && r.TxPerCp <= 12, Load: r.Load["tx"]})
	} else {
		out = append(out, Verdict{Issue: 12, Figure: "transactions per pollux cp, as the server counts (by statement: not counted)",
			Value: fmt.Sprintf("%.1f", r.TxPerCp), Target: "≤ 12", Met: r.TxPerCp <= 12, Load: r.Load["tx"]})
	}
	if r.PgbenchTPS > 0 {
		share := r.PutsPerSecond * r.TxPerCp / r.PgbenchTPS
		out = append(out, Verdict{Issue: 12, Figure: fmt.Sprintf("%d clients: puts/s × transactions per PUT / pgbench -N -c 16 TPS", r.Clients),
			Value: fmt.Sprintf("%.1f × %.1f / %.0f = %.0f %%", r.PutsPerSecond, r.TxPerCp, r.PgbenchTPS, 100*share), Target: "≥ 50 %",
			Met: share >= 0.5, Load: r.Load["pgbench"]})
	}
	if r.ManyDiskServers > 0 && r.FewServers.P50 > 0 {
		ratio := float64(r.ManyServers.P50) / float64(r.FewServers.P50)
		out = append(out, Verdict{Issue: 12, Figure: fmt.Sprintf("%d disk servers: cp p50 / 2 disk servers", r.ManyDiskServers),
			Value: fmt.Sprintf("%s / %s = %.2f×", ms(r.ManyServers.P50), ms(r.FewServers.P50), ratio), Target: "≤ 1.5×", Met: ratio <= 1.5, Load: r.Load["scale"]})
	}
	if mv := r.Mover(); mv.Upload > 0 && mv.Download > 0 {
		up, down := mv.UpShare, mv.DownShare
		out = append(out, Verdict{Issue: 12, Figure: "mover up / down, share of a plain fsynced copy",
			Value: fmt.Sprintf("%.0f %% / %.0f %%", 100*up, 100*down), Target: "≥ 90 % / ≥ 90 %", Met: up >= 0.9 && down >= 0.9, Load: r.Load["mover"]})
	}
	return out
}

// Verdicts is the history benchmark's target (issue 12).
func (r HistoryReport) Verdicts() []Verdict {
	worst, name := 0.0, ""
	for _, p := range r.Probes {
		lat := r.Latency[p.Name]
		if p.PlanOnly || len(lat) < 2 || lat[0] <= 0 {
			continue
		}
		for _, d := range lat[1:] {
			if ratio := float64(d) / float64(lat[0]); ratio > worst {
				worst, name = ratio, p.Name
			}
		}
	}
	if name == "" {
		return nil
	}
	return []Verdict{{Issue: 12, Figure: fmt.Sprintf("every claim and sweep behind %d finished subrequests / none", r.Sizes[len(r.Sizes)-1]),
		Value: fmt.Sprintf("worst %.2f× (%s)", worst, name), Target: "≤ 2×", Met: worst <= 2, Load: r.Load[len(r.Load)-1]}}
}

// Verdicts are the queue benchmark's targets (issue 15).
func (r QueueReport) Verdicts() []Verdict {
	if len(r.Sizes) < 2 {
		return nil
	}
	first, last := r.Sizes[0], r.Sizes[len(r.Sizes)-1]
	worst, name := 0.0, ""
	for _, p := range r.Probes {
		if w := r.worst(p.Name); w > worst {
			worst, name = w, p.Name
		}
	}
	out := []Verdict{{Issue: 15, Figure: fmt.Sprintf("claim latency with %d queued / %d queued", last, first),
		Value: fmt.Sprintf("worst %.2f× (%s)", worst, name), Target: "≤ 2×", Met: worst <= 2, Load: r.Load[len(r.Load)-1]}}
	if rt := r.roundTripRatio(); rt > 0 {
		ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
		out = append(out, Verdict{Issue: 15, Figure: fmt.Sprintf("pollux cp p50 with %d waiting / %d waiting", last, first),
			Value:  fmt.Sprintf("%s / %s = %.2f×", ms(r.RoundTrip[len(r.RoundTrip)-1].P50), ms(r.RoundTrip[0].P50), rt),
			Target: "≤ 2×", Met: rt <= 2, Load: r.RoundTripLoad[len(r.RoundTripLoad)-1]})
	}
	return out
}

// printVerdicts writes one target line per verdict, under a report's figures.
func printVerdicts(b *strings.Builder, vs []Verdict) {
	for _, v := range vs {
		fmt.Fprintf(b, "target (issue %d): %s %s: %s → %s\n", v.Issue, v.Figure, v.Target, v.Value, v.verdict())
	}
}

// RunID identifies one run of `make bench` in the summary and the history.
type RunID struct {
	At     time.Time
	Commit string // git describe of the checkout, "-dirty" when it had changes
	NProc  int
}

// PrintSummary writes the one table every run ends with: each target, what this run
// measured, the verdict and the load average when it was measured.
func PrintSummary(w io.Writer, run RunID, vs []Verdict) error {
	var b strings.Builder
	fmt.Fprintf(&b, "\nsummary: every target, this run (%s, commit %s, %d CPUs; load = 1-minute load average when measured)\n",
		run.At.UTC().Format("2006-01-02 15:04 MST"), run.Commit, run.NProc)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  issue\tfigure\tthis run\ttarget\tverdict\tload\t")
	for _, v := range vs {
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\t\n", v.Issue, v.Figure, v.Value, v.Target, v.verdict(), v.Load)
	}
	tw.Flush()
	_, err := io.WriteString(w, b.String())
	return err
}

// HistoryMarker is the heading in docs/benchmarks.md under which RecordHistory adds each
// run, newest first.
const HistoryMarker = "## History of `make bench` runs (newest first)"

// RecordHistory adds the run's table to the history section of the markdown file at path,
// above the runs before it.
func RecordHistory(path string, run RunID, vs []Verdict) error {
	doc, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("record history: %w", err)
	}
	head, rest, ok := strings.Cut(string(doc), HistoryMarker+"\n")
	if !ok {
		return fmt.Errorf("record history: %s has no line %q", path, HistoryMarker)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n### %s, commit %s, %d CPUs\n\n", run.At.UTC().Format("2006-01-02 15:04 MST"), run.Commit, run.NProc)
	b.WriteString("| issue | figure | this run | target | verdict | load |\n|---|---|---|---|---|---|\n")
	for _, v := range vs {
		fmt.Fprintf(&b, "| %d | %s | %s | %s | **%s** | %s |\n", v.Issue, mdEscape(v.Figure), mdEscape(v.Value), mdEscape(v.Target), v.verdict(), v.Load)
	}
	return os.WriteFile(path, []byte(head+HistoryMarker+"\n"+b.String()+rest), 0o644)
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
