package load

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Burst raises the load's rate by Factor for For at the end of every Every: a sustained
// stretch first, then the burst, so that each burst is measured against the rate before it.
type Burst struct {
	Factor     float64
	Every, For time.Duration
}

func (b Burst) on() bool { return b.Factor > 1 && b.Every > 0 && b.For > 0 && b.For < b.Every }

// Windows are the bursts that started between start and end.
func (b Burst) Windows(start, end time.Time) [][2]time.Time {
	if !b.on() {
		return nil
	}
	var out [][2]time.Time
	for k := 1; ; k++ {
		from := start.Add(time.Duration(k)*b.Every - b.For)
		if !from.Before(end) {
			return out
		}
		out = append(out, [2]time.Time{from, from.Add(b.For)})
	}
}

// rateAt is the rate at time t of a load that started at start.
func (b Burst) rateAt(rate float64, start, t time.Time) float64 {
	if !b.on() {
		return rate
	}
	if into := t.Sub(start) % b.Every; into >= b.Every-b.For {
		return rate * b.Factor
	}
	return rate
}

// pace hands out one permit per operation on an open schedule: the n-th permit is due at
// its time whether or not the clients kept up, so that a load the service cannot follow
// shows up as latency and a backlog (the permits due pile up), not as a politely lower rate.
func (l *Load) pace(ctx context.Context, permits chan<- struct{}) {
	start := time.Now()
	next := start
	for {
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		}
		select {
		case <-ctx.Done():
			return
		case permits <- struct{}{}:
		}
		next = next.Add(time.Duration(float64(time.Second) / l.cfg.Burst.rateAt(l.cfg.Rate, start, next)))
	}
}

// BurstReport says, for each burst window, what was asked and how the service followed:
// operations started in it and their outcome, and how long after its end the last of
// them ended (the backlog drained).
func BurstReport(ops []Op, windows [][2]time.Time) string {
	if len(windows) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("bursts:\n")
	for i, w := range windows {
		started, acked := 0, 0
		var lastEnd time.Time
		var lat []time.Duration
		reasons := map[string]int{}
		for _, op := range ops {
			if op.Start.Before(w[0]) || !op.Start.Before(w[1]) {
				continue
			}
			started++
			if op.Acked() {
				acked++
				lat = append(lat, op.End.Sub(op.Start))
			} else {
				reasons[reason(op.Stderr)]++
			}
			if op.End.After(lastEnd) {
				lastEnd = op.End
			}
		}
		length := w[1].Sub(w[0])
		fmt.Fprintf(&b, "  burst %d at %s for %s: %d operations started (%.1f/s), %d acknowledged", i+1, w[0].UTC().Format(time.TimeOnly),
			length, started, float64(started)/length.Seconds(), acked)
		if len(lat) > 0 {
			slices.Sort(lat)
			fmt.Fprintf(&b, ", p50 %s, p99 %s", quantile(lat, 0.5).Round(time.Millisecond), quantile(lat, 0.99).Round(time.Millisecond))
		}
		if !lastEnd.IsZero() {
			fmt.Fprintf(&b, "; the last of them ended %s after the burst", max(lastEnd.Sub(w[1]), 0).Round(10*time.Millisecond))
		}
		b.WriteString("\n")
		for r, n := range reasons {
			fmt.Fprintf(&b, "    not acknowledged: %d × %s\n", n, r)
		}
	}
	return b.String()
}
