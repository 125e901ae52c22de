// Package failover is the failure suite: a steady client load against a whole Pollux
// instance (testsuites/e2e) while parts of it fail, a log of what the clients were told,
// and a check, from that log and from the files themselves, that nothing acknowledged was
// lost. Its first failure is the database's: the PostgreSQL primary of a pg_auto_failover
// formation (framework/pgha) killed whole, the standby promoted, the daemons riding
// through on their multi-host DSN.
package failover

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"hash/adler32"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pollux-storage/pollux/cmd/client"
	"github.com/pollux-storage/pollux/testsuites/e2e"
)

// Record is one request a client made and what it was told: the client's log, one JSON
// line per request.
type Record struct {
	Client  int       `json:"client"`
	Op      string    `json:"op"` // put or get
	Path    string    `json:"path"`
	Size    int       `json:"size"`
	Adler32 string    `json:"adler32"` // of the bytes sent (put) or expected (get)
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	OK      bool      `json:"ok"` // acknowledged: the command exited 0 (and a get's bytes matched)
	Code    int       `json:"code"`
	Error   string    `json:"error,omitempty"`
}

// LoadOptions shapes a load.
type LoadOptions struct {
	// Clients run side by side, each one request at a time; default 3.
	Clients int
	// Dir holds the clients' files and Log.
	Dir string
	// Prefix is where the files go in the namespace (unique per run).
	Prefix string
	// MaxSize bounds a file's size; default 64 KiB.
	MaxSize int
	// GetEvery makes every n-th request of a client a get of a file it stored; default 3.
	GetEvery int
}

// Load is clients issuing puts and gets through the client commands until stopped.
type Load struct {
	in   *e2e.Instance
	o    LoadOptions
	stop context.CancelFunc
	wg   sync.WaitGroup
	log  *os.File
	// LogPath is the clients' log.
	LogPath string

	mu      sync.Mutex
	records []Record
	news    chan struct{} // closed, and replaced, at every record
	logErr  error
}

// StartLoad starts the clients. They run until Stop or ctx ends.
func StartLoad(ctx context.Context, in *e2e.Instance, o LoadOptions) (*Load, error) {
	if o.Clients <= 0 {
		o.Clients = 3
	}
	if o.MaxSize <= 0 {
		o.MaxSize = 64 << 10
	}
	if o.GetEvery <= 0 {
		o.GetEvery = 3
	}
	if o.Prefix == "" {
		o.Prefix = "/pollux/failover/" + time.Now().UTC().Format("20060102-150405.000")
	}
	l := &Load{in: in, o: o, LogPath: filepath.Join(o.Dir, "requests.jsonl"), news: make(chan struct{})}
	f, err := os.Create(l.LogPath)
	if err != nil {
		return nil, err
	}
	l.log = f
	ctx, l.stop = context.WithCancel(ctx)
	for c := range o.Clients {
		l.wg.Add(1)
		go func() { defer l.wg.Done(); l.client(ctx, c) }()
	}
	return l, nil
}

// Stop stops the clients, waits for their requests in flight, and returns every record.
func (l *Load) Stop() ([]Record, error) {
	l.stop()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.logErr
	if cerr := l.log.Close(); err == nil {
		err = cerr
	}
	return append([]Record(nil), l.records...), err
}

// Records returns the records so far.
func (l *Load) Records() []Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Record(nil), l.records...)
}

// WaitFor waits until cond holds of the records, or ctx ends.
func (l *Load) WaitFor(ctx context.Context, what string, cond func([]Record) bool) error {
	for {
		l.mu.Lock()
		ok, news := cond(l.records), l.news
		l.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-news:
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", what, ctx.Err())
		}
	}
}

func (l *Load) add(r Record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r)
	b, _ := json.Marshal(r)
	if _, err := l.log.Write(append(b, '\n')); err != nil && l.logErr == nil {
		l.logErr = err
	}
	close(l.news)
	l.news = make(chan struct{})
}

// client is one client: puts of new files, and every GetEvery-th request a get of a file
// it stored before, until ctx ends. A request cut short by the end is not recorded: it was
// neither acknowledged nor refused.
func (l *Load) client(ctx context.Context, c int) {
	var stored []Record
	for n := 0; ctx.Err() == nil; n++ {
		var r Record
		if n%l.o.GetEvery == l.o.GetEvery-1 && len(stored) > 0 {
			r = l.get(ctx, c, n, stored[randInt(len(stored))])
		} else {
			r = l.put(ctx, c, n)
			if r.OK {
				stored = append(stored, r)
			}
		}
		if ctx.Err() != nil {
			return
		}
		l.add(r)
	}
}

func (l *Load) put(ctx context.Context, c, n int) Record {
	data := make([]byte, 1+randInt(l.o.MaxSize))
	_, _ = rand.Read(data)
	r := Record{Client: c, Op: "put", Path: fmt.Sprintf("%s/c%d-%d", l.o.Prefix, c, n), Size: len(data),
		Adler32: client.Adler32(adler32.Checksum(data))}
	src := filepath.Join(l.o.Dir, fmt.Sprintf("c%d-%d", c, n))
	if err := os.WriteFile(src, data, 0o644); err != nil {
		r.Start, r.End, r.Error = time.Now(), time.Now(), err.Error()
		return r
	}
	defer os.Remove(src)
	r.Start = time.Now()
	res := l.in.Run(ctx, nil, "pollux", "cp", src, r.Path)
	r.End = time.Now()
	r.Code, r.OK = res.Code, res.Code == 0
	if !r.OK {
		r.Error = lastLine(res.Stderr)
	}
	return r
}

