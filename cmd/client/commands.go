package client

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/framework/flagenv"
	"github.com/pollux-storage/pollux/model/wire"
)

// Env is a command's world: its arguments, environment and output. The mains build it
// from the process; tests build their own and run commands in-process.
type Env struct {
	Args   []string
	Getenv func(string) string
	Stdout io.Writer
	Stderr io.Writer
	// Terminal says Stderr is a terminal: progress bars are drawn only there.
	Terminal bool
	// Resolver looks up STAGE_HOST names; nil means the system's. Tests simulate a DNS
	// alias of many request handlers with it.
	Resolver Resolver
}

// Main runs a command as the process and returns its exit code. SIGINT and SIGTERM cancel
// the command's context.
func Main(run func(context.Context, Env) int) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	term := false
	if fi, err := os.Stderr.Stat(); err == nil {
		term = fi.Mode()&os.ModeCharDevice != 0
	}
	return run(ctx, Env{Args: os.Args[1:], Getenv: os.Getenv, Stdout: os.Stdout, Stderr: os.Stderr, Terminal: term})
}

const environment = `Environment:
  STAGE_HOST      the request handlers: host:port, a comma list of them, or a DNS alias
                  (tried in random order, failing over to the next); https://host:port
                  for request handlers serving TLS
  STAGE_PORT      port for STAGE_HOST entries without one (default 9000)
  STAGE_SVCCLASS  service class when -S is not given (default "default")
  POLLUX_TOKEN    your token (ask the operator for one); when unset, a WLCG token is
                  looked for in BEARER_TOKEN, BEARER_TOKEN_FILE, $XDG_RUNTIME_DIR/bt_u<uid>
                  and /tmp/bt_u<uid>, where token agents (oidc-agent, htgettoken) put it
  POLLUX_CA_FILE  PEM certificate authorities to verify https request handlers and
                  movers against (default: the system's)
  POLLUX_SERVICE_TIMEOUT
                  --service-timeout when the flag is not given

Exit codes: 0 success, 1 a user error (no such file, bad argument, conflict, permission),
2 a service error (unavailable, internal, cannot connect).
`

// options are the CASTOR-style flags the commands share.
type options struct {
	name   string
	paths  []string
	svc    string
	tag    string
	json   bool
	noWait bool
	file   string
	// serviceTimeout is --service-timeout.
	serviceTimeout time.Duration
}

// FlagServiceTimeout bounds how long a command waits while no request handler serves it.
const FlagServiceTimeout = "service-timeout"

// envFlags are the flags that also come from a POLLUX_* variable (flagenv.Name): those
// that say how the client behaves. Those that say what to do (-M, --file, --json) do not:
// a variable left in a shell must not change what a command does to the files.
var envFlags = []string{FlagServiceTimeout}

// clientFlags adds the flags of every command that talks to rhd.
func (o *options) clientFlags(fs *flag.FlagSet) {
	o.name = fs.Name()
	fs.DurationVar(&o.serviceTimeout, FlagServiceTimeout, DefaultServiceTimeout, fmt.Sprintf(
		"give up (exit 2) once no request handler has served a call for this `DURATION` (none reachable, or each answering 503 or nothing); a long poll's wait does not count (or %s)",
		flagenv.Name(FlagServiceTimeout)))
}

// fromEnv fills the flags of envFlags that the command line did not give from their
// variables, and checks them.
func (o *options) fromEnv(fs *flag.FlagSet, e Env) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for _, name := range envFlags {
		v := strings.TrimSpace(e.Getenv(flagenv.Name(name)))
		if given[name] || v == "" || fs.Lookup(name) == nil {
			continue
		}
		if err := fs.Set(name, v); err != nil {
			return errorf(wire.ErrorKindInvalid, "%s=%q is not a valid --%s: %v", flagenv.Name(name), v, name, err)
		}
	}
	if o.serviceTimeout <= 0 {
		return errorf(wire.ErrorKindInvalid, "--%s (or %s) must be a positive duration such as 30s, not %s",
			FlagServiceTimeout, flagenv.Name(FlagServiceTimeout), o.serviceTimeout)
	}
	return nil
}

type pathsFlag struct{ p *[]string }

