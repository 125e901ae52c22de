package certify

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/schema"
)

// The operator's cases (--admin): pollux-admin's listings, and hot patches of the logic
// on the live instance — one with a syntax error refused whole, one valid patch and its
// rollback while clients keep working.
func init() {
	listing := func(id, purpose string, args []string, want ...string) Case {
		return Case{ID: "admin/" + id, Purpose: purpose, Needs: []Need{NeedAdmin}, Run: func(t *T) {
			o := t.OK(t.Admin(args...))
			for _, w := range want {
				t.Check(strings.Contains(o.Stdout, w), "pollux-admin %s does not show %q:\n%s", strings.Join(args, " "), w, o.Stdout)
			}
			t.Evidence("pollux-admin %s exited 0 and shows %s", strings.Join(args, " "), strings.Join(want, ", "))
		}}
	}
	register(
		listing("daemons", "pollux-admin daemons lists the running daemons of every role", []string{"daemons"}, "rhd", "stagerd", "schedulerd", "jobmanagerd", "diskserverd"),
		listing("leaders", "pollux-admin leaders shows who leads each singleton role", []string{"leaders"}, "LEASE", "jobmanagerd"),
		listing("diskservers", "pollux-admin diskservers lists disk servers and their availability", []string{"diskservers"}, "AVAILABLE"),
		listing("events", "pollux-admin events shows the system event journal", []string{"events", "--limit", "5"}),
		listing("policy", "pollux-admin policy lists the policy the logic decides with", []string{"policy"}, "disk_server_live_seconds"),
		listing("migrate-status", "pollux-admin migrate status says the database is at this binary's head", []string{"migrate", "status"}),
		listing("logic-status", "pollux-admin logic status says the installed logic matches the files", []string{"logic", "status"}, "the database matches the files"),
		listing("logic-history", "pollux-admin logic history lists the versions applied", []string{"logic", "history"}),
		Case{ID: "admin/check", Purpose: "pollux-admin check runs the sanity check and reports each part", Needs: []Need{NeedAdmin},
			Run: func(t *T) {
				o := t.Admin("check")
				t.Check(o.Code == 0 || o.Code == 1, "pollux-admin check: %s", o)
				t.Check(strings.Contains(o.Stdout, "disk server") || strings.Contains(o.Stdout, "diskserver"), "pollux-admin check says nothing of disk servers: %s", o.Stdout)
				t.Evidence("pollux-admin check exited %d: %s", o.Code, firstLine(o.Stdout))
			}},
		Case{ID: "admin/ns-ls", Purpose: "pollux-admin ns ls lists a directory's files with mode, owner and size", Needs: []Need{NeedAdmin},
			Run: func(t *T) {
				p, data := t.Store("listed", 4321)
				o := t.OK(t.Admin("ns", "ls", t.Dir()))
				t.Check(strings.Contains(o.Stdout, p) && strings.Contains(o.Stdout, fmt.Sprint(len(data))), "pollux-admin ns ls %s:\n%s", t.Dir(), o.Stdout)
				t.Evidence("pollux-admin ns ls lists %s with its %d bytes", p, len(data))
			}},
		Case{ID: "admin/logic-syntax-error-refused", Purpose: "a hot patch with a syntax error is refused whole, naming the file and the line: the installed version is unchanged", Needs: []Need{NeedAdmin},
			Run: func(t *T) {
				before := logicVersion(t)
				// The error stands on a line of its own after the file's last: the refusal
				// must name the file and that line.
				line := 0
				dir := t.logicCopy(func(name string, b []byte) []byte {
					if name != "system_event.sql" {
						return b
					}
					if len(b) > 0 && b[len(b)-1] != '\n' {
						b = append(b, '\n')
					}
					line = strings.Count(string(b), "\n") + 2
					return append(b, []byte("\nCREATE OR REPLACE FUNCTION certify_broken( RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\n")...)
				})
				o := t.Admin("logic", "apply", "--dir", dir, "--note", "certify: deliberate syntax error")
				t.Fails(o, 1, "system_event.sql", fmt.Sprintf("line %d", line))
				after := logicVersion(t)
				t.Check(after == before, "the installed logic went from version %d to %d", before, after)
				t.OK(t.Admin("logic", "status"))
				t.Evidence("installed version still %d and matching the files after the refused patch", after)
			}},
		Case{ID: "admin/logic-patch-and-rollback-under-load", Purpose: "a valid hot patch and its rollback, applied while clients put and get, lose no request", Needs: []Need{NeedAdmin},
			Timeout: 2 * DefaultCaseTimeout,
			Run: func(t *T) {
				if st := t.Admin("logic", "status"); st.Code != 0 {
					t.Skipf("the installed logic is not this build's (pollux-admin logic status: %s): a patch would change the instance's behaviour", firstLine(st.Stdout+st.Stderr))
				}
				before := logicVersion(t)
				dir := t.logicCopy(func(name string, b []byte) []byte {
					if name != "policy.sql" {
						return b
					}
					return append(b, []byte("\n-- pollux-certify "+t.s.cfg.RunID+": a patch that changes no behaviour.\n")...)
				})
				var ok, bad atomic.Int64
				var failures sync.Map
				stop := make(chan struct{})
				var wg sync.WaitGroup
				for c := range 2 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := 0; ; i++ {
							select {
							case <-stop:
								return
							default:
							}
							name := fmt.Sprintf("load-%d-%d", c, i)
							local := t.Local(name)
							data := []byte(strings.Repeat(name, 100))
							if err := os.WriteFile(local, data, 0o644); err != nil {
								bad.Add(1)
								return
							}
							// Not t.Path: a failure here must not end the case from another goroutine.
							p := t.Dir() + "/" + name
							if err := t.s.journal.add(User1, p); err != nil {
								bad.Add(1)
								failures.Store(name, err.Error())
								return
							}
							up := t.s.cmd(t.Ctx, User1, nil, "pollux", "cp", local, p)
							down := t.s.cmd(t.Ctx, User1, nil, "pollux", "cp", p, local+".back")
							if up.Code != 0 || down.Code != 0 {
								bad.Add(1)
								failures.Store(name, up.String()+"\n"+down.String())
								continue
							}
							ok.Add(1)
						}
					}()
				}
				apply := t.Admin("logic", "apply", "--dir", dir, "--note", "certify: patch under load")
				rollback := t.Admin("logic", "rollback")
				// A few more round trips after the rollback, on the restored logic.
				more := ok.Load() + 4
				for ok.Load() < more && bad.Load() == 0 && t.Ctx.Err() == nil {
					t.s.cmd(t.Ctx, User1, nil, "stager_qry", "-M", t.Unused("tick"))
				}
				close(stop)
				wg.Wait()
				t.OK(apply)
				t.OK(rollback)
				failures.Range(func(k, v any) bool { t.Fatalf("a round trip failed during the patch: %s", v); return false })
				t.Check(ok.Load() > 0, "no round trip completed during the patch")
				t.OK(t.Admin("logic", "status"))
				after := logicVersion(t)
				t.Check(after > before, "logic version %d after apply and rollback, before %d", after, before)
				t.Evidence("applied and rolled back (version %d to %d) while %d put+get round trips all succeeded; the logic matches the files again", before, after, ok.Load())
			}},
		Case{ID: "admin/diskserver-drain-and-return", Purpose: "a disk server drained takes no new transfers, and returned takes them again", Needs: []Need{NeedAdmin},
			Run: func(t *T) {
				servers := t.availableDiskServers()
				if len(servers) == 0 {
					t.Skipf("no disk server is in production and available")
				}
				a := servers[0]
				drain := func(d diskServer) {
					t.OK(t.Admin("diskservers", "drain", d.Name))
					t.Cleanup(func() { t.Admin("diskservers", "return", d.Name) })
				}
				on := func(s api.Subrequest, d diskServer) bool {
					return strings.HasPrefix(s.MoverURL, strings.TrimRight(d.URL, "/")+"/")
				}
				cl := t.Client(User1)
				drain(a)
				var waiting api.SubmitResponse
				if len(servers) > 1 {
					for i := range 3 {
						p := t.Path(fmt.Sprintf("while-drained-%d", i))
						_, s := t.Ready(cl, "PUT", p)
						t.Check(!on(s, a), "a write was placed on %s while it was drained: %s", a.Name, s.MoverURL)
						t.OK(t.Cmd("stager_rm", "-M", p))
					}
					t.Evidence("while %s was drained, 3 writes went to other servers", a.Name)
					for _, d := range servers[1:] {
						drain(d) // briefly, so that the next write has only a to go to
					}
				}
				// Every server that could take it drained: a write waits, saying why.
				p := t.Path("after-return")
				waiting = t.Submit(cl, "PUT", p)
				w := t.WaitStatus(cl, waiting.ID, "WAITSCHED")
				t.Evidence("with %s drained a write waits: %s", a.Name, w.Info)
				t.OK(t.Admin("diskservers", "return", a.Name))
				s := t.WaitStatus(cl, waiting.ID, "READY")
				t.Check(on(s, a), "the waiting write was placed on %s, not on the returned %s", s.MoverURL, a.Name)
				t.Evidence("returned, %s took the waiting write at once (%s)", a.Name, s.MoverURL)
				t.OK(t.Cmd("stager_rm", "-M", p))
			}},
	)
}