func (l *Load) get(ctx context.Context, c, n int, of Record) Record {
	r := Record{Client: c, Op: "get", Path: of.Path, Size: of.Size, Adler32: of.Adler32}
	dst := filepath.Join(l.o.Dir, fmt.Sprintf("c%d-%d.get", c, n))
	defer os.Remove(dst)
	r.Start = time.Now()
	res := l.in.Run(ctx, nil, "pollux", "cp", r.Path, dst)
	r.End = time.Now()
	r.Code = res.Code
	if res.Code != 0 {
		r.Error = lastLine(res.Stderr)
		return r
	}
	got, err := os.ReadFile(dst)
	switch sum := client.Adler32(adler32.Checksum(got)); {
	case err != nil:
		r.Error = err.Error()
	case len(got) != of.Size || sum != of.Adler32:
		r.Error = fmt.Sprintf("CORRUPT: got %d bytes with adler32 %s, stored %d bytes with adler32 %s", len(got), sum, of.Size, of.Adler32)
	default:
		r.OK = true
	}
	return r
}

// Verification is what reading back every acknowledged put found.
type Verification struct {
	Acknowledged int      // puts the clients were told are stored
	Verified     int      // of those, read back with their size and checksum
	Lost         []string // acknowledged puts that do not read back as sent, with why
	CorruptGets  []string // gets that were answered with wrong bytes
}

// Verify reads back every acknowledged put with stager_qry (status, size, checksum in
// the catalogue) and a download (the bytes), with a few clients side by side.
func Verify(ctx context.Context, in *e2e.Instance, records []Record, dir string) Verification {
	var v Verification
	var puts []Record
	for _, r := range records {
		switch {
		case r.Op == "put" && r.OK:
			puts = append(puts, r)
		case r.Op == "get" && strings.HasPrefix(r.Error, "CORRUPT"):
			v.CorruptGets = append(v.CorruptGets, r.Path+": "+r.Error)
		}
	}
	v.Acknowledged = len(puts)
	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan int)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				why := verifyOne(ctx, in, puts[i], filepath.Join(dir, fmt.Sprintf("verify-%d", i)))
				mu.Lock()
				if why == "" {
					v.Verified++
				} else {
					v.Lost = append(v.Lost, puts[i].Path+": "+why)
				}
				mu.Unlock()
			}
		}()
	}
	for i := range puts {
		work <- i
	}
	close(work)
	wg.Wait()
	sort.Strings(v.Lost)
	return v
}

func verifyOne(ctx context.Context, in *e2e.Instance, p Record, dst string) string {
	q := in.Run(ctx, nil, "stager_qry", "-M", p.Path)
	want := fmt.Sprintf("%s STAGED %d %s", p.Path, p.Size, p.Adler32)
	if got := strings.TrimSpace(q.Stdout); q.Code != 0 || got != want {
		return fmt.Sprintf("stager_qry says %q (exit %d, %s), want %q", got, q.Code, lastLine(q.Stderr), want)
	}
	defer os.Remove(dst)
	if g := in.Run(ctx, nil, "pollux", "cp", p.Path, dst); g.Code != 0 {
		return fmt.Sprintf("download failed (exit %d): %s", g.Code, lastLine(g.Stderr))
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		return err.Error()
	}
	if sum := client.Adler32(adler32.Checksum(got)); len(got) != p.Size || sum != p.Adler32 {
		return fmt.Sprintf("downloaded %d bytes with adler32 %s, sent %d bytes with adler32 %s", len(got), sum, p.Size, p.Adler32)
	}
	return ""
}

// Outage is what the clients saw of one failure at At.
type Outage struct {
	At time.Time
	// FirstSuccess is the end of the first acknowledged request that started after At:
	// service was back for a new request then.
	FirstSuccess time.Time
	// Failed counts requests refused between At and FirstSuccess, by reason.
	Failed map[string]int
	// InFlight counts the requests under way at At; Longest is the longest of them, or of
	// those started before FirstSuccess.
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

// OutageAt reads the records for a failure at t.
func OutageAt(records []Record, t time.Time) Outage {
	o := Outage{At: t, Failed: map[string]int{}}
	for _, r := range records {
		if r.OK && !r.Start.Before(t) && (o.FirstSuccess.IsZero() || r.End.Before(o.FirstSuccess)) {
			o.FirstSuccess = r.End
		}
	}
	for _, r := range records {
		if !r.OK && !r.End.Before(t) && (o.FirstSuccess.IsZero() || r.End.Before(o.FirstSuccess)) {
			o.Failed[r.Op+": "+r.Error]++
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

// SucceededSince counts the acknowledged requests that started at or after t.
func SucceededSince(records []Record, t time.Time) int {
	n := 0
	for _, r := range records {
		if r.OK && !r.Start.Before(t) {
			n++
		}
	}
	return n
}

// Summary counts requests by operation and outcome, and failures by reason.
func Summary(records []Record) string {
	type count struct{ ok, failed int }
	by := map[string]*count{}
	reasons := map[string]int{}
	for _, r := range records {
		c := by[r.Op]
		if c == nil {
			c = &count{}
			by[r.Op] = c
		}
		if r.OK {
			c.ok++
		} else {
			c.failed++
			reasons[r.Op+": "+r.Error]++
		}
	}
	var b strings.Builder
	for _, op := range []string{"put", "get"} {
		if c := by[op]; c != nil {
			fmt.Fprintf(&b, "%ss: %d issued, %d acknowledged, %d failed\n", op, c.ok+c.failed, c.ok, c.failed)
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

// ReadLog reads a clients' log back.
func ReadLog(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, r)
	}
	return out, sc.Err()
}

// lastLine is the last line a command wrote: a client's error comes last.
func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}

func randInt(n int) int {
	v, _ := rand.Int(rand.Reader, big.NewInt(int64(n)))
	return int(v.Int64())
}