func (f pathsFlag) String() string {
	if f.p == nil {
		return ""
	}
	return strings.Join(*f.p, ",")
}

func (f pathsFlag) Set(v string) error { *f.p = append(*f.p, v); return nil }

// connect makes the client the environment describes; a request without -S goes to
// STAGE_SVCCLASS.
func (o *options) connect(e Env) (*Client, error) {
	cfg, err := ConfigFromEnv(e.Getenv)
	if err != nil {
		return nil, err
	}
	cfg.Resolver = e.Resolver
	if o.svc == "" {
		o.svc = cfg.ServiceClass
	}
	cl := New(cfg)
	cl.ServiceTimeout, cl.Notices, cl.Name = o.serviceTimeout, e.Stderr, o.name
	return cl, nil
}

func newFlagSet(e Env, name, usage, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.Stderr, "%s — %s\n\nUsage: %s\n\nFlags:\n", name, summary, usage)
		fs.VisitAll(func(f *flag.Flag) {
			dash := "--"
			if len(f.Name) == 1 {
				dash = "-" // CASTOR's one-letter flags
			}
			typ, text := flag.UnquoteUsage(f)
			fmt.Fprintf(e.Stderr, "  %s\n        %s\n", strings.TrimSpace(dash+f.Name+" "+typ), text)
		})
		fmt.Fprintf(e.Stderr, "\n%s", environment)
	}
	return fs
}

// parse parses flags wherever they stand among the arguments and returns the others.
// done says the command ends now with code: after --help (0) or a command-line error (1,
// a user error; the flag package has said what was wrong).
func parse(fs *flag.FlagSet, args []string) (positional []string, code int, done bool) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, 0, true
			}
			return nil, wire.ErrorKindInvalid.ExitCode(), true
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, 0, false
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

// fail reports err on stderr (and, with --json, as an api.ErrorBody on stdout) and
// returns its exit code.
func fail(e Env, name string, asJSON bool, err error) int {
	if errors.Is(err, context.Canceled) {
		err = errorf(wire.ErrorKindUnavailable, "interrupted")
	}
	fmt.Fprintf(e.Stderr, "%s: %v\n", name, err)
	if asJSON {
		var ce *Error
		if !errors.As(err, &ce) {
			ce = &Error{Kind: wire.ErrorKindInternal, Message: err.Error()}
		}
		printJSON(e.Stdout, api.ErrorBody{Error: api.Error{Kind: string(ce.Kind), Code: ce.Code, Message: ce.Message}})
	}
	return ExitCode(err)
}

func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// requestCommand is a stager_* command that submits one request and waits for it.
type requestCommand struct {
	name, summary string
	typ           wire.RequestType
	until         func(api.Subrequest) bool
	// transfer is "upload" or "download" for a command with --file.
	transfer string
}

// Put is stager_put.
func Put(ctx context.Context, e Env) int {
	return runRequest(ctx, e, requestCommand{name: "stager_put", typ: wire.RequestTypePut, until: Ready, transfer: "upload",
		summary: "write files: wait until a disk server's mover is ready for each, print its endpoint, or upload a local file with --file"})
}

// Get is stager_get.
func Get(ctx context.Context, e Env) int {
	return runRequest(ctx, e, requestCommand{name: "stager_get", typ: wire.RequestTypeGet, until: Ready, transfer: "download",
		summary: "read files: wait until a disk server's mover is ready for each, print its endpoint, or download to a local file with --file"})
}

// Putdone is stager_putdone.
func Putdone(ctx context.Context, e Env) int {
	return runRequest(ctx, e, requestCommand{name: "stager_putdone", typ: wire.RequestTypePutdone, until: Over,
		summary: "close files written by stager_put, making their new content the one readers get"})
}

// PrepareToGet is stager_prepareToGet.
func PrepareToGet(ctx context.Context, e Env) int {
	return runRequest(ctx, e, requestCommand{name: "stager_prepareToGet", typ: wire.RequestTypePrepareToGet, until: Over,
		summary: "make files ready on disk without transferring them"})
}

// Rm is stager_rm.
func Rm(ctx context.Context, e Env) int {
	return runRequest(ctx, e, requestCommand{name: "stager_rm", typ: wire.RequestTypeRm, until: Over,
		summary: "remove files: their disk copies and namespace entries"})
}

