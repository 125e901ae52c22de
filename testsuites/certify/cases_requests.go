package certify

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/pollux-storage/pollux/cmd/client"
	"github.com/pollux-storage/pollux/daemons/rhd/api"
)

// Every request type and its documented outcomes (docs/decisions.md).
func init() {
	register(
		// put
		Case{ID: "put/cp-roundtrip", Purpose: "pollux cp up then down returns the same bytes, and stager_qry shows STAGED with size and adler32",
			Run: func(t *T) {
				p, data := t.Store("f", 100<<10)
				t.CheckStaged(p, data)
				t.CheckContent(p, data)
			}},
		Case{ID: "put/stager-put-then-putdone", Purpose: "stager_put --file uploads (STAGEOUT until closed), stager_putdone closes it (STAGED), stager_get reads it back",
			Run: func(t *T) {
				local, data := t.File("f", 50<<10)
				p := t.Path("f")
				o := t.OK(t.Cmd("stager_put", "-M", p, "--file", local))
				t.Check(strings.Contains(o.Stdout, fmt.Sprintf("%s UPLOADED %d %s", p, len(data), Adler(data))), "stager_put said: %s", o)
				f := t.MustQry(p)
				t.Check(f.Status == "STAGEOUT", "after the upload, before putdone: %s, want STAGEOUT", f.Status)
				t.Evidence("after the upload stager_qry says STAGEOUT")
				t.OK(t.Cmd("stager_putdone", "-M", p))
				t.CheckStaged(p, data)
				back := t.Local("back")
				o = t.OK(t.Cmd("stager_get", "-M", p, "--file", back))
				got, _ := os.ReadFile(back)
				t.Check(bytes.Equal(got, data), "stager_get --file wrote %d bytes, want %d", len(got), len(data))
				t.Evidence("stager_get --file: %s", strings.TrimSpace(o.Stdout))
			}},
		Case{ID: "put/ready-prints-endpoint", Purpose: "stager_put without --file waits for a mover and prints its endpoint and one-time token",
			Run: func(t *T) {
				p := t.Path("f")
				o := t.OK(t.Cmd("stager_put", "-M", p))
				t.Check(strings.Contains(o.Stdout, p+" READY ") && strings.Contains(o.Stdout, "token="), "stager_put said: %s", o)
				t.Evidence("stager_put printed %s READY <mover> token=<token>", p)
				t.OK(t.Cmd("stager_rm", "-M", p))
				t.SpendPrinted("PUT", o)
			}},
		Case{ID: "put/no-wait-prints-id", Purpose: "stager_put --no-wait prints the request id at once and the request is stored",
			Run: func(t *T) {
				p := t.Path("f")
				o := t.OK(t.Cmd("stager_put", "--no-wait", "-M", p))
				id := strings.TrimSpace(o.Stdout)
				req, err := t.Client(User1).Request(t.Ctx, id, timeZero, 0)
				t.Check(err == nil && req.ID == id && req.Type == "PUT", "request %q: %+v %v", id, req, err)
				t.Evidence("stager_put --no-wait printed request %s, which the service knows as a PUT", id)
				s := t.WaitStatus(t.Client(User1), id, "READY")
				t.OK(t.Cmd("stager_rm", "-M", p))
				t.Spend("PUT", s.MoverURL, s.Token)
			}},
		Case{ID: "put/empty-file", Purpose: "an empty file is stored and read back empty, with size 0 and adler32 00000001",
			Run: func(t *T) {
				p, data := t.Store("empty", 0)
				t.CheckStaged(p, data)
				t.Check(Adler(data) == "00000001", "adler32 of nothing is %s", Adler(data))
				t.CheckContent(p, data)
			}},
		Case{ID: "put/large-file", Purpose: "a 48 MiB file is stored and read back byte for byte",
			Run: func(t *T) {
				p, data := t.Store("large", 48<<20)
				t.CheckStaged(p, data)
				t.CheckContent(p, data)
			}},
		Case{ID: "put/unicode-name", Purpose: "a name in several scripts and an emoji is stored, listed and read back under that name",
			Run: func(t *T) {
				name := "héllo wörld-日本語-Ελληνικά-🚀.dat"
				p, data := t.Store(name, 4096)
				o := t.OK(t.Cmd("stager_qry", "-M", p))
				t.Check(strings.HasPrefix(o.Stdout, p+" STAGED"), "stager_qry: %s", o)
				t.CheckContent(p, data)
			}},
		Case{ID: "put/many-files-one-request", Purpose: "one put request of 25 files gets a mover for each; every upload, one putdone of all, one qry of all and one rm of all succeed",
			Timeout: 3 * DefaultCaseTimeout,
			Run: func(t *T) {
				const n = 25
				cl := t.Client(User1)
				var paths, args []string
				for i := range n {
					p := t.Path(fmt.Sprintf("m%03d", i))
					paths, args = append(paths, p), append(args, "-M", p)
				}
				sub := t.Submit(cl, "PUT", paths...)
				// Each file is uploaded as soon as its mover is ready, as stager_put does: a
				// disk server runs a bounded number of transfers at once, so the last movers
				// open only once the first uploads are done.
				sums := map[string]string{}
				var failed []string
				_, err := cl.Wait(t.Ctx, sub.ID, nil, client.Ready, nil, func(s api.Subrequest) {
					if s.Status != "READY" {
						failed = append(failed, s.Path+" "+s.Status+" "+s.ErrorMessage)
						return
					}
					local, data := t.File(path.Base(s.Path), 1000+len(sums))
					if _, err := cl.Upload(t.Ctx, s.MoverURL, s.Token, local, nil); err != nil {
						failed = append(failed, s.Path+": "+err.Error())
						return
					}
					sums[s.Path] = fmt.Sprintf("%s STAGED %d %s", s.Path, len(data), Adler(data))
				})
				t.Check(err == nil && len(failed) == 0 && len(sums) == n, "%d of %d uploaded: %v %v", len(sums), n, err, failed)
				t.Evidence("one request of 25 files: each got a mover and its upload was accepted")
				t.OK(t.Cmd("stager_putdone", args...))
				o := t.OK(t.Cmd("stager_qry", args...))
				for _, p := range paths {
					t.Check(strings.Contains(o.Stdout, sums[p]+"\n"), "stager_qry lacks %q", sums[p])
				}
				t.Evidence("one stager_putdone closed all 25; one stager_qry shows each STAGED with its size and adler32")
				t.OK(t.Cmd("stager_rm", args...))
				o = t.Cmd("stager_qry", args...)
				t.Check(o.Code == 1 && strings.Count(o.Stderr, "no such file") == n, "after one stager_rm of all: %s", o)
				t.Evidence("one stager_rm removed all 25")
			}},
		Case{ID: "put/second-put-conflict", Purpose: "a put of a path whose write is not yet closed fails at once with conflict (exit 1), naming the other write",
			Run: func(t *T) {
				p := t.Path("f")
				cl := t.Client(User1)
				t.Ready(cl, "PUT", p)
				t.Fails(t.Cmd("stager_put", "-M", p), 1, "is being written by another request", "putdone")
				t.OK(t.Cmd("stager_rm", "-M", p))
			}},
		Case{ID: "put/concurrent-puts-one-wins", Purpose: "six truly concurrent puts of one new path: exactly one wins, the others fail with conflict",
			Run: func(t *T) {
				const n = 6
				p := t.Path("race")
				cl := t.Client(User1)
				ids := make([]string, n)
				var wg sync.WaitGroup
				start := make(chan struct{})
				errs := make([]error, n)
				for i := range n {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						sub, err := cl.Submit(t.Ctx, api.SubmitRequest{ID: client.NewRequestID(), Type: "PUT", ServiceClass: t.s.cfg.ServiceClass, Paths: []string{p}}, 0)
						ids[i], errs[i] = sub.ID, err
					}()
				}
				close(start)
				wg.Wait()
				won, lost := 0, 0
				for i := range n {
					if errs[i] != nil {
						t.Fatalf("submission %d: %v", i, errs[i])
					}
					s := t.WaitDecided(cl, ids[i])
					switch {
					case s.Status == "READY":
						won++
						t.Cleanup(func() { t.Spend("PUT", s.MoverURL, s.Token) })
					case s.Status == "FAILED" && s.ErrorCode == "PX003":
						lost++
					default:
						t.Fatalf("put %d ended %s %s %s", i, s.Status, s.ErrorCode, s.ErrorMessage)
					}
				}
				t.Check(won == 1 && lost == n-1, "%d puts won and %d lost, want 1 and %d", won, lost, n-1)
				t.Evidence("of %d simultaneous puts of %s, 1 got a mover and %d failed with conflict (PX003)", n, p, lost)
				t.OK(t.Cmd("stager_rm", "-M", p))
			}},

		// rewrite
		Case{ID: "rewrite/closed-replaces", Purpose: "a closed rewrite replaces the content: readers get the new bytes",
			Run: func(t *T) {
				p, _ := t.Store("f", 10<<10)
				local, data := t.File("new", 20<<10)
				t.OK(t.Cmd("pollux", "cp", local, p))
				t.CheckStaged(p, data)
				t.CheckContent(p, data)
			}},
		Case{ID: "rewrite/unclosed-keeps-old", Purpose: "while a rewrite is uploaded but not closed, stager_qry shows STAGEOUT with the old size and adler32: the old content is still the file's",
			Run: func(t *T) {
				p, old := t.Store("f", 10<<10)
				local, _ := t.File("new", 20<<10)
				t.OK(t.Cmd("stager_put", "-M", p, "--file", local))
				f := t.MustQry(p)
				t.Check(f.Status == "STAGEOUT" && f.SizeBytes != nil && *f.SizeBytes == int64(len(old)) &&
					f.ChecksumAdler32 != nil && *f.ChecksumAdler32 == Adler(old),
					"during the rewrite stager_qry says %s %v %v, want STAGEOUT with the old %d bytes %s", f.Status, f.SizeBytes, f.ChecksumAdler32, len(old), Adler(old))
				t.Evidence("during the unclosed rewrite stager_qry says STAGEOUT, %d bytes, adler32 %s (the old content)", len(old), Adler(old))
				t.OK(t.Cmd("stager_rm", "-M", p))
			}},
		Case{ID: "rewrite/failed-changes-nothing", Purpose: "a rewrite whose upload is corrupt fails and changes nothing: the old content stays STAGED and readable",
			Run: func(t *T) {
				p, old := t.Store("f", 30<<10)
				cl := t.Client(User1)
				id, s := t.Ready(cl, "PUT", p)
				_, data := t.File("new", 40<<10)
				h := t.MoverPut(s.MoverURL, s.Token, bytes.NewReader(data), int64(len(data)), "00000000")
				t.Check(h.Err == nil && h.Status >= 400, "a corrupt upload was accepted: %s", h)
				t.Evidence("the mover refused the corrupt rewrite: %s", h)
				f := t.FinalOne(cl, id)
				t.Check(f.Status == "FAILED", "the rewrite ended %s", f.Status)
				t.Evidence("the rewrite's subrequest FAILED: %s %s", f.ErrorCode, f.ErrorMessage)
				t.CheckStaged(p, old)
				t.CheckContent(p, old)
			}},
		Case{ID: "rewrite/get-during-rewrite-reads-old", Purpose: "a get while a rewrite is unclosed does not wait behind it: it reads the previous content at once, and after the rewrite fails the file still reads the old content",
			Run: func(t *T) {
				p, old := t.Store("f", 30<<10)
				cl := t.Client(User1)
				putID, s := t.Ready(cl, "PUT", p)
				_, g := t.Ready(cl, "GET", p)
				t.Evidence("the get was served during the rewrite (%s)", g.Status)
				m, err := cl.Download(t.Ctx, g.MoverURL, g.Token, t.Local("during"), nil)
				t.Check(err == nil && m.ChecksumAdler32 == Adler(old) && m.SizeBytes == int64(len(old)), "the get during the rewrite read %+v %v, want the old %d bytes %s", m, err, len(old), Adler(old))
				_, data := t.File("new", 40<<10)
				t.MoverPut(s.MoverURL, s.Token, bytes.NewReader(data), int64(len(data)), "00000000")
				t.Check(t.FinalOne(cl, putID).Status == "FAILED", "the corrupt rewrite did not fail")
				t.CheckStaged(p, old)
				t.Evidence("the get read the old content (%d bytes, adler32 %s) during the rewrite, and the failed rewrite left it", m.SizeBytes, m.ChecksumAdler32)
			}},
		Case{ID: "rewrite/reader-holds-old-version", Purpose: "a reader given a mover before a rewrite is closed downloads the old bytes in full after the close",
			Run: func(t *T) {
				p, old := t.Store("f", 2<<20)
				cl := t.Client(User1)
				_, g := t.Ready(cl, "GET", p)
				local, data := t.File("new", 1<<20)
				t.OK(t.Cmd("pollux", "cp", local, p))
				t.CheckStaged(p, data)
				m, err := cl.Download(t.Ctx, g.MoverURL, g.Token, t.Local("old"), nil)
				t.Check(err == nil && m.ChecksumAdler32 == Adler(old), "the old reader got %+v %v, want adler32 %s", m, err, Adler(old))
				t.Evidence("the reader holding the old version downloaded it whole (adler32 %s) after the new one (adler32 %s) was closed", m.ChecksumAdler32, Adler(data))
			}},

		// get
		Case{ID: "get/missing-file", Purpose: "a get of a file that does not exist fails with no such file, exit 1",
			Run: func(t *T) { t.Fails(t.Cmd("stager_get", "-M", t.Unused("none")), 1, "no such file") }},
		Case{ID: "get/during-put-waits", Purpose: "a get of a file being written waits (WAITSUBREQ, saying why) and reads the new content once it is closed",
			Run: func(t *T) {
				p := t.Path("f")
				cl := t.Client(User1)
				local, data := t.File("f", 8<<10)
				_, s := t.Ready(cl, "PUT", p)
				get := t.Submit(cl, "GET", p)
				w := t.WaitStatus(cl, get.ID, "WAITSUBREQ")
				t.Check(strings.Contains(w.Info, "waiting for the write"), "info of the waiting get: %q", w.Info)
				t.Evidence("the get waits: %s", w.Info)
				if _, err := cl.Upload(t.Ctx, s.MoverURL, s.Token, local, nil); err != nil {
					t.Fatalf("upload: %v", err)
				}
				t.OK(t.Cmd("stager_putdone", "-M", p))
				g := t.WaitStatus(cl, get.ID, "READY")
				m, err := cl.Download(t.Ctx, g.MoverURL, g.Token, t.Local("back"), nil)
				t.Check(err == nil && m.ChecksumAdler32 == Adler(data), "the get read %+v %v", m, err)
				t.Evidence("after putdone the waiting get read the new content (adler32 %s)", m.ChecksumAdler32)
			}},
		Case{ID: "get/during-failed-first-write", Purpose: "a get waiting behind the first write of a file that then fails ends with no such file",
			Run: func(t *T) {
				p := t.Path("f")
				cl := t.Client(User1)
				putID, s := t.Ready(cl, "PUT", p)
				get := t.Submit(cl, "GET", p)
				t.WaitStatus(cl, get.ID, "WAITSUBREQ")
				t.MoverPut(s.MoverURL, s.Token, strings.NewReader("abc"), 3, "00000000")
				t.Check(t.FinalOne(cl, putID).Status == "FAILED", "the corrupt write did not fail")
				g := t.FinalOne(cl, get.ID)
				t.Check(g.Status == "FAILED" && strings.Contains(g.ErrorMessage, "no such file"), "the waiting get ended %s %s", g.Status, g.ErrorMessage)
				t.Evidence("the waiting get failed: %s", g.ErrorMessage)
			}},
		Case{ID: "get/download-to-directory", Purpose: "stager_get --file DIR/ writes the file under its own name in that directory",
			Run: func(t *T) {
				p, data := t.Store("named.bin", 777)
				dir := t.Local("into")
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatalf("mkdir: %v", err)
				}
				t.OK(t.Cmd("stager_get", "-M", p, "--file", dir+"/"))
				got, err := os.ReadFile(filepath.Join(dir, "named.bin"))
				t.Check(err == nil && bytes.Equal(got, data), "download into the directory: %v", err)
				t.Evidence("stager_get --file %s/ wrote %s/named.bin, byte for byte", dir, dir)
			}},
		Case{ID: "get/many-files-one-request", Purpose: "one stager_get of 20 files gets a mover for each and every download checks out",
			Run: func(t *T) {
				cl := t.Client(User1)
				want := map[string][]byte{}
				var paths []string
				for i := range 20 {
					p, d := t.Store(fmt.Sprintf("g%02d", i), 500*(i+1))
					want[p], paths = d, append(paths, p)
				}
				sub := t.Submit(cl, "GET", paths...)
				var failed []string
				got := 0
				_, err := cl.Wait(t.Ctx, sub.ID, nil, client.Ready, nil, func(s api.Subrequest) {
					m, err := cl.Download(t.Ctx, s.MoverURL, s.Token, t.Local(path.Base(s.Path)+".back"), nil)
					if err != nil || m.ChecksumAdler32 != Adler(want[s.Path]) {
						failed = append(failed, fmt.Sprintf("%s: %s %+v %v", s.Path, s.Status, m, err))
						return
					}
					got++
				})
				t.Check(err == nil && len(failed) == 0 && got == 20, "%d of 20 downloaded: %v %v", got, err, failed)
				t.Evidence("20 files in one get request, each downloaded with the right adler32")
			}},

		// prepareToGet
		Case{ID: "prepare/staged-finishes", Purpose: "prepareToGet of a file on disk finishes at once (FINISHED)",
			Run: func(t *T) {
				p, _ := t.Store("f", 1000)
				o := t.OK(t.Cmd("stager_prepareToGet", "-M", p))
				t.Check(strings.Contains(o.Stdout, p+" FINISHED"), "said: %s", o)
				t.Evidence("stager_prepareToGet: %s", strings.TrimSpace(o.Stdout))
			}},
		Case{ID: "prepare/missing-file", Purpose: "prepareToGet of a missing file fails with no such file, exit 1",
			Run: func(t *T) { t.Fails(t.Cmd("stager_prepareToGet", "-M", t.Unused("none")), 1, "no such file") }},
		Case{ID: "prepare/waits-behind-unclosed-write", Purpose: "prepareToGet waits behind an unclosed write and finishes once it is closed",
			Run: func(t *T) {
				p := t.Path("f")
				cl := t.Client(User1)
				local, _ := t.File("f", 1000)
				_, s := t.Ready(cl, "PUT", p)
				if _, err := cl.Upload(t.Ctx, s.MoverURL, s.Token, local, nil); err != nil {
					t.Fatalf("upload: %v", err)
				}
				prep := t.Submit(cl, "PREPARE_TO_GET", p)
				w := t.WaitStatus(cl, prep.ID, "WAITSUBREQ")
				t.Evidence("prepareToGet waits behind the unclosed write: %s", w.Info)
				t.OK(t.Cmd("stager_putdone", "-M", p))
				f := t.FinalOne(cl, prep.ID)
				t.Check(f.Status == "FINISHED", "prepareToGet ended %s %s", f.Status, f.ErrorMessage)
				t.Evidence("after putdone the prepareToGet FINISHED")
			}},

		// putdone
		Case{ID: "putdone/before-upload-ended", Purpose: "putdone of a write whose upload has not ended is refused (conflict, exit 1) with its message",
			Run: func(t *T) {
				p := t.Path("f")
				cl := t.Client(User1)
				t.Ready(cl, "PUT", p)
				t.Fails(t.Cmd("stager_putdone", "-M", p), 1, "run putdone once its upload has ended")
				t.OK(t.Cmd("stager_rm", "-M", p))
			}},
		Case{ID: "putdone/nothing-to-close", Purpose: "putdone of a closed file is refused (conflict, exit 1): nothing to close",
			Run: func(t *T) {
				p, data := t.Store("f", 100)
				t.Fails(t.Cmd("stager_putdone", "-M", p), 1, "nothing to close")
				t.CheckStaged(p, data)
			}},
		Case{ID: "putdone/missing-file", Purpose: "putdone of an unknown file fails with no such file, exit 1",
			Run: func(t *T) { t.Fails(t.Cmd("stager_putdone", "-M", t.Unused("none")), 1, "no such file") }},
		Case{ID: "putdone/twice", Purpose: "a second putdone after the first closed the file is refused: nothing to close, content unchanged",
			Run: func(t *T) {
				local, data := t.File("f", 999)
				p := t.Path("f")
				t.OK(t.Cmd("stager_put", "-M", p, "--file", local))
				t.OK(t.Cmd("stager_putdone", "-M", p))
				t.Fails(t.Cmd("stager_putdone", "-M", p), 1, "nothing to close")
				t.CheckStaged(p, data)
			}},

		// rm
		Case{ID: "rm/staged-file", Purpose: "stager_rm removes a file: stager_qry and get then say no such file",
			Run: func(t *T) {
				p, _ := t.Store("f", 1000)
				t.OK(t.Cmd("stager_rm", "-M", p))
				t.CheckMissing(p)
				t.Fails(t.Cmd("stager_get", "-M", p), 1, "no such file")
			}},
		Case{ID: "rm/missing-file", Purpose: "stager_rm of a missing file fails with no such file, exit 1",
			Run: func(t *T) { t.Fails(t.Cmd("stager_rm", "-M", t.Unused("none")), 1, "no such file") }},
		Case{ID: "rm/waiting-subrequest", Purpose: "rm of a file fails a get waiting on it with no such file",
			Run: func(t *T) {
				p := t.Path("f")
				cl := t.Client(User1)
				t.Ready(cl, "PUT", p)
				get := t.Submit(cl, "GET", p)
				t.WaitStatus(cl, get.ID, "WAITSUBREQ")
				t.OK(t.Cmd("stager_rm", "-M", p))
				g := t.FinalOne(cl, get.ID)
				t.Check(g.Status == "FAILED" && strings.Contains(g.ErrorMessage, "no such file"), "the waiting get ended %s %s", g.Status, g.ErrorMessage)
				t.Evidence("the waiting get failed: %s", g.ErrorMessage)
			}},
		Case{ID: "rm/not-yet-transferring-put", Purpose: "rm of a file whose put has a mover but no upload yet fails the put (removed while being written); its token no longer uploads",
			Run: func(t *T) {
				p := t.Path("f")
				cl := t.Client(User1)
				putID, s := t.Ready(cl, "PUT", p)
				t.OK(t.Cmd("stager_rm", "-M", p))
				f := t.FinalOne(cl, putID)
				t.Check(f.Status == "FAILED" && strings.Contains(f.ErrorMessage, "removed"), "the put ended %s %s", f.Status, f.ErrorMessage)
				t.Evidence("the put failed: %s", f.ErrorMessage)
				h := t.MoverPut(s.MoverURL, s.Token, strings.NewReader("late"), 4, Adler([]byte("late")))
				t.Check(h.Err != nil || h.Status >= 400, "an upload after the rm was accepted: %s", h)
				t.Evidence("an upload with the removed put's token was refused: %s", h)
				t.CheckMissing(p)
			}},
		Case{ID: "rm/during-write-transfer", Purpose: "rm during an upload fails the write; the upload is not stored and the file stays removed",
			Run: func(t *T) {
				p := t.Path("f")
				cl := t.Client(User1)
				putID, s := t.Ready(cl, "PUT", p)
				data := make([]byte, 4<<20)
				pr, pw := newPipe()
				done := make(chan HTTP, 1)
				go func() { done <- t.MoverPut(s.MoverURL, s.Token, pr, int64(len(data)), Adler(data)) }()
				if _, err := pw.Write(data[:1<<20]); err != nil {
					t.Fatalf("start the upload: %v", err)
				}
				t.OK(t.Cmd("stager_rm", "-M", p))
				_, _ = pw.Write(data[1<<20:])
				pw.Close()
				h := <-done
				f := t.FinalOne(cl, putID)
				t.Check(f.Status == "FAILED", "the write ended %s (mover: %s)", f.Status, h)
				t.Evidence("the write removed mid-upload failed: %s; the mover answered %s", f.ErrorMessage, h)
				t.CheckMissing(p)
			}},
		Case{ID: "rm/during-read-transfer", Purpose: "rm during a download lets the download finish with the whole file; the file is then gone",
			Run: func(t *T) {
				p, data := t.Store("f", 16<<20)
				cl := t.Client(User1)
				_, g := t.Ready(cl, "GET", p)
				got, err := t.downloadAround(g, func() { t.OK(t.Cmd("stager_rm", "-M", p)) })
				t.Check(err == nil && bytes.Equal(got, data), "the download during the rm: %d bytes, %v", len(got), err)
				t.Evidence("the download under way when the file was removed finished whole (%d bytes, adler32 %s)", len(got), Adler(got))
				t.CheckMissing(p)
			}},

		// qry
		Case{ID: "qry/missing-file", Purpose: "stager_qry of a missing file exits 1 with no such file",
			Run: func(t *T) { t.CheckMissing(t.Unused("none")) }},
		Case{ID: "qry/mixed", Purpose: "stager_qry of one present and one missing file prints the present one and exits 1 for the other",
			Run: func(t *T) {
				p, data := t.Store("f", 10)
				o := t.Cmd("stager_qry", "-M", p, "-M", t.Unused("none"))
				t.Fails(o, 1, "no such file")
				t.Check(strings.Contains(o.Stdout, fmt.Sprintf("%s STAGED %d %s", p, len(data), Adler(data))), "stdout: %s", o.Stdout)
			}},
		Case{ID: "qry/json", Purpose: "stager_qry --json prints each file's status, size, adler32, owner and copies",
			Run: func(t *T) {
				p, data := t.Store("f", 1234)
				o := t.OK(t.Cmd("stager_qry", "--json", "-M", p))
				for _, w := range []string{`"status": "STAGED"`, fmt.Sprintf(`"size_bytes": %d`, len(data)), `"checksum_adler32": "` + Adler(data) + `"`, `"owner"`, `"disk_copies": 1`} {
					t.Check(strings.Contains(o.Stdout, w), "stager_qry --json lacks %s: %s", w, o.Stdout)
				}
				t.Evidence("stager_qry --json: status, size, adler32, owner, one disk copy")
			}},
		Case{ID: "qry/failed-put-reason", Purpose: "after a put of a new file fails, stager_qry says why (the reason stays visible), not only no such file",
			Run: func(t *T) {
				p := t.Path("f")
				cl := t.Client(User1)
				putID, s := t.Ready(cl, "PUT", p)
				t.MoverPut(s.MoverURL, s.Token, strings.NewReader("abc"), 3, "00000000")
				f := t.FinalOne(cl, putID)
				t.Check(f.Status == "FAILED", "the corrupt put ended %s", f.Status)
				o := t.Fails(t.Cmd("stager_qry", "-M", p), 1, "no such file", f.ErrorMessage)
				t.Check(strings.Contains(o.Stderr, putID), "stager_qry does not name the failed request %s: %s", putID, o)
			}},
	)
}
