// Package load is the failure suites' steady load and their judge. Clients put, get and
// remove real files through the real client commands, each logging every operation it
// issued and whether the service acknowledged it (exit code 0); Verify then checks, from that
// log, the files themselves and the database, that nothing acknowledged was lost: every
// acknowledged put reads back with its checksum, every acknowledged rm took effect, every
// request reached a final state that agrees with what its client was told, and no request
// is stuck.
//
// Each operation carries a user tag of its own (-U), which the service keeps with the
// request; that is how the judge finds the requests of an operation whose client never
// heard back.
package load

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"hash/adler32"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Result is what one client command did.
type Result struct {
	Code           int
	Stdout, Stderr string
}

// Runner runs a client command (pollux, stager_rm, stager_qry) with the instance's client
// environment, wherever the clients live (this host, a network namespace).
type Runner func(ctx context.Context, name string, args ...string) Result

// Config shapes the load.
type Config struct {
	// Run runs the client commands.
	Run Runner
	// Dir holds the local files.
	Dir string
	// Prefix is the Pollux directory the load writes under (a run of its own).
	Prefix string
	// Clients is the number of concurrent clients (default 4).
	Clients int
	// MinSize and MaxSize bound the files' sizes (default 1 KiB to 256 KiB).
	MinSize, MaxSize int
	// Writers is how many of the clients only put (the others mix): a put needs no
	// particular disk server, so a test can count on writers' acknowledgements while a
	// server holding the only copy of some files is away and the readers of those wait.
	Writers int
	// Put, Get and Rm weigh the operations (0: the default 5, 3, 1; negative: none).
	Put, Get, Rm int
	// Pause is how long a client waits between two operations (default 20 ms): the load
	// is bounded, never a flood.
	Pause time.Duration
	// OpTimeout bounds one client command (default 2 min); a command cut off is recorded
	// as not acknowledged.
	OpTimeout time.Duration
	// Limit, when above 0, is how many operations the load issues in all; the clients
	// stop once it is reached (Done says when they have).
	Limit int
	// Rate, when above 0, paces the whole load at this many operations a second on an
	// open schedule (see pace): each client takes the next permit instead of pausing, so
	// Clients bounds the operations in flight. 0 runs each client as fast as Pause lets it.
	Rate float64
	// Burst raises Rate by its Factor for its For at the end of every Every (with Rate).
	Burst Burst
	// LogPath, when set, receives every operation as a JSON line as soon as it ends, so
	// that the clients' log outlives a run that is cut short (ReadJournal reads it back).
	LogPath string
}

// Op is one operation as its client saw it.
type Op struct {
	N       int       `json:"n"`
	Client  int       `json:"client"`
	Kind    string    `json:"kind"` // put, get, rm
	Path    string    `json:"path"`
	Tag     string    `json:"tag"`
	Size    int       `json:"size,omitempty"`
	Adler32 uint32    `json:"adler32,omitempty"`
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	Code    int       `json:"code"`
	Stderr  string    `json:"stderr,omitempty"`
}

// Acked reports whether the service acknowledged the operation.
func (o Op) Acked() bool { return o.Code == 0 }

// Load is a running load.
type Load struct {
	cfg    Config
	cancel context.CancelFunc
	done   sync.WaitGroup

	mu       sync.Mutex
	ops      []Op
	files    map[string]*file // by remote path
	next     int
	journal  *os.File
	enc      *json.Encoder
	finished chan struct{}
	// permits is the pacer's schedule, when Rate is set.
	permits chan struct{}
}

type file struct {
	size    int
	adler32 uint32
	local   string
	stored  bool // an acknowledged put
	readers int
	removed bool // an rm was issued (acknowledged or not)
}