// requestOutput is what a request command prints with --json.
type requestOutput struct {
	Request   api.Request      `json:"request"`
	Transfers []transferOutput `json:"transfers,omitempty"`
}

type transferOutput struct {
	Path  string `json:"path"`
	Local string `json:"local"`
	Moved
}

func runRequest(ctx context.Context, e Env, rc requestCommand) int {
	usage := rc.name + " -M /pollux/path [-M ...] [-S svcclass] [-U usertag] [--json] [--no-wait]"
	if rc.transfer != "" {
		usage += " [--file LOCAL]"
	}
	fs := newFlagSet(e, rc.name, usage, rc.summary)
	var o options
	fs.Var(pathsFlag{&o.paths}, "M", "the `PATH` of a file, /pollux/...; repeat for several")
	fs.StringVar(&o.svc, "S", "", "the service class `SVCCLASS` (default $STAGE_SVCCLASS, else \"default\")")
	fs.StringVar(&o.tag, "U", "", "a `USERTAG` kept with the request")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON on stdout")
	fs.BoolVar(&o.noWait, "no-wait", false, "submit, print the request id and return without waiting")
	o.clientFlags(fs)
	switch rc.transfer {
	case "upload":
		fs.StringVar(&o.file, "file", "", "upload the `LOCAL` file to the single -M file (close it afterwards with stager_putdone)")
		fs.StringVar(&o.file, "f", "", "short for --file `LOCAL`")
	case "download":
		fs.StringVar(&o.file, "file", "", "download the single -M file to the `LOCAL` file (or into that directory)")
		fs.StringVar(&o.file, "f", "", "short for --file `LOCAL`")
	}
	pos, code, done := parse(fs, e.Args)
	if done {
		return code
	}
	failed := func(err error) int { return fail(e, rc.name, o.json, err) }
	if err := o.fromEnv(fs, e); err != nil {
		return failed(err)
	}
	switch {
	case len(pos) > 0:
		return failed(errorf(wire.ErrorKindInvalid, "unexpected argument %q: name files with -M /pollux/...", pos[0]))
	case len(o.paths) == 0:
		return failed(errorf(wire.ErrorKindInvalid, "no file given: name at least one with -M /pollux/..."))
	case o.file != "" && len(o.paths) != 1:
		return failed(errorf(wire.ErrorKindInvalid, "--file goes with exactly one -M, not %d", len(o.paths)))
	case o.file != "" && o.noWait:
		return failed(errorf(wire.ErrorKindInvalid, "--file needs the wait: drop --no-wait"))
	}
	// Check the local side before anything is asked of the service, so that a typo does
	// not leave a transfer scheduled for nothing.
	if o.file != "" {
		var err error
		if rc.transfer == "upload" {
			err = checkUploadSource(o.file)
		} else {
			o.file, err = downloadTarget(o.file, o.paths[0])
		}
		if err != nil {
			return failed(err)
		}
	}
	cl, err := o.connect(e)
	if err != nil {
		return failed(err)
	}
	defer cl.Close()
	wait := cl.PollWait
	if o.noWait {
		wait = 0
	}
	sub, err := cl.Submit(ctx, api.SubmitRequest{ID: NewRequestID(), Type: string(rc.typ), ServiceClass: o.svc, UserTag: o.tag, Paths: o.paths}, wait)
	if err != nil {
		return failed(err)
	}
	if o.noWait {
		if o.json {
			printJSON(e.Stdout, sub)
		} else {
			fmt.Fprintln(e.Stdout, sub.ID)
		}
		return 0
	}
	var info io.Writer
	if !o.json {
		info = e.Stderr
	}
	out := requestOutput{}
	worst, nFailed := 0, 0
	// Each file is reported, and its data moved, as soon as it is ready or over.
	each := func(s api.Subrequest) {
		switch {
		case s.Status == string(wire.SubrequestStatusFailed):
			serr := subrequestError(s)
			worst, nFailed = max(worst, ExitCode(serr)), nFailed+1
			if !o.json {
				fmt.Fprintf(e.Stdout, "%s FAILED %s %s\n", s.Path, s.ErrorCode, s.ErrorMessage)
			}
		case s.Status == string(wire.SubrequestStatusReady) && o.file != "":
			moved, err := transfer(ctx, e, cl, rc.transfer, s, o.file, !o.json)
			if err != nil {
				worst, nFailed = max(worst, ExitCode(err)), nFailed+1
				fmt.Fprintf(e.Stderr, "%s: %s: %v\n", rc.name, s.Path, err)
				return
			}
			out.Transfers = append(out.Transfers, transferOutput{Path: s.Path, Local: o.file, Moved: moved})
			if o.json {
				return
			}
			if rc.transfer == "upload" {
				fmt.Fprintf(e.Stdout, "%s UPLOADED %d %s\n", s.Path, moved.SizeBytes, moved.ChecksumAdler32)
				fmt.Fprintf(e.Stderr, "%s: written; close it with: stager_putdone -M %s\n", s.Path, s.Path)
			} else {
				fmt.Fprintf(e.Stdout, "%s DOWNLOADED %d %s %s\n", s.Path, moved.SizeBytes, moved.ChecksumAdler32, o.file)
			}
		case o.json:
		case s.Status == string(wire.SubrequestStatusReady):
			fmt.Fprintf(e.Stdout, "%s READY %s token=%s\n", s.Path, s.MoverURL, s.Token)
		default:
			fmt.Fprintf(e.Stdout, "%s %s %s\n", s.Path, s.Status, s.Info)
		}
	}
	req, err := cl.Wait(ctx, sub.ID, sub.Request, rc.until, info, each)
	if err != nil {
		return failed(err)
	}
	out.Request = req
	if o.json {
		printJSON(e.Stdout, out)
	}
	if nFailed > 0 {
		fmt.Fprintf(e.Stderr, "%s: %d of %d files failed (request %s)\n", rc.name, nFailed, len(req.Subrequests), req.ID)
	}
	return worst
}

