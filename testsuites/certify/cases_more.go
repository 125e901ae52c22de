package certify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/pollux-storage/pollux/daemons/rhd/api"
)

// More outcomes of the requests, the API and the movers.
func init() {
	register(
		Case{ID: "put/cp-into-directory", Purpose: "pollux cp LOCAL /pollux/dir/ writes the file under its local name in that directory",
			Run: func(t *T) {
				local, data := t.File("named.dat", 321)
				p := t.Path("named.dat")
				t.OK(t.Cmd("pollux", "cp", local, t.Dir()+"/"))
				t.CheckStaged(p, data)
			}},
		Case{ID: "put/cp-json", Purpose: "pollux cp --json reports source, destination, request id, size and adler32",
			Run: func(t *T) {
				local, data := t.File("f", 2048)
				p := t.Path("f")
				o := t.OK(t.Cmd("pollux", "cp", "--json", local, p))
				var out struct {
					Destination     string `json:"destination"`
					RequestID       string `json:"request_id"`
					SizeBytes       int64  `json:"size_bytes"`
					ChecksumAdler32 string `json:"checksum_adler32"`
				}
				t.Check(json.Unmarshal([]byte(o.Stdout), &out) == nil, "not JSON: %s", o)
				t.Check(out.Destination == p && out.RequestID != "" && out.SizeBytes == int64(len(data)) && out.ChecksumAdler32 == Adler(data), "pollux cp --json: %+v", out)
				t.Evidence("pollux cp --json: %s, request %s, %d bytes, adler32 %s", out.Destination, out.RequestID, out.SizeBytes, out.ChecksumAdler32)
			}},
		Case{ID: "put/stager-put-json", Purpose: "stager_put --json --file reports the request and the transfer it made",
			Run: func(t *T) {
				local, data := t.File("f", 1500)
				p := t.Path("f")
				o := t.OK(t.Cmd("stager_put", "--json", "-M", p, "--file", local))
				var out struct {
					Request   api.Request `json:"request"`
					Transfers []struct {
						Path            string `json:"path"`
						SizeBytes       int64  `json:"size_bytes"`
						ChecksumAdler32 string `json:"checksum_adler32"`
					} `json:"transfers"`
				}
				t.Check(json.Unmarshal([]byte(o.Stdout), &out) == nil, "not JSON: %s", o)
				t.Check(out.Request.Type == "PUT" && len(out.Transfers) == 1 && out.Transfers[0].ChecksumAdler32 == Adler(data), "stager_put --json: %s", o.Stdout)
				t.Evidence("stager_put --json: request %s, one transfer of %d bytes adler32 %s", out.Request.ID, out.Transfers[0].SizeBytes, out.Transfers[0].ChecksumAdler32)
				t.OK(t.Cmd("stager_putdone", "-M", p))
			}},
		Case{ID: "rewrite/shrinks", Purpose: "a rewrite with a smaller file leaves exactly the smaller content (no old tail)",
			Run: func(t *T) {
				p, _ := t.Store("f", 64<<10)
				local, data := t.File("small", 100)
				t.OK(t.Cmd("pollux", "cp", local, p))
				t.CheckStaged(p, data)
				t.CheckContent(p, data)
			}},
		Case{ID: "rewrite/empty-over-content", Purpose: "a rewrite with an empty file leaves the file empty",
			Run: func(t *T) {
				p, _ := t.Store("f", 4096)
				local, data := t.File("empty", 0)
				t.OK(t.Cmd("pollux", "cp", local, p))
				t.CheckStaged(p, data)
				t.CheckContent(p, data)
			}},
		Case{ID: "rm/twice", Purpose: "a second stager_rm of a removed file exits 1 with no such file",
			Run: func(t *T) {
				p, _ := t.Store("f", 10)
				t.OK(t.Cmd("stager_rm", "-M", p))
				t.Fails(t.Cmd("stager_rm", "-M", p), 1, "no such file")
			}},
		Case{ID: "rm/then-put-again", Purpose: "a removed path can be written again and reads the new content",
			Run: func(t *T) {
				p, _ := t.Store("f", 1000)
				t.OK(t.Cmd("stager_rm", "-M", p))
				local, data := t.File("again", 2000)
				t.OK(t.Cmd("pollux", "cp", local, p))
				t.CheckStaged(p, data)
				t.CheckContent(p, data)
			}},
		Case{ID: "rm/many-with-one-missing", Purpose: "stager_rm of three files, one missing, removes the two and exits 1 for the third",
			Run: func(t *T) {
				a, _ := t.Store("a", 10)
				b, _ := t.Store("b", 10)
				o := t.Cmd("stager_rm", "-M", a, "-M", t.Unused("none"), "-M", b)
				t.Fails(o, 1, "no such file", "1 of 3 files failed")
				t.CheckMissing(a)
				t.CheckMissing(b)
			}},
		Case{ID: "prepare/many", Purpose: "one prepareToGet of ten files on disk finishes each",
			Run: func(t *T) {
				var args []string
				for i := range 10 {
					p, _ := t.Store(fmt.Sprintf("p%d", i), 100+i)
					args = append(args, "-M", p)
				}
				o := t.OK(t.Cmd("stager_prepareToGet", args...))
				t.Check(strings.Count(o.Stdout, " FINISHED") == 10, "stager_prepareToGet: %s", o)
				t.Evidence("ten files FINISHED in one prepareToGet")
			}},
		Case{ID: "get/stager-get-json", Purpose: "stager_get --json --file reports the download's size and adler32",
			Run: func(t *T) {
				p, data := t.Store("f", 999)
				o := t.OK(t.Cmd("stager_get", "--json", "-M", p, "--file", t.Local("back")))
				t.Check(strings.Contains(o.Stdout, `"checksum_adler32": "`+Adler(data)+`"`), "stager_get --json: %s", o.Stdout)
				t.Evidence("stager_get --json names adler32 %s", Adler(data))
			}},
		Case{ID: "get/overwrites-local-file", Purpose: "a download replaces an existing local file whole, never leaving a partial file under its name",
			Run: func(t *T) {
				p, data := t.Store("f", 5000)
				local := t.Local("existing")
				if err := os.WriteFile(local, bytes.Repeat([]byte("old"), 10000), 0o644); err != nil {
					t.Fatalf("write: %v", err)
				}
				t.OK(t.Cmd("pollux", "cp", p, local))
				got, _ := os.ReadFile(local)
				t.Check(bytes.Equal(got, data), "the local file holds %d bytes, want %d", len(got), len(data))
				left, _ := filepath.Glob(filepath.Join(filepath.Dir(local), ".existing.pollux-*"))
				t.Check(len(left) == 0, "temporary files left: %v", left)
				t.Evidence("the existing local file was replaced whole, no temporary file left")
			}},

		Case{ID: "api/method-not-allowed", Purpose: "a DELETE of the requests path is refused (405), not taken for a submission",
			Run: func(t *T) {
				h := t.API(User1, http.MethodDelete, api.PathRequests, "")
				t.Check(h.Status == http.StatusMethodNotAllowed || h.Status == http.StatusNotFound, "DELETE %s: %s", api.PathRequests, h)
				t.Evidence("DELETE %s answered %s", api.PathRequests, h)
			}},
		Case{ID: "api/unknown-path", Purpose: "a call to a path rhd does not serve answers 404",
			Run: func(t *T) {
				h := t.API(User1, http.MethodGet, "/v1/certify-nothing", "")
				t.Check(h.Status == http.StatusNotFound, "GET /v1/certify-nothing: %s", h)
				t.Evidence("GET /v1/certify-nothing answered %s", h)
			}},
		Case{ID: "api/submit/body-too-large", Purpose: "a submission body beyond rhd's limit is refused as invalid and stores nothing",
			Run: func(t *T) {
				big := `{"id":"` + "00000000-0000-4000-8000-00000000abcd" + `","type":"PREPARE_TO_GET","paths":["` + strings.Repeat("/pollux/x", 2<<20) + `"]}`
				h := t.API(User1, http.MethodPost, api.PathRequests, big)
				t.Check(h.Err == nil && (h.Status == http.StatusRequestEntityTooLarge || h.Status == http.StatusBadRequest), "a %d MiB submission: %s", len(big)>>20, h)
				t.Evidence("a %d MiB submission answered %s", len(big)>>20, h)
			}},

		Case{ID: "mover/chunked-upload-with-trailer", Purpose: "a streamed (chunked) upload with its adler32 in a trailer is stored and reads back",
			Run: func(t *T) {
				p := t.Path("f")
				cl := t.Client(User1)
				_, s := t.Ready(cl, "PUT", p)
				data := bytes.Repeat([]byte("streamed "), 50000)
				pr, pw := io.Pipe()
				go func() {
					for off := 0; off < len(data); off += 64 << 10 {
						if _, err := pw.Write(data[off:min(off+64<<10, len(data))]); err != nil {
							return
						}
					}
					pw.Close()
				}()
				req, err := http.NewRequestWithContext(t.Ctx, http.MethodPut, s.MoverURL, pr)
				if err != nil {
					t.Fatalf("request: %v", err)
				}
				req.Header.Set("Authorization", "Bearer "+s.Token)
				req.Trailer = http.Header{api.HeaderAdler32: nil}
				// Set once the body is read: the trailer follows the last chunk.
				req.Body = &trailerBody{r: pr, done: func() { req.Trailer.Set(api.HeaderAdler32, Adler(data)) }}
				resp, err := t.httpClient().Do(req)
				if err != nil {
					t.Fatalf("chunked upload: %v", err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				t.Check(resp.StatusCode == http.StatusCreated, "chunked upload answered %d %s", resp.StatusCode, b)
				t.Evidence("chunked upload of %d bytes, adler32 in a trailer, answered %d", len(data), resp.StatusCode)
				t.OK(t.Cmd("stager_putdone", "-M", p))
				t.CheckStaged(p, data)
			}},
		Case{ID: "mover/token-of-another-transfer", Purpose: "a transfer's token presented at another transfer's endpoint is refused (403)",
			Run: func(t *T) {
				a, _ := t.Store("a", 100)
				b, _ := t.Store("b", 100)
				cl := t.Client(User1)
				_, ga := t.Ready(cl, "GET", a)
				_, gb := t.Ready(cl, "GET", b)
				h := t.MoverGet(ga.MoverURL, gb.Token)
				if ga.MoverURL[:strings.LastIndex(ga.MoverURL, "/")] != gb.MoverURL[:strings.LastIndex(gb.MoverURL, "/")] {
					// On another disk server the transfer is unknown there: refused all the same.
					t.Evidence("the two transfers are on different disk servers")
				}
				t.Check(h.Err == nil && h.Status >= 400 && h.Status < 500, "b's token at a's endpoint: %s", h)
				t.Evidence("b's token at a's endpoint answered %s", h)
			}},
	)

	// Quotas: the operator sets the limits (--admin), the put decision and the upload's end
	// check them. Each case sets the first user's quota in the run's service class from its
	// usage of the moment and puts back what was there before (the cases run one at a time).
	register(
		Case{ID: "quota/put-over-limit-refused", Purpose: "a put that would take a user over their file quota is refused with its reason (exit 1) and changes nothing", Needs: []Need{NeedAdmin, NeedQuota},
			Run: func(t *T) {
				q := t.quota(User1)
				t.setQuota(q, "none", fmt.Sprint(q.Files))
				p := t.Unused("over")
				local, _ := t.File("over", 2000)
				t.Fails(t.Cmd("pollux", "cp", local, p), 1, "quota exceeded")
				t.CheckMissing(p)
				after := t.quota(User1)
				t.Check(after.Files == q.Files && after.Bytes == q.Bytes, "the refused put changed the usage: %+v, was %+v", after, q)
				t.Evidence("at %d files of %d the put was refused, and the usage stayed %d files, %d bytes", q.Files, q.Files, after.Files, after.Bytes)
			}},
		Case{ID: "quota/rm-frees-quota", Purpose: "removing a file gives its bytes and its file back to its owner's quota", Needs: []Need{NeedAdmin, NeedQuota},
			Run: func(t *T) {
				p, data := t.Store("f", 5000)
				held := t.quota(User1)
				t.OK(t.Cmd("stager_rm", "-M", p))
				after := t.quota(User1)
				t.Check(after.Files == held.Files-1 && after.Bytes == held.Bytes-int64(len(data)),
					"after rm the usage is %d files, %d bytes; want %d, %d", after.Files, after.Bytes, held.Files-1, held.Bytes-int64(len(data)))
				t.Evidence("rm gave back 1 file and %d bytes (%d files, %d bytes → %d, %d)", len(data), held.Files, held.Bytes, after.Files, after.Bytes)
			}},
		Case{ID: "quota/rewrite-counts-once", Purpose: "a rewrite is counted once its new copy is closed, the old copy's bytes given back", Needs: []Need{NeedAdmin, NeedQuota},
			Run: func(t *T) {
				p, old := t.Store("f", 4000)
				held := t.quota(User1)
				local, data := t.File("new", 6000)
				t.OK(t.Cmd("pollux", "cp", local, p))
				after := t.quota(User1)
				want := held.Bytes - int64(len(old)) + int64(len(data))
				t.Check(after.Files == held.Files && after.Bytes == want, "after the rewrite the usage is %d files, %d bytes; want %d, %d", after.Files, after.Bytes, held.Files, want)
				t.Evidence("the rewrite of %d bytes by %d left %d files and %d bytes", len(old), len(data), after.Files, after.Bytes)
			}},
		Case{ID: "quota/other-user-unaffected", Purpose: "one user at their quota does not stop another user's puts", Needs: []Need{NeedAdmin, NeedQuota, NeedUser2},
			Run: func(t *T) {
				// The case's directory, the first user's, open to the second (sticky, as /tmp).
				t.Store("seed", 100)
				t.OK(t.Admin("ns", "chmod", t.Dir(), "1777"))
				q := t.quota(User1)
				t.setQuota(q, "none", fmt.Sprint(q.Files))
				local, _ := t.File("f", 1500)
				t.Fails(t.Cmd("pollux", "cp", local, t.Unused("refused")), 1, "quota exceeded")
				p2 := t.PathAs(User2, "f")
				t.OK(t.CmdAs(User2, "pollux", "cp", local, p2))
				t.Evidence("the first user at %d of %d files was refused; the second user's put of %s went through", q.Files, q.Files, p2)
			}},
	)
}

// quota is user's usage and limits in the run's service class (stager_qry --quota's call).
func (t *T) quota(user int) quotaState {
	qs, err := t.Client(user).Quotas(t.Ctx)
	if err != nil {
		t.Fatalf("read the quota: %v", err)
	}
	st := quotaState{User: qs.User, ServiceClass: t.s.cfg.ServiceClass}
	for _, q := range qs.Quotas {
		if q.ServiceClass == st.ServiceClass {
			st.Quota = q
		}
	}
	return st
}

type quotaState struct {
	User, ServiceClass string
	api.Quota
}

// setQuota sets the limits of q's user (--bytes, --files: a number or none) and puts back,
// at the case's end, the limits q had.
func (t *T) setQuota(q quotaState, bytes, files string) {
	t.OK(t.Admin("quota", "set", q.User, "--service-class", q.ServiceClass, "--bytes", bytes, "--files", files))
	t.Cleanup(func() {
		if q.MaxBytes == nil && q.MaxFiles == nil {
			t.Admin("quota", "rm", q.User, "--service-class", q.ServiceClass)
			return
		}
		limit := func(v *int64) string {
			if v == nil {
				return "none"
			}
			return fmt.Sprint(*v)
		}
		t.Admin("quota", "set", q.User, "--service-class", q.ServiceClass, "--bytes", limit(q.MaxBytes), "--files", limit(q.MaxFiles))
	})
	t.Evidence("set the quota of %s in %s to %s bytes, %s files", q.User, q.ServiceClass, bytes, files)

}

// trailerBody calls done when its reader ends, so that a trailer computed from the body
// is set before the transport writes it.
type trailerBody struct {
	r    io.ReadCloser
	done func()
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.done()
	}
	return n, err
}

func (b *trailerBody) Close() error { return b.r.Close() }

// Disk servers that go away and come back (a harness that runs the instance).
func init() {
	register(Case{ID: "get/copy-server-down-waits", Purpose: "a get whose only copy is on a stopped disk server waits saying so, stager_qry says so too, and it is served once the server returns",
		Needs: []Need{NeedDiskHook}, Timeout: 2 * DefaultCaseTimeout,
		Run: func(t *T) {
			p, data := t.Store("f", 100<<10)
			cl := t.Client(User1)
			// Where the only copy is: the mover a get is sent to.
			_, g := t.Ready(cl, "GET", p)
			t.Spend("GET", g.MoverURL, g.Token)
			restore, err := t.s.cfg.StopDiskServer(t.Ctx, g.MoverURL)
			if err != nil {
				t.Fatalf("stop the disk server of %s: %v", g.MoverURL, err)
			}
			back := false
			defer func() {
				if !back {
					_ = restore(t.Ctx)
				}
			}()
			get := t.Submit(cl, "GET", p)
			w := t.WaitStatus(cl, get.ID, "WAITSCHED")
			t.Check(strings.Contains(w.Info, "only copy is on"), "the waiting get says %q", w.Info)
			t.Evidence("the get waits: %s", w.Info)
			f := t.MustQry(p)
			t.Check(strings.Contains(f.Info, "only copy is on"), "stager_qry says %q", f.Info)
			t.Evidence("stager_qry says: %s", f.Info)
			back = true
			if err := restore(t.Ctx); err != nil {
				t.Fatalf("start the disk server again: %v", err)
			}
			r := t.WaitStatus(cl, get.ID, "READY")
			m, err := cl.Download(t.Ctx, r.MoverURL, r.Token, t.Local("back"), nil)
			t.Check(err == nil && m.ChecksumAdler32 == Adler(data), "the get once the server returned: %+v %v", m, err)
			t.Evidence("once the disk server returned the waiting get was served (adler32 %s)", m.ChecksumAdler32)
		}})
}

// Names that URLs and shells treat specially, and a few more refusals.
func init() {
	register(
		Case{ID: "put/url-special-characters", Purpose: "a name with %, ?, #, & and + is stored and read back under exactly that name (escaped on the wire, not interpreted)",
			Run: func(t *T) {
				p, data := t.Store("100% sure?#1&a+b=c.txt", 777)
				o := t.OK(t.Cmd("stager_qry", "-M", p))
				t.Check(strings.HasPrefix(o.Stdout, p+" STAGED 777 "), "stager_qry: %s", o)
				t.CheckContent(p, data)
			}},
		Case{ID: "put/similar-names-distinct", Purpose: "names differing only in case or a trailing space are distinct files",
			Run: func(t *T) {
				a, da := t.Store("Name", 11)
				b, db := t.Store("name", 22)
				c, dc := t.Store("name ", 33)
				t.CheckStaged(a, da)
				t.CheckStaged(b, db)
				t.CheckStaged(c, dc)
			}},
		Case{ID: "args/pollux/cp-unknown-svcclass", Purpose: "pollux cp -S of an unknown service class exits 1 naming it and creates nothing",
			Run: func(t *T) {
				local, _ := t.File("f", 10)
				p := t.Unused("f")
				t.Fails(t.Cmd("pollux", "cp", "-S", "certify-no-such-class", local, p), 1, `unknown service class "certify-no-such-class"`)
				t.CheckMissing(p)
			}},
		Case{ID: "args/pollux/help", Purpose: "pollux help exits 0 and prints its usage on stdout",
			Run: func(t *T) {
				o := t.Cmd("pollux", "help")
				t.Check(o.Code == 0 && strings.Contains(o.Stdout, "pollux cp"), "pollux help: %s", o)
				t.Evidence("pollux help exited 0 with its usage on stdout")
			}},
		Case{ID: "args/stager-qry/svcclass-accepted", Purpose: "stager_qry accepts -S for CASTOR compatibility and finds the file whatever the class named",
			Run: func(t *T) {
				p, data := t.Store("f", 55)
				o := t.OK(t.Cmd("stager_qry", "-S", "any-class", "-M", p))
				t.Check(strings.HasPrefix(o.Stdout, fmt.Sprintf("%s STAGED %d %s", p, len(data), Adler(data))), "stager_qry -S: %s", o)
				t.Evidence("stager_qry -S any-class found %s", p)
			}},
		Case{ID: "api/files/relative-path", Purpose: "a file query of a relative path is refused with 400 invalid",
			Run: func(t *T) {
				h := t.API(User1, http.MethodGet, api.PathFiles+"?path=relative/f", "")
				t.Check(h.Status == http.StatusBadRequest && h.Kind() == "invalid", "got %s", h)
				t.Evidence("GET %s?path=relative/f answered %s", api.PathFiles, h)
			}},
		Case{ID: "api/request/bad-wait", Purpose: "a long poll whose wait is not a duration is refused with 400 naming the parameter",
			Run: func(t *T) {
				sub := t.Submit(t.Client(User1), "PREPARE_TO_GET", t.Unused("f"))
				h := t.API(User1, http.MethodGet, api.RequestPath(sub.ID)+"?wait=forever", "")
				t.Check(h.Status == http.StatusBadRequest && strings.Contains(h.Body, "wait"), "got %s", h)
				t.Evidence("GET with wait=forever answered %s", h)
			}},
	)
}

// A write whose disk server dies and comes back is retried, each time on a fresh
// transfer, until policy transfer_max_retries; then it fails as unavailable and the
// file's previous content is as it was.
func init() {
	register(Case{ID: "rewrite/retry-limit-fails-unavailable", Purpose: "a rewrite whose disk server is killed and restarted under it is retried on a fresh transfer each time, then fails as unavailable after the retry limit; the old content stays",
		Needs: []Need{NeedDiskKill}, Timeout: 3 * DefaultCaseTimeout,
		Run: func(t *T) {
			p, old := t.Store("f", 10<<10)
			cl := t.Client(User1)
			sub := t.Submit(cl, "PUT", p)
			tokens := map[string]bool{}
			var s api.Subrequest
			for kills := 0; ; kills++ {
				s = t.WaitRequest(cl, sub.ID, "READY on a fresh transfer, or over", func(r api.Request) bool {
					x := r.Subrequests[0]
					return (x.Status == "READY" && !tokens[x.Token]) || x.Status == "FAILED" || x.Status == "FINISHED"
				}).Subrequests[0]
				if s.Status != "READY" {
					t.Check(kills > 1, "the write ended %s after %d kills: %s %s", s.Status, kills, s.ErrorCode, s.ErrorMessage)
					break
				}
				tokens[s.Token] = true
				if kills > 10 {
					t.Fatalf("the write was retried %d times: no retry limit", kills)
				}
				if err := t.s.cfg.KillDiskServer(t.Ctx, s.MoverURL); err != nil {
					t.Fatalf("kill the disk server of %s: %v", s.MoverURL, err)
				}
			}
			t.Check(s.Status == "FAILED" && s.ErrorCode == "PX005" && strings.Contains(s.ErrorMessage, "gave up after"),
				"the write ended %s %s %q, want FAILED unavailable (PX005) after the retry limit", s.Status, s.ErrorCode, s.ErrorMessage)
			t.Evidence("the write got %d transfers, each with a new token, one per disk server restart", len(tokens))
			t.Evidence("then failed as unavailable: %s %s", s.ErrorCode, s.ErrorMessage)
			t.CheckStaged(p, old)
			t.CheckContent(p, old)
		}})
}