// Start launches the clients. They run until Stop or until ctx ends.
func Start(ctx context.Context, cfg Config) (*Load, error) {
	if cfg.Run == nil || cfg.Dir == "" || !strings.HasPrefix(cfg.Prefix, "/pollux/") {
		return nil, fmt.Errorf("load: Run, Dir and a Prefix under /pollux/ are required (prefix %q)", cfg.Prefix)
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.Clients, 4)
	def(&cfg.MinSize, 1<<10)
	def(&cfg.MaxSize, 256<<10)
	weight := func(v *int, d int) {
		switch {
		case *v == 0:
			*v = d
		case *v < 0:
			*v = 0 // none of this kind
		}
	}
	weight(&cfg.Put, 5)
	weight(&cfg.Get, 3)
	weight(&cfg.Rm, 1)
	if cfg.Put == 0 {
		return nil, errors.New("load: puts cannot be turned off: every other operation needs a stored file")
	}
	if cfg.Writers < 0 || cfg.Writers > cfg.Clients {
		return nil, fmt.Errorf("load: Writers %d must be between 0 and Clients (%d)", cfg.Writers, cfg.Clients)
	}
	if cfg.MaxSize < cfg.MinSize {
		return nil, fmt.Errorf("load: MaxSize %d is below MinSize %d", cfg.MaxSize, cfg.MinSize)
	}
	if cfg.Pause <= 0 {
		cfg.Pause = 20 * time.Millisecond
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = 2 * time.Minute
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	l := &Load{cfg: cfg, cancel: cancel, files: map[string]*file{}}
	if cfg.LogPath != "" {
		f, err := os.Create(cfg.LogPath)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("load: clients' log: %w", err)
		}
		l.journal, l.enc = f, json.NewEncoder(f)
	}
	if cfg.Rate < 0 {
		cancel()
		return nil, fmt.Errorf("load: Rate %g must not be negative", cfg.Rate)
	}
	if cfg.Rate > 0 {
		l.permits = make(chan struct{})
		go l.pace(ctx, l.permits)
	}
	l.finished = make(chan struct{})
	for c := range cfg.Clients {
		l.done.Add(1)
		go func() { defer l.done.Done(); l.client(ctx, c) }()
	}
	go func() { l.done.Wait(); close(l.finished) }()
	return l, nil
}

// Done is closed once every client has stopped: after Stop, or once Limit operations
// were issued and ended, or when the load's context ended.
func (l *Load) Done() <-chan struct{} { return l.finished }

// Stop lets every client finish its operation in flight and returns the log.
func (l *Load) Stop() []Op {
	l.mu.Lock()
	l.next = -1 // no new operation starts
	l.mu.Unlock()
	l.done.Wait()
	l.cancel()
	if l.journal != nil {
		l.journal.Close()
	}
	return l.Ops()
}

// Ops returns the operations ended so far, in the order they ended.
func (l *Load) Ops() []Op {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.ops)
}

func (l *Load) client(ctx context.Context, c int) {
	rnd := mrand.New(mrand.NewPCG(uint64(c)+1, uint64(time.Now().UnixNano())))
	for ctx.Err() == nil {
		if l.permits != nil {
			select {
			case <-ctx.Done():
				return
			case <-l.permits:
			}
		}
		op, ok := l.pick(rnd, c)
		if !ok {
			return
		}
		l.do(ctx, &op)
		l.finish(op)
		if l.permits != nil {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(l.cfg.Pause):
		}
	}
}

// pick chooses the next operation: a get reads, and an rm removes, only a file whose put
// was acknowledged, never one an rm was issued for, and an rm never a file being read.
func (l *Load) pick(rnd *mrand.Rand, c int) (Op, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.next < 0 || (l.cfg.Limit > 0 && l.next >= l.cfg.Limit) {
		return Op{}, false
	}
	n := l.next
	l.next++
	op := Op{N: n, Client: c, Tag: fmt.Sprintf("load-%d", n)}
	var readable, removable []string
	for p, f := range l.files {
		if f.stored && !f.removed {
			readable = append(readable, p)
			if f.readers == 0 {
				removable = append(removable, p)
			}
		}
	}
	slices.Sort(readable) // map order is random; the choice should depend on rnd alone
	slices.Sort(removable)
	w := rnd.IntN(l.cfg.Put + l.cfg.Get + l.cfg.Rm)
	if c < l.cfg.Writers {
		w = 0 // a writer only puts
	}
	switch {
	case w >= l.cfg.Put+l.cfg.Get && len(removable) > 0:
		op.Kind, op.Path = "rm", removable[rnd.IntN(len(removable))]
		l.files[op.Path].removed = true
	case w >= l.cfg.Put && len(readable) > 0:
		op.Kind, op.Path = "get", readable[rnd.IntN(len(readable))]
		l.files[op.Path].readers++
	default:
		op.Kind, op.Path = "put", fmt.Sprintf("%s/f%06d", strings.TrimSuffix(l.cfg.Prefix, "/"), n)
		op.Size = l.cfg.MinSize + rnd.IntN(l.cfg.MaxSize-l.cfg.MinSize+1)
		l.files[op.Path] = &file{size: op.Size}
	}
	if f := l.files[op.Path]; op.Kind != "put" {
		op.Size, op.Adler32 = f.size, f.adler32
	}
	return op, true
}