func checkUploadSource(local string) error {
	st, err := os.Stat(local)
	if err != nil {
		return localError(err, "the file to upload")
	}
	if !st.Mode().IsRegular() {
		return errorf(wire.ErrorKindInvalid, "%s is not a regular file: only files can be uploaded", local)
	}
	return nil
}

// downloadTarget is where a download of remote lands: local itself, or remote's base name
// inside local when local is a directory (or ends with a slash). Its directory must exist.
func downloadTarget(local, remote string) (string, error) {
	if st, err := os.Stat(local); (err == nil && st.IsDir()) || strings.HasSuffix(local, "/") {
		local = filepath.Join(local, path.Base(remote))
	}
	dir := filepath.Dir(local)
	st, err := os.Stat(dir)
	if err != nil {
		return "", localError(err, "the directory to download into")
	}
	if !st.IsDir() {
		return "", errorf(wire.ErrorKindInvalid, "%s is not a directory", dir)
	}
	return local, nil
}

// transfer moves one READY subrequest's data, with a progress bar when allowed and stderr
// is a terminal.
func transfer(ctx context.Context, e Env, cl *Client, direction string, s api.Subrequest, local string, bar bool) (Moved, error) {
	var progress func(done, total int64)
	var p *progressBar
	if bar && e.Terminal {
		p = startProgress(e.Stderr, path.Base(s.Path), -1)
		progress = p.update
	}
	var moved Moved
	var err error
	if direction == "upload" {
		moved, err = cl.Upload(ctx, s.MoverURL, s.Token, local, progress)
	} else {
		moved, err = cl.Download(ctx, s.MoverURL, s.Token, local, progress)
	}
	if p != nil {
		p.finish()
	}
	return moved, err
}