// diskServer is what a case needs of pollux-admin diskservers --json.
type diskServer struct {
	Name         string `json:"name"`
	URL          string `json:"url"`
	Status       string `json:"status"`
	Availability string `json:"availability"`
}

// availableDiskServers are the disk servers in production and available now.
func (t *T) availableDiskServers() []diskServer {
	o := t.OK(t.Admin("diskservers", "--json"))
	var all, out []diskServer
	if err := json.Unmarshal([]byte(o.Stdout), &all); err != nil {
		t.Fatalf("pollux-admin diskservers --json: %v: %s", err, o.Stdout)
	}
	for _, d := range all {
		if d.Status == "PRODUCTION" && d.Availability == "AVAILABLE" {
			out = append(out, d)
		}
	}
	return out
}

// logicVersion is the installed logic's version (pollux-admin logic status --json).
func logicVersion(t *T) int64 {
	o := t.Admin("logic", "status", "--json")
	var st struct {
		Installed *struct {
			Version int64 `json:"version"`
		} `json:"installed"`
	}
	if err := json.Unmarshal([]byte(o.Stdout), &st); err != nil || st.Installed == nil {
		t.Fatalf("pollux-admin logic status --json: %v: %s", err, o)
	}
	return st.Installed.Version
}

// logicCopy writes this build's logic files to a directory, each through edit.
func (t *T) logicCopy(edit func(name string, b []byte) []byte) string {
	dir := t.Local("logic")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("mkdir: %v", err)
	}
	err := fs.WalkDir(schema.Logic(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(schema.Logic(), p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, p), edit(p, b), 0o644)
	})
	if err != nil {
		t.Fatalf("copy the logic: %v", err)
	}
	return dir
}
