// Package certify is Pollux's certification suite: functional cases that run against any
// live instance — a laptop's `make run`, a staging alias, production before an upgrade —
// as a client would, through the library the client commands are made of (cmd/client),
// in-process. CASTOR2's c2test played this part on its way to production.
//
// Every case has a stable id, a one-line purpose, and reports the evidence it checked.
// The registry of cases is the one source of the catalogue (--list, docs/certification.md),
// of the human summary and of the JUnit and JSON reports.
//
// Safety on a shared instance: a case writes only below the run's namespace prefix
// (Config.Namespace, by default /pollux/certify/<run id>) through T.Path, which journals
// every path before it is created; the run removes what the journal names at its end, and
// a run that was interrupted leaves its journal behind for the next run to clean up at its
// start. The database is used only by the operator's cases, and only when Config.Admin is
// set.
package certify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/pollux-storage/pollux/cmd/client"
	"github.com/pollux-storage/pollux/daemons/rhd/api"
)

// Need is what a case requires of the run beyond one user's token and the client API.
type Need string

const (
	// NeedUser2 is a second user's token (Config.Token2).
	NeedUser2 Need = "second user"
	// NeedAdmin is the operator's access: the database URL and pollux-admin (--admin).
	NeedAdmin Need = "admin"
	// NeedDrain is a way to drain one request handler and bring it back
	// (Config.DrainRHD): only a harness that runs the instance itself has it.
	NeedDrain Need = "drain hook"
	// NeedDiskHook is a way to stop the disk server behind a mover and start it again
	// (Config.StopDiskServer): only a harness that runs the instance itself has it.
	NeedDiskHook Need = "disk server hook"
	// NeedDiskKill is a way to kill the disk server behind a mover and start it again
	// (Config.KillDiskServer).
	NeedDiskKill Need = "disk server kill hook"
	// NeedQuota is the quota feature on the instance (rhd answers GET /v1/quotas).
	NeedQuota Need = "quota"
)

// Case is one certification case.
type Case struct {
	// ID is stable across releases: reports are compared by it. Lowercase words joined
	// by '-', grouped by '/' ("put/empty-file").
	ID string
	// Purpose says in one line what the case proves.
	Purpose string
	// Needs lists what the case requires; without it the case is skipped, saying why.
	Needs []Need
	// Timeout bounds the case (default DefaultCaseTimeout).
	Timeout time.Duration
	// Run does the case; it fails through T's methods.
	Run func(t *T)
}

// DefaultCaseTimeout bounds a case that gives no Timeout.
const DefaultCaseTimeout = 90 * time.Second

var registry []Case