// Qry is stager_qry: what the namespace knows of each file.
func Qry(ctx context.Context, e Env) int {
	const name = "stager_qry"
	fs := newFlagSet(e, name, name+" -M /pollux/path [-M ...] [--quota] [--json]\n  "+name+" -r REQID [--history] [--json]",
		"show files: status (STAGED, STAGEOUT, INVALID), size and adler32, and your quotas; or a request, and with --history its whole story")
	var o options
	var quota bool
	var reqID string
	var history bool
	fs.Var(pathsFlag{&o.paths}, "M", "the `PATH` of a file, /pollux/...; repeat for several")
	fs.StringVar(&reqID, "r", "", "show the request `REQID` (the id a put, get or rm printed) instead of files")
	fs.BoolVar(&history, "history", false, "with -r: every transition of each of its files (when, by which daemon on which host, why) and what each waits for now")
	fs.BoolVar(&o.json, "json", false, "print the result as a JSON array on stdout (with --quota: an object of files and quota)")
	fs.StringVar(&o.svc, "S", "", "a `SVCCLASS`, accepted for CASTOR compatibility: a file is found whatever its service class; with --quota, the quota of this class only")
	fs.BoolVar(&quota, "quota", false, "show what you hold and your limits in each service class, one line each after the files")
	o.clientFlags(fs)
	pos, code, done := parse(fs, e.Args)
	if done {
		return code
	}
	// The class asked for on the command line; fromEnv fills in the default one.
	quotaClass := o.svc
	if err := o.fromEnv(fs, e); err != nil {
		return fail(e, name, o.json, err)
	}
	switch {
	case len(pos) > 0:
		return fail(e, name, o.json, errorf(wire.ErrorKindInvalid, "unexpected argument %q: name files with -M /pollux/...", pos[0]))
	case reqID != "" && (len(o.paths) > 0 || quota):
		return fail(e, name, o.json, errorf(wire.ErrorKindInvalid, "-r with -M or --quota: ask for a request, or for files and quotas, not both"))
	case history && reqID == "":
		return fail(e, name, o.json, errorf(wire.ErrorKindInvalid, "--history needs a request: give -r REQID"))
	case reqID == "" && len(o.paths) == 0 && !quota:
		return fail(e, name, o.json, errorf(wire.ErrorKindInvalid, "no file given: name at least one with -M /pollux/..., ask for --quota, or a request with -r REQID"))
	}
	cl, err := o.connect(e)
	if err != nil {
		return fail(e, name, o.json, err)
	}
	defer cl.Close()
	if reqID != "" {
		return qryRequest(ctx, e, cl, reqID, history, o.json)
	}
	type result struct {
		Path  string     `json:"path"`
		File  *api.File  `json:"file,omitempty"`
		Error *api.Error `json:"error,omitempty"`
	}
	var results []result
	worst := 0
	for _, p := range o.paths {
		f, err := cl.Query(ctx, p)
		if err != nil {
			code := ExitCode(err)
			var ce *Error
			if !errors.As(err, &ce) || code == wire.ErrorKindUnavailable.ExitCode() {
				// The service itself failed: the other files would fail alike.
				return fail(e, name, o.json, err)
			}
			worst = max(worst, code)
			fmt.Fprintf(e.Stderr, "%s: %v\n", name, err)
			results = append(results, result{Path: p, Error: &api.Error{Kind: string(ce.Kind), Code: ce.Code, Message: ce.Message}})
			continue
		}
		results = append(results, result{Path: p, File: &f})
		if !o.json {
			line := fmt.Sprintf("%s %s %s %s", f.Path, f.Status, orDash(f.SizeBytes), orDash(f.ChecksumAdler32))
			if f.Info != "" {
				// After the fields, so that a script reading the first four still reads them.
				line += " (" + f.Info + ")"
			}
			fmt.Fprintln(e.Stdout, line)
		}
	}
	if !quota {
		if o.json {
			printJSON(e.Stdout, results)
		}
		return worst
	}
	qs, err := cl.Quotas(ctx)
	if err != nil {
		return fail(e, name, o.json, err)
	}
	if quotaClass != "" {
		var only []api.Quota
		for _, q := range qs.Quotas {
			if q.ServiceClass == quotaClass {
				only = append(only, q)
			}
		}
		qs.Quotas = only
	}
	if o.json {
		printJSON(e.Stdout, struct {
			Files []result    `json:"files,omitempty"`
			Quota *api.Quotas `json:"quota"`
		}{results, &qs})
		return worst
	}
	for _, q := range qs.Quotas {
		fmt.Fprintln(e.Stdout, quotaLine(qs.User, q))
	}
	if len(qs.Quotas) == 0 {
		where := ""
		if quotaClass != "" {
			where = " in " + quotaClass
		}
		fmt.Fprintf(e.Stdout, "quota %s: nothing held and no quota%s\n", qs.User, where)
	}
	return worst
}

