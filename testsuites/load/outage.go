package load

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Outage is what the clients saw of one failure at At.
type Outage struct {
	At time.Time
	// FirstSuccess is the end of the first acknowledged operation that started after At:
	// service was back for a new request then.
	FirstSuccess time.Time
	// Failed counts the operations refused between At and FirstSuccess, by reason.
	Failed map[string]int
	// InFlight counts the operations under way at At; Longest is the longest of them, or
	// of those started before FirstSuccess.
	InFlight int
	Longest  time.Duration
}

// Back is how long after the failure service came back (0 if it has not yet).
func (o Outage) Back() time.Duration {
	if o.FirstSuccess.IsZero() {
		return 0
	}
	return o.FirstSuccess.Sub(o.At)
}

// OutageAt reads the log for a failure at t.
func OutageAt(ops []Op, t time.Time) Outage {
	o := Outage{At: t, Failed: map[string]int{}}
	for _, r := range ops {
		if r.Acked() && !r.Start.Before(t) && (o.FirstSuccess.IsZero() || r.End.Before(o.FirstSuccess)) {
			o.FirstSuccess = r.End
		}
	}
	for _, r := range ops {
		if !r.Acked() && !r.End.Before(t) && (o.FirstSuccess.IsZero() || r.End.Before(o.FirstSuccess)) {
			o.Failed[r.Kind+": "+reason(r.Stderr)]++
		}
		if r.Start.Before(t) && r.End.After(t) {
			o.InFlight++
		}
		if r.End.After(t) && (o.FirstSuccess.IsZero() || r.Start.Before(o.FirstSuccess)) {
			o.Longest = max(o.Longest, r.End.Sub(r.Start))
		}
	}
	return o
}

// PutsSince counts the acknowledged puts that started at or after t.
func PutsSince(ops []Op, t time.Time) int {
	n := 0
	for _, r := range ops {
		if r.Kind == "put" && r.Acked() && !r.Start.Before(t) {
			n++
		}
	}
	return n
}

// SucceededSince counts the acknowledged operations that started at or after t.
func SucceededSince(ops []Op, t time.Time) int {
	n := 0
	for _, r := range ops {
		if r.Acked() && !r.Start.Before(t) {
			n++
		}
	}
	return n
}

// Summary counts operations by kind and outcome, and failures by reason.
func Summary(ops []Op) string {
	type count struct{ ok, failed int }
	by := map[string]*count{}
	reasons := map[string]int{}
	for _, r := range ops {
		c := by[r.Kind]
		if c == nil {
			c = &count{}
			by[r.Kind] = c
		}
		if r.Acked() {
			c.ok++
		} else {
			c.failed++
			reasons[r.Kind+": "+reason(r.Stderr)]++
		}
	}
	var b strings.Builder
	for _, kind := range []string{"put", "get", "rm"} {
		if c := by[kind]; c != nil {
			fmt.Fprintf(&b, "%ss: %d issued, %d acknowledged, %d not\n", kind, c.ok+c.failed, c.ok, c.failed)
		}
	}
	keys := make([]string, 0, len(reasons))
	for k := range reasons {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "  %3d× %s\n", reasons[k], k)
	}
	return b.String()
}

// WaitFor waits until cond holds for the log, or ctx ends (the error says what was
// awaited).
func (l *Load) WaitFor(ctx context.Context, what string, cond func([]Op) bool) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if cond(l.Ops()) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
}

// reason is what a client said last: its error comes after any notice it wrote while it
// waited.
func reason(stderr string) string {
	s := strings.TrimSpace(stderr)
	s = s[strings.LastIndexByte(s, '\n')+1:]
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
