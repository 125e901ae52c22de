package certify

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"hash/adler32"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pollux-storage/pollux/cmd/client"
	"github.com/pollux-storage/pollux/daemons/rhd/api"
)

// T is a running case: its context, its scratch directory, its paths in Pollux, and the
// evidence it gathers. A failure ends the case at once (Fatalf), as testing.T.FailNow does.
type T struct {
	// Ctx ends with the case's timeout or the run's interruption.
	Ctx context.Context

	s        *suite
	c        Case
	dir      string
	n        int
	evidence []string
	failure  string
	skip     string
	cleanups []func()
}

// Evidence records what the case checked, in words: the report shows it for every case.
func (t *T) Evidence(format string, args ...any) {
	t.evidence = append(t.evidence, fmt.Sprintf(format, args...))
}

// Fatalf fails the case and ends it.
func (t *T) Fatalf(format string, args ...any) {
	t.failure = fmt.Sprintf(format, args...)
	panic(failNow{})
}

// Skipf ends the case as skipped, saying why.
func (t *T) Skipf(format string, args ...any) {
	t.skip = fmt.Sprintf(format, args...)
	panic(skipNow{})
}

// Check fails the case unless ok.
func (t *T) Check(ok bool, format string, args ...any) {
	if !ok {
		t.Fatalf(format, args...)
	}
}

// Cleanup runs f when the case ends, last registered first.
func (t *T) Cleanup(f func()) { t.cleanups = append(t.cleanups, f) }

// Users.
const (
	User1 = 1
	User2 = 2
)

// Dir is the case's directory in Pollux: the run's namespace, then the case's id.
func (t *T) Dir() string { return t.s.cfg.Namespace + "/" + t.c.ID }

// Path returns a path in the case's directory that user 1 will create, journaled first so
// that an interrupted run's files are removed by the next run.
func (t *T) Path(name string) string { return t.PathAs(User1, name) }

// PathAs is Path for a file that user creates.
func (t *T) PathAs(user int, name string) string {
	p := t.Dir() + "/" + name
	if err := t.s.journal.add(user, p); err != nil {
		t.Fatalf("journal %s: %v", p, err)
	}
	return p
}

// Unused returns a path in the case's directory that nothing creates (not journaled).
func (t *T) Unused(name string) string { return t.Dir() + "/" + name }

// Local returns the path of a local file in the case's scratch directory.
func (t *T) Local(name string) string { return filepath.Join(t.dir, name) }

// File writes a local file of size random bytes and returns its path and content.
func (t *T) File(name string, size int) (string, []byte) {
	b := make([]byte, size)
	_, _ = rand.Read(b)
	p := t.Local(name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatalf("write local %s: %v", p, err)
	}
	return p, b
}

// Adler is a content's checksum as Pollux prints it.
func Adler(b []byte) string { return client.Adler32(adler32.Checksum(b)) }

// Out is what one client command did.
type Out struct {
	Name           string
	Args           []string
	Code           int
	Stdout, Stderr string
	Took           time.Duration
}

// String shows the command and its output, for a failure's message.
func (o Out) String() string {
	return fmt.Sprintf("`%s %s` exited %d after %s\nstdout: %s\nstderr: %s", o.Name, strings.Join(o.Args, " "), o.Code,
		o.Took.Round(time.Millisecond), strings.TrimSpace(o.Stdout), strings.TrimSpace(o.Stderr))
}

// commands are the client commands, run in-process through the library they are made of.
var commands = map[string]func(context.Context, client.Env) int{
	"stager_put":          client.Put,
	"stager_get":          client.Get,
	"stager_putdone":      client.Putdone,
	"stager_prepareToGet": client.PrepareToGet,
	"stager_rm":           client.Rm,
	"stager_qry":          client.Qry,
	"pollux":              client.Pollux,
}

func (s *suite) getenv(user int) func(string) string {
	tok := s.cfg.Token
	if user == User2 {
		tok = s.cfg.Token2
	}
	vars := map[string]string{
		client.EnvHost:           s.cfg.StageHost,
		client.EnvServiceClass:   s.cfg.ServiceClass,
		client.EnvToken:          tok,
		"POLLUX_SERVICE_TIMEOUT": s.cfg.ServiceTimeout.String(),
	}
	// How the instance is reached (TLS, a port) is the caller's environment's to say.
	for _, k := range []string{client.EnvCAFile, client.EnvPort} {
		if v, ok := os.LookupEnv(k); ok {
			vars[k] = v
		}
	}
	return func(k string) string { return vars[k] }
}

// Cmd runs a client command as user 1.
func (t *T) Cmd(name string, args ...string) Out { return t.CmdAs(User1, name, args...) }

// CmdAs runs a client command as user.
func (t *T) CmdAs(user int, name string, args ...string) Out {
	return t.s.cmd(t.Ctx, user, nil, name, args...)
}