func (l *Load) do(ctx context.Context, op *Op) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.OpTimeout)
	defer cancel()
	op.Start = time.Now()
	var r Result
	switch op.Kind {
	case "put":
		local := filepath.Join(l.cfg.Dir, fmt.Sprintf("put-%06d", op.N))
		b := make([]byte, op.Size)
		_, _ = rand.Read(b)
		if err := os.WriteFile(local, b, 0o644); err != nil {
			r = Result{Code: -1, Stderr: err.Error()}
			break
		}
		op.Adler32 = adler32.Checksum(b)
		l.mu.Lock()
		l.files[op.Path].adler32, l.files[op.Path].local = op.Adler32, local
		l.mu.Unlock()
		r = l.cfg.Run(ctx, "pollux", "cp", "-U", op.Tag, local, op.Path)
	case "get":
		local := filepath.Join(l.cfg.Dir, fmt.Sprintf("get-%06d", op.N))
		r = l.cfg.Run(ctx, "pollux", "cp", "-U", op.Tag, op.Path, local)
		if r.Code == 0 {
			// The client checks the catalogue's checksum; check the bytes against what was
			// put, too.
			b, err := os.ReadFile(local)
			switch {
			case err != nil:
				r = Result{Code: -2, Stderr: "read the downloaded copy: " + err.Error()}
			case len(b) != op.Size || adler32.Checksum(b) != op.Adler32:
				r = Result{Code: -2, Stderr: fmt.Sprintf("downloaded %d bytes, adler32 %08x; put %d bytes, adler32 %08x",
					len(b), adler32.Checksum(b), op.Size, op.Adler32)}
			}
			os.Remove(local)
		}
	case "rm":
		r = l.cfg.Run(ctx, "stager_rm", "-U", op.Tag, "-M", op.Path)
	}
	op.End, op.Code, op.Stderr = time.Now(), r.Code, strings.TrimSpace(r.Stderr)
	if op.Code != 0 && ctx.Err() != nil && op.Stderr == "" {
		op.Stderr = "cut off by the load: " + ctx.Err().Error()
	}
}

func (l *Load) finish(op Op) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.files[op.Path]
	switch op.Kind {
	case "put":
		f.stored = op.Acked()
	case "get":
		f.readers--
	}
	l.ops = append(l.ops, op)
	if l.enc != nil {
		_ = l.enc.Encode(op) // the log in memory is the one judged; the file is for people
	}
}

// ReadJournal reads a clients' log (Config.LogPath, WriteJournal) back.
func ReadJournal(path string) ([]Op, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Op
	dec := json.NewDecoder(f)
	for dec.More() {
		var o Op
		if err := dec.Decode(&o); err != nil {
			return out, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, o)
	}
	return out, nil
}

// WriteJournal writes the log as JSON lines, for a human after a failure.
func WriteJournal(path string, ops []Op) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	for _, o := range ops {
		if err := enc.Encode(o); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// ResumedAfter is how long after t the service answered again: the end of the first
// acknowledged operation that started at or after t, less t; false when none did.
func ResumedAfter(ops []Op, t time.Time) (time.Duration, bool) {
	best := time.Duration(-1)
	for _, o := range ops {
		if o.Acked() && !o.Start.Before(t) {
			if d := o.End.Sub(t); best < 0 || d < best {
				best = d
			}
		}
	}
	return best, best >= 0
}
