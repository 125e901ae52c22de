package load

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A burst is the last For of every Every, at Factor times the rate; nothing else is.
func TestBurstRateAndWindows(t *testing.T) {
	b := Burst{Factor: 10, Every: 10 * time.Second, For: 2 * time.Second}
	start := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		at   time.Duration
		want float64
	}{{0, 5}, {7 * time.Second, 5}, {8 * time.Second, 50}, {9900 * time.Millisecond, 50}, {10 * time.Second, 5}, {18500 * time.Millisecond, 50}} {
		require.Equal(t, tc.want, b.rateAt(5, start, start.Add(tc.at)), "at %s", tc.at)
	}
	w := b.Windows(start, start.Add(25*time.Second))
	require.Equal(t, [][2]time.Time{{start.Add(8 * time.Second), start.Add(10 * time.Second)}, {start.Add(18 * time.Second), start.Add(20 * time.Second)}}, w)
	require.Empty(t, Burst{Factor: 1, Every: time.Second, For: time.Second / 2}.Windows(start, start.Add(time.Hour)), "factor 1 is no burst")
	require.Equal(t, 5.0, Burst{}.rateAt(5, start, start.Add(time.Hour)))
}

// The pacer never runs ahead of its schedule, and with clients that keep up it follows it.
func TestPaceFollowsTheSchedule(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := &Load{cfg: Config{Rate: 200, Burst: Burst{Factor: 5, Every: 400 * time.Millisecond, For: 200 * time.Millisecond}}}
	permits := make(chan struct{})
	go l.pace(ctx, permits)
	start := time.Now()
	n := 0
	for time.Since(start) < 800*time.Millisecond {
		<-permits
		n++
	}
	// Two periods: 0.2 s at 200/s and 0.2 s at 1000/s each, 480 permits on schedule.
	require.LessOrEqual(t, n, 480+5, "ran ahead of the schedule")
	require.GreaterOrEqual(t, n, 160, "fell far behind a schedule nothing held up")
}

// The report names each burst, what started in it, what was acknowledged and when the
// last of its operations ended.
func TestBurstReport(t *testing.T) {
	start := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	w := [][2]time.Time{{start, start.Add(2 * time.Second)}}
	ops := []Op{
		{Kind: "put", Start: start.Add(time.Second), End: start.Add(1500 * time.Millisecond)},
		{Kind: "put", Start: start.Add(1900 * time.Millisecond), End: start.Add(3 * time.Second), Code: 2, Stderr: "stager_put: the request handler is busy\n"},
		{Kind: "put", Start: start.Add(3 * time.Second), End: start.Add(9 * time.Second)}, // after the burst
	}
	r := BurstReport(ops, w)
	require.Contains(t, r, "burst 1 at 09:00:00 for 2s: 2 operations started (1.0/s), 1 acknowledged, p50 500ms")
	require.Contains(t, r, "the last of them ended 1s after the burst")
	require.True(t, strings.Contains(r, "not acknowledged: 1 ×"), r)
}