var idPattern = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*(/[a-z0-9]+(-[a-z0-9]+)*)+$`)

// register adds cases to the registry at init. A duplicate or malformed id is a
// programming error caught by the first run of any test of this package.
func register(cs ...Case) {
	for _, c := range cs {
		if !idPattern.MatchString(c.ID) {
			panic(fmt.Sprintf("certify: case id %q is not lowercase words joined by - and grouped by /", c.ID))
		}
		if slices.ContainsFunc(registry, func(o Case) bool { return o.ID == c.ID }) {
			panic(fmt.Sprintf("certify: case id %q registered twice", c.ID))
		}
		if c.Purpose == "" || strings.Contains(c.Purpose, "\n") {
			panic(fmt.Sprintf("certify: case %s needs a one-line purpose", c.ID))
		}
		registry = append(registry, c)
	}
}

// Cases returns every registered case, sorted by id.
func Cases() []Case {
	out := slices.Clone(registry)
	slices.SortFunc(out, func(a, b Case) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Config is what a run needs to reach an instance.
type Config struct {
	// StageHost names the request handlers, as STAGE_HOST does.
	StageHost string
	// ServiceClass is the service class the cases write to (default "default").
	ServiceClass string
	// Token is the first user's token; Token2 a second user's (optional).
	Token, Token2 string
	// User and User2 are their names, when known: messages are checked against them.
	User, User2 string
	// Namespace is where the run writes (default /pollux/certify/<run id>). It must lie
	// under /pollux/.
	Namespace string
	// RunID names the run (default: the time and a random suffix).
	RunID string
	// Scratch holds local files and the journal (default a new temporary directory).
	Scratch string
	// Journal is the file that lists every path a run created, for the cleanup of an
	// interrupted run (default: under the user's state directory, one per STAGE_HOST).
	Journal string
	// Admin enables the operator's cases; DatabaseURL and AdminBin (the pollux-admin
	// binary, default from PATH) are then required.
	Admin       bool
	DatabaseURL string
	AdminBin    string
	// Env is added to the environment of pollux-admin (e.g. POLLUX_DATABASE_URL).
	Env []string
	// Run selects cases by id: a regular expression (empty: all).
	Run string
	// ServiceTimeout is the clients' --service-timeout (default 20 s): a case about an
	// outage must not wait the users' 30 s.
	ServiceTimeout time.Duration
	// DrainRHD, when set, drains one request handler (SIGTERM), returns the URL of its
	// /readyz on the clients' port, and a function that brings it back.
	DrainRHD func(ctx context.Context) (readyz string, restore func(context.Context) error, err error)
	// StopDiskServer, when set, stops (SIGTERM) the disk server whose mover serves
	// moverURL, and returns a function that starts it again.
	StopDiskServer func(ctx context.Context, moverURL string) (restore func(context.Context) error, err error)
	// KillDiskServer, when set, kills (SIGKILL) the disk server whose mover serves
	// moverURL and starts it again, returning once it is ready.
	KillDiskServer func(ctx context.Context, moverURL string) error
	// Progress, when set, hears one line per case as it ends.
	Progress func(Result)
}

// Status is how a case ended.
type Status string

// Case outcomes.
const (
	Passed  Status = "pass"
	Failed  Status = "fail"
	Skipped Status = "skip"
)

// Result is one case's outcome.
type Result struct {
	ID       string        `json:"id"`
	Purpose  string        `json:"purpose"`
	Status   Status        `json:"status"`
	Evidence []string      `json:"evidence,omitempty"`
	Failure  string        `json:"failure,omitempty"`
	Skip     string        `json:"skip_reason,omitempty"`
	Duration time.Duration `json:"duration_ns"`
}

// Report is a whole run.
type Report struct {
	RunID     string    `json:"run_id"`
	StageHost string    `json:"stage_host"`
	Namespace string    `json:"namespace"`
	Started   time.Time `json:"started"`
	// Duration is the whole run, cleanup included.
	Duration time.Duration `json:"duration_ns"`
	Results  []Result      `json:"results"`
	// Cleanup says what the cleanup did (and what it could not remove).
	Cleanup []string `json:"cleanup,omitempty"`
}

// Counts returns how many cases passed, failed and were skipped.
func (r Report) Counts() (pass, fail, skip int) {
	for _, x := range r.Results {
		switch x.Status {
		case Passed:
			pass++
		case Failed:
			fail++
		case Skipped:
			skip++
		}
	}
	return
}

// OK says every case that ran passed.
func (r Report) OK() bool { _, f, _ := r.Counts(); return f == 0 }

// Run runs the selected cases one after another and cleans up. The error is for a run
// that could not start (bad configuration, no scratch space); failed cases are in the
// report.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if err := cfg.fill(); err != nil {
		return Report{}, err
	}
	var sel *regexp.Regexp
	if cfg.Run != "" {
		var err error
		if sel, err = regexp.Compile(cfg.Run); err != nil {
			return Report{}, fmt.Errorf("--run %q is not a regular expression: %w", cfg.Run, err)
		}
	}
	s := &suite{cfg: cfg}
	var closeHTTP func()
	s.http, closeHTTP = newHTTPClient()
	defer closeHTTP()
	rep := Report{RunID: cfg.RunID, StageHost: cfg.StageHost, Namespace: cfg.Namespace, Started: time.Now().UTC()}
	j, leftovers, err := openJournal(cfg.Journal)
	if err != nil {
		return rep, err
	}
	s.journal = j
	defer j.close()
	s.quotas = s.probeQuotas(ctx)
	// A previous run that was interrupted left its journal: remove what it created first,
	// so that a shared instance does not fill with certification files.
	if len(leftovers) > 0 {
		rep.Cleanup = append(rep.Cleanup, s.cleanup(ctx, leftovers, "a previous interrupted run")...)
	}
	for _, c := range Cases() {
		if sel != nil && !sel.MatchString(c.ID) {
			continue
		}
		r := s.runCase(ctx, c)
		rep.Results = append(rep.Results, r)
		if cfg.Progress != nil {
			cfg.Progress(r)
		}
		if ctx.Err() != nil {
			break
		}
	}
	rep.Cleanup = append(rep.Cleanup, s.cleanup(context.WithoutCancel(ctx), j.entries(), "this run")...)
	rep.Duration = time.Since(rep.Started)
	return rep, nil
}

// probeQuotas says whether the instance answers the first user's GET /v1/quotas: a
// service error means none (an older instance), whatever else it says.
func (s *suite) probeQuotas(ctx context.Context) bool {
	cfg, err := client.ConfigFromEnv(s.getenv(User1))
	if err != nil {
		return false
	}
	cl := client.New(cfg)
	defer cl.Close()
	cl.ServiceTimeout = s.cfg.ServiceTimeout
	_, err = cl.Quotas(ctx)
	return err == nil
}

func (cfg *Config) fill() error {
	if cfg.StageHost == "" {
		return errors.New("no instance given: --stage-host (or STAGE_HOST) names its request handlers")
	}
	if cfg.Token == "" {
		return errors.New("no token given: --token (or POLLUX_TOKEN), or --tokens-file")
	}
	if cfg.ServiceClass == "" {
		cfg.ServiceClass = "default"
	}
	if cfg.RunID == "" {
		var b [3]byte
		_, _ = rand.Read(b[:])
		cfg.RunID = time.Now().UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "/pollux/certify/" + cfg.RunID
	}
	cfg.Namespace = strings.TrimRight(cfg.Namespace, "/")
	if !strings.HasPrefix(cfg.Namespace, "/pollux/") || strings.Contains(cfg.Namespace, "/../") || strings.HasSuffix(cfg.Namespace, "/..") {
		return fmt.Errorf("--namespace %q must be a directory under /pollux/ without .. components", cfg.Namespace)
	}
	if cfg.Scratch == "" {
		d, err := os.MkdirTemp("", "pollux-certify-")
		if err != nil {
			return fmt.Errorf("scratch directory: %w", err)
		}
		cfg.Scratch = d
	}
	if cfg.Journal == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			dir = cfg.Scratch
		}
		// One journal per instance: two runs against one instance from one account share
		// it, and the second cleans up after the first if that one was interrupted.
		name := regexp.MustCompile(`[^A-Za-z0-9.-]+`).ReplaceAllString(cfg.StageHost, "_")
		cfg.Journal = filepath.Join(dir, "pollux-certify", name+".journal")
	}
	if cfg.Admin {
		if cfg.DatabaseURL == "" {
			return errors.New("--admin needs --database-url (or POLLUX_DATABASE_URL): the operator's cases use pollux-admin")
		}
		if cfg.AdminBin == "" {
			cfg.AdminBin = "pollux-admin"
		}
	}
	if cfg.ServiceTimeout <= 0 {
		cfg.ServiceTimeout = 20 * time.Second
	}
	return nil
}

// suite is one run's state shared by its cases.
type suite struct {
	cfg     Config
	journal *journal
	http    *http.Client
	// quotas says whether the instance has quotas (set at the start of the run).
	quotas bool
}

func (s *suite) has(n Need) (bool, string) {
	switch n {
	case NeedUser2:
		return s.cfg.Token2 != "", "needs a second user's token (--token2 or a --tokens-file with two users)"
	case NeedAdmin:
		return s.cfg.Admin, "an operator's case: run with --admin --database-url"
	case NeedDrain:
		return s.cfg.DrainRHD != nil, "needs to drain a request handler, which only a harness running the instance can do (the suite's own test does)"
	case NeedDiskHook:
		return s.cfg.StopDiskServer != nil, "needs to stop a disk server and start it again, which only a harness running the instance can do (the suite's own test does)"
	case NeedDiskKill:
		return s.cfg.KillDiskServer != nil, "needs to kill a disk server and start it again, which only a harness running the instance can do (the suite's own test does)"
	case NeedQuota:
		// Quotas are checked by every instance of this version; one that answers no
		// GET /v1/quotas predates them.
		return s.quotas, "the instance has no quotas (rhd answers no " + api.PathQuotas + ")"
	}
	return false, "unknown need " + string(n)
}

// failNow and skipNow end a case from deep inside it.
type failNow struct{}
type skipNow struct{}

func (s *suite) runCase(ctx context.Context, c Case) (r Result) {
	r = Result{ID: c.ID, Purpose: c.Purpose}
	for _, n := range c.Needs {
		if ok, why := s.has(n); !ok {
			r.Status, r.Skip = Skipped, why
			return r
		}
	}
	timeout := c.Timeout
	if timeout == 0 {
		timeout = DefaultCaseTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := &T{Ctx: ctx, s: s, c: c, dir: filepath.Join(s.cfg.Scratch, strings.ReplaceAll(c.ID, "/", "_"))}
	start := time.Now()
	defer func() {
		for i := len(t.cleanups) - 1; i >= 0; i-- {
			t.cleanups[i]()
		}
		_ = os.RemoveAll(t.dir)
		r.Duration = time.Since(start)
		r.Evidence = t.evidence
		switch v := recover().(type) {
		case nil:
			r.Status = Passed
		case failNow:
			r.Status, r.Failure = Failed, t.failure
		case skipNow:
			r.Status, r.Skip = Skipped, t.skip
		default:
			r.Status, r.Failure = Failed, fmt.Sprintf("panic: %v\n%s", v, debug.Stack())
		}
		if r.Status == Failed && ctx.Err() != nil {
			r.Failure += fmt.Sprintf(" (the case ran out of its %s)", timeout)
		}
	}()
	if err := os.MkdirAll(t.dir, 0o755); err != nil {
		t.Fatalf("scratch directory: %v", err)
	}
	c.Run(t)
	return r
}
