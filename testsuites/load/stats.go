package load

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// KindStats is what one kind of operation did over a window.
type KindStats struct {
	Kind          string
	Acked, Failed int
	PerSecond     float64 // acknowledged operations per second of the window
	P50, P90, P99 time.Duration
	Max           time.Duration
}

// Stats summarises the operations that ended within [from, to), by kind, for a running
// report: throughput and latency percentiles of the acknowledged ones, and the failures.
func Stats(ops []Op, from, to time.Time) []KindStats {
	by := map[string][]time.Duration{}
	failed := map[string]int{}
	for _, o := range ops {
		if o.End.Before(from) || !o.End.Before(to) {
			continue
		}
		if o.Acked() {
			by[o.Kind] = append(by[o.Kind], o.End.Sub(o.Start))
		} else {
			failed[o.Kind]++
		}
	}
	secs := to.Sub(from).Seconds()
	var out []KindStats
	for _, kind := range []string{"put", "get", "rm"} {
		d := by[kind]
		if len(d) == 0 && failed[kind] == 0 {
			continue
		}
		slices.Sort(d)
		s := KindStats{Kind: kind, Acked: len(d), Failed: failed[kind]}
		if secs > 0 {
			s.PerSecond = float64(len(d)) / secs
		}
		if len(d) > 0 {
			s.P50, s.P90, s.P99, s.Max = quantile(d, 0.50), quantile(d, 0.90), quantile(d, 0.99), d[len(d)-1]
		}
		out = append(out, s)
	}
	return out
}

// quantile is the nearest-rank quantile q of sorted durations.
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// FormatStats prints stats as one line per kind.
func FormatStats(stats []KindStats) string {
	var b strings.Builder
	for _, s := range stats {
		fmt.Fprintf(&b, "  %-3s %6d ok %4d failed %8.1f/s  p50 %-8s p90 %-8s p99 %-8s max %s\n", s.Kind, s.Acked, s.Failed, s.PerSecond,
			s.P50.Round(100*time.Microsecond), s.P90.Round(100*time.Microsecond), s.P99.Round(100*time.Microsecond),
			s.Max.Round(100*time.Microsecond))
	}
	return b.String()
}