func (s *suite) cmd(ctx context.Context, user int, getenv func(string) string, name string, args ...string) Out {
	run, ok := commands[name]
	if !ok {
		panic("certify: no client command " + name)
	}
	if getenv == nil {
		getenv = s.getenv(user)
	}
	var stdout, stderr syncBuffer
	start := time.Now()
	code := run(ctx, client.Env{Args: args, Getenv: getenv, Stdout: &stdout, Stderr: &stderr})
	return Out{Name: name, Args: args, Code: code, Stdout: stdout.String(), Stderr: stderr.String(), Took: time.Since(start)}
}

// CmdEnv runs a client command as user 1 with some variables of its environment changed.
func (t *T) CmdEnv(vars map[string]string, name string, args ...string) Out {
	base := t.s.getenv(User1)
	return t.s.cmd(t.Ctx, User1, func(k string) string {
		if v, ok := vars[k]; ok {
			return v
		}
		return base(k)
	}, name, args...)
}

// OK fails the case unless the command succeeded.
func (t *T) OK(o Out) Out {
	if o.Code != 0 {
		t.Fatalf("expected success: %s", o)
	}
	return o
}

// Fails fails the case unless the command exited with code and said each of want (on
// stdout or stderr); it records the evidence.
func (t *T) Fails(o Out, code int, want ...string) Out {
	if o.Code != code {
		t.Fatalf("expected exit code %d: %s", code, o)
	}
	all := o.Stdout + o.Stderr
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Fatalf("expected the output to say %q: %s", w, o)
		}
	}
	t.Evidence("%s exited %d: %s", o.Name, o.Code, firstLine(strings.TrimSpace(o.Stderr+"\n"+o.Stdout)))
	return o
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// Client returns a client library handle for user, for what the commands do not expose
// (raw submissions, mover calls).
func (t *T) Client(user int) *client.Client {
	cfg, err := client.ConfigFromEnv(t.s.getenv(user))
	if err != nil {
		t.Fatalf("client configuration: %v", err)
	}
	cl := client.New(cfg)
	cl.ServiceTimeout = t.s.cfg.ServiceTimeout
	t.Cleanup(cl.Close)
	return cl
}

// Submit submits a request through the client library without waiting and returns it.
func (t *T) Submit(cl *client.Client, typ string, paths ...string) api.SubmitResponse {
	sub, err := cl.Submit(t.Ctx, api.SubmitRequest{ID: client.NewRequestID(), Type: typ, ServiceClass: t.s.cfg.ServiceClass, Paths: paths}, 0)
	if err != nil {
		t.Fatalf("submit %s %v: %v", typ, paths, err)
	}
	return sub
}

// WaitRequest long-polls a request until cond holds (or the case's time ends).
func (t *T) WaitRequest(cl *client.Client, id, what string, cond func(api.Request) bool) api.Request {
	var since time.Time
	var last api.Request
	for {
		req, err := cl.Request(t.Ctx, id, since, 5*time.Second)
		if err != nil {
			t.Fatalf("waiting for request %s to be %s: %v (last seen: %s)", id, what, err, describe(last))
		}
		if cond(req) {
			return req
		}
		last, since = req, req.UpdatedAt
	}
}

// WaitStatus waits until the request's only subrequest has status.
func (t *T) WaitStatus(cl *client.Client, id, status string) api.Subrequest {
	req := t.WaitRequest(cl, id, status, func(r api.Request) bool {
		return len(r.Subrequests) == 1 && (r.Subrequests[0].Status == status || client.Over(r.Subrequests[0]))
	})
	s := req.Subrequests[0]
	if s.Status != status {
		t.Fatalf("subrequest of %s ended %s before reaching %s: %s %s", s.Path, s.Status, status, s.ErrorCode, s.ErrorMessage)
	}
	return s
}

func describe(r api.Request) string {
	if r.ID == "" {
		return "nothing yet"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "request %s", r.Status)
	for _, s := range r.Subrequests {
		fmt.Fprintf(&b, "; %s %s %s %s", s.Path, s.Status, s.Info, s.ErrorMessage)
	}
	return b.String()
}

// Admin runs pollux-admin with the database URL.
func (t *T) Admin(args ...string) Out {
	cmd := exec.CommandContext(t.Ctx, t.s.cfg.AdminBin, args...)
	cmd.Env = append(append(os.Environ(), "POLLUX_DATABASE_URL="+t.s.cfg.DatabaseURL), t.s.cfg.Env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			stderr.WriteString(err.Error())
		}
	}
	return Out{Name: "pollux-admin", Args: args, Code: code, Stdout: stdout.String(), Stderr: stderr.String(), Took: time.Since(start)}
}

// syncBuffer is a buffer the command and a watcher may use at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