// qryRequest is stager_qry -r: a request's files and their status, and with history every
// transition and what each file waits for.
func qryRequest(ctx context.Context, e Env, cl *Client, id string, history, asJSON bool) int {
	const name = "stager_qry"
	if !history {
		req, err := cl.Request(ctx, id, time.Time{}, 0)
		if err != nil {
			return fail(e, name, asJSON, err)
		}
		if asJSON {
			printJSON(e.Stdout, req)
			return 0
		}
		fmt.Fprintf(e.Stdout, "request %s %s %s\n", req.ID, req.Type, req.Status)
		for _, s := range req.Subrequests {
			fmt.Fprintf(e.Stdout, "  %s %s%s\n", s.Path, s.Status, subInfo(s))
		}
		return 0
	}
	h, err := cl.History(ctx, id)
	if err != nil {
		return fail(e, name, asJSON, err)
	}
	if asJSON {
		printJSON(e.Stdout, h)
		return 0
	}
	writeHistory(e.Stdout, h)
	return 0
}

func subInfo(s api.Subrequest) string {
	switch {
	case s.ErrorMessage != "":
		return " (" + s.ErrorMessage + ")"
	case s.Info != "":
		return " (" + s.Info + ")"
	}
	return ""
}

// writeHistory prints a request's story for people: per file, one line per transition
// (time, from → to, by whom, why), then what it waits for now.
func writeHistory(w io.Writer, h api.History) {
	r := h.Request
	fmt.Fprintf(w, "request %s %s %s, last change %s\n", r.ID, r.Type, r.Status, r.UpdatedAt.Format(time.RFC3339Nano))
	waits := map[int64]api.Wait{}
	for _, wt := range h.Waits {
		waits[wt.SubrequestID] = wt
	}
	var last int64 = -1
	flush := func(id int64) {
		wt, ok := waits[id]
		if !ok || wt.WaitingFor == "" {
			return
		}
		line := fmt.Sprintf("    now %s since %s (%s): waiting for %s", wt.Status, wt.Since.Format(time.RFC3339), time.Since(wt.Since).Round(time.Second), wt.WaitingFor)
		if wt.QueuePosition != nil {
			line += fmt.Sprintf(", position %d in its queue", *wt.QueuePosition)
		}
		if wt.Behind != "" {
			line += ", behind " + wt.Behind
		}
		fmt.Fprintln(w, line)
	}
	for _, t := range h.Transitions {
		if t.SubrequestID != last {
			if last >= 0 {
				flush(last)
			}
			fmt.Fprintf(w, "  %s (subrequest %d)\n", t.Path, t.SubrequestID)
			last = t.SubrequestID
		}
		from := "new"
		if t.From != "" {
			from = t.From
		}
		who := t.Daemon
		if t.Host != "" {
			who += "@" + t.Host
		}
		if t.InstanceID != "" {
			who += " " + t.InstanceID[:min(8, len(t.InstanceID))]
		}
		line := fmt.Sprintf("    %s %s -> %s by %s", t.At.Format("2006-01-02 15:04:05.000"), from, t.To, who)
		if t.Reason != "" {
			line += ": " + t.Reason
		}
		fmt.Fprintln(w, line)
	}
	if last >= 0 {
		flush(last)
	}
}

func orDash[T any](v *T) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprint(*v)
}

// Pollux is the pollux command: pollux cp.
func Pollux(ctx context.Context, e Env) int {
	usage := func(w io.Writer) {
		fmt.Fprintf(w, "pollux — copy files in and out of Pollux\n\nUsage:\n  pollux cp [-S svcclass] [--json] SRC DST\n\n"+
			"One of SRC and DST is a Pollux path (/pollux/..., or pollux:/pollux/...), the other a local file.\n"+
			"Run pollux cp --help for its flags.\n\n%s", environment)
	}
	if len(e.Args) == 0 {
		usage(e.Stderr)
		return wire.ErrorKindInvalid.ExitCode()
	}
	switch e.Args[0] {
	case "cp":
		e.Args = e.Args[1:]
		return copyFile(ctx, e)
	case "help", "-h", "-help", "--help":
		usage(e.Stdout)
		return 0
	}
	fmt.Fprintf(e.Stderr, "pollux: unknown command %q\n\n", e.Args[0])
	usage(e.Stderr)
	return wire.ErrorKindInvalid.ExitCode()
}

// remotePath says whether arg names a file in Pollux: "pollux:" forces it, else a path
// under /pollux/ is one.
func remotePath(arg string) (string, bool) {
	if p, ok := strings.CutPrefix(arg, "pollux:"); ok {
		return p, true
	}
	return arg, strings.HasPrefix(arg, "/pollux/")
}

// copyOutput is what pollux cp prints with --json.
type copyOutput struct {
	Source      string  `json:"source"`
	Destination string  `json:"destination"`
	RequestID   string  `json:"request_id"`
	Seconds     float64 `json:"seconds"`
	Moved
}

func copyFile(ctx context.Context, e Env) int {
	const name = "pollux cp"
	fs := newFlagSet(e, name, "pollux cp [-S svcclass] [-U usertag] [--json] SRC DST",
		"copy a local file into Pollux (closed at the end, no stager_putdone needed) or a Pollux file to a local file")
	var o options
	fs.StringVar(&o.svc, "S", "", "the service class `SVCCLASS` (default $STAGE_SVCCLASS, else \"default\")")
	fs.StringVar(&o.tag, "U", "", "a `USERTAG` kept with the request")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON on stdout")
	o.clientFlags(fs)
	pos, code, done := parse(fs, e.Args)
	if done {
		return code
	}
	failed := func(err error) int { return fail(e, name, o.json, err) }
	if err := o.fromEnv(fs, e); err != nil {
		return failed(err)
	}
	if len(pos) != 2 {
		return failed(errorf(wire.ErrorKindInvalid, "give a source and a destination, not %d arguments: pollux cp SRC DST", len(pos)))
	}
	src, srcRemote := remotePath(pos[0])
	dst, dstRemote := remotePath(pos[1])
	if srcRemote == dstRemote {
		return failed(errorf(wire.ErrorKindInvalid, "one of SRC and DST must be a Pollux path (/pollux/... or pollux:/pollux/...) and the other a local file"))
	}
	up := dstRemote
	var typ wire.RequestType
	var remote, local string
	if up {
		if err := checkUploadSource(src); err != nil {
			return failed(err)
		}
		if strings.HasSuffix(dst, "/") {
			dst += filepath.Base(src)
		}
		typ, remote, local = wire.RequestTypePut, dst, src
	} else {
		var err error
		if dst, err = downloadTarget(dst, src); err != nil {
			return failed(err)
		}
		typ, remote, local = wire.RequestTypeGet, src, dst
	}
	cl, err := o.connect(e)
	if err != nil {
		return failed(err)
	}
	defer cl.Close()
	start := time.Now()
	sub, err := cl.Submit(ctx, api.SubmitRequest{ID: NewRequestID(), Type: string(typ), ServiceClass: o.svc, UserTag: o.tag,
		Paths: []string{remote}, AutoClose: up}, cl.PollWait)
	if err != nil {
		return failed(err)
	}
	var info io.Writer
	if !o.json {
		info = e.Stderr
	}
	req, err := cl.Wait(ctx, sub.ID, sub.Request, Ready, info, nil)
	if err != nil {
		return failed(err)
	}
	s := req.Subrequests[0]
	if s.Status != string(wire.SubrequestStatusReady) {
		return failed(subrequestError(s))
	}
	direction := "download"
	if up {
		direction = "upload"
	}
	moved, err := transfer(ctx, e, cl, direction, s, local, !o.json)
	if err != nil {
		return failed(err)
	}
	// No wait for FINISHED after an upload: the mover answers 201 only once
	// transfer_put_ended has committed, which (auto_close) closed the file: it is readable.
	elapsed := time.Since(start)
	if o.json {
		printJSON(e.Stdout, copyOutput{Source: pos[0], Destination: dst, RequestID: sub.ID, Seconds: elapsed.Seconds(), Moved: moved})
		return 0
	}
	fmt.Fprintf(e.Stdout, "%s -> %s: %d bytes, adler32 %s, %s/s\n", src, dst, moved.SizeBytes, moved.ChecksumAdler32,
		humanBytes(int64(float64(moved.SizeBytes)/max(elapsed.Seconds(), 1e-3))))
	return 0
}
