package certify

import (
	"bytes"
	"io"
	"net/http"
	"strings"
)

// The movers: one-time tokens, and uploads that arrive short or corrupt.
func init() {
	register(
		Case{ID: "mover/bad-token-changes-nothing", Purpose: "an upload with a wrong token is refused (403) and the transfer still takes the right token's upload",
			Run: func(t *T) {
				p := t.Path("f")
				cl := t.Client(User1)
				_, s := t.Ready(cl, "PUT", p)
				h := t.MoverPut(s.MoverURL, "certify-wrong-token", strings.NewReader("evil"), 4, Adler([]byte("evil")))
				t.Check(h.Err == nil && h.Status == http.StatusForbidden, "upload with a wrong token: %s, want 403", h)
				t.Evidence("upload with a wrong token answered %s", h)
				local, data := t.File("f", 5000)
				if _, err := cl.Upload(t.Ctx, s.MoverURL, s.Token, local, nil); err != nil {
					t.Fatalf("the right token's upload after the refusal: %v", err)
				}
				t.OK(t.Cmd("stager_putdone", "-M", p))
				t.CheckStaged(p, data)
			}},
		Case{ID: "mover/token-without-secret", Purpose: "the mover's token alone (what the database holds) opens nothing: without the client's transfer secret, or with another, the upload is refused (403) and the transfer still takes the whole credential",
			Run: func(t *T) {
				p := t.Path("f")
				cl := t.Client(User1)
				_, s := t.Ready(cl, "PUT", p)
				token, _, ok := strings.Cut(s.Token, ".")
				t.Check(ok, "the client's credential %q is not <token>.<secret>", s.Token)
				for _, c := range []struct{ what, credential, says string }{
					{"the token alone", token, "without its secret"},
					{"another secret", token + ".not-the-secret", "secret does not check"},
				} {
					h := t.MoverPut(s.MoverURL, c.credential, strings.NewReader("evil"), 4, Adler([]byte("evil")))
					t.Check(h.Err == nil && h.Status == http.StatusForbidden && strings.Contains(h.Body, c.says),
						"upload with %s: %s, want 403 saying %q", c.what, h, c.says)
					t.Evidence("upload with %s answered %s", c.what, h)
				}
				local, data := t.File("f", 3000)
				if _, err := cl.Upload(t.Ctx, s.MoverURL, s.Token, local, nil); err != nil {
					t.Fatalf("the whole credential's upload after the refusals: %v", err)
				}
				t.OK(t.Cmd("stager_putdone", "-M", p))
				t.CheckStaged(p, data)
			}},
		Case{ID: "mover/no-token", Purpose: "an upload without Authorization is refused (401)",
			Run: func(t *T) {
				p := t.Path("f")
				cl := t.Client(User1)
				_, s := t.Ready(cl, "PUT", p)
				h := t.Raw(http.MethodPut, s.MoverURL, strings.NewReader("x"), 1, nil)
				t.Check(h.Err == nil && h.Status == http.StatusUnauthorized, "upload without a token: %s, want 401", h)
				t.Evidence("upload without a token answered %s", h)
				t.OK(t.Cmd("stager_rm", "-M", p))
			}},
		Case{ID: "mover/reused-put-token", Purpose: "a put token is good for one upload: a second upload with it is refused and the content stays the first",
			Run: func(t *T) {
				p := t.Path("f")
				cl := t.Client(User1)
				_, s := t.Ready(cl, "PUT", p)
				local, data := t.File("f", 3000)
				if _, err := cl.Upload(t.Ctx, s.MoverURL, s.Token, local, nil); err != nil {
					t.Fatalf("upload: %v", err)
				}
				other := []byte("second upload with a spent token")
				h := t.MoverPut(s.MoverURL, s.Token, bytes.NewReader(other), int64(len(other)), Adler(other))
				t.Check(h.Err == nil && h.Status >= 400, "a second upload with the token: %s", h)
				t.Evidence("a second upload with the spent token answered %s", h)
				t.OK(t.Cmd("stager_putdone", "-M", p))
				t.CheckStaged(p, data)
			}},
		Case{ID: "mover/reused-get-token", Purpose: "a get token is good for one download: a second download with it is refused",
			Run: func(t *T) {
				p, data := t.Store("f", 3000)
				cl := t.Client(User1)
				_, g := t.Ready(cl, "GET", p)
				first := t.MoverGet(g.MoverURL, g.Token)
				t.Check(first.Status == http.StatusOK && first.Body == string(data), "first download: %s", first)
				again := t.MoverGet(g.MoverURL, g.Token)
				t.Check(again.Err == nil && again.Status >= 400, "a second download with the token: %s", again)
				t.Evidence("first download 200 with the data; the second with the same token answered %s", again)
			}},
		Case{ID: "mover/get-token-cannot-upload", Purpose: "a get's token does not upload: the call is refused and the file's content is unchanged",
			Run: func(t *T) {
				p, data := t.Store("f", 3000)
				cl := t.Client(User1)
				_, g := t.Ready(cl, "GET", p)
				evil := []byte("overwrite through a read token")
				h := t.MoverPut(g.MoverURL, g.Token, bytes.NewReader(evil), int64(len(evil)), Adler(evil))
				t.Check(h.Err == nil && h.Status >= 400, "an upload with a get's token: %s", h)
				t.Evidence("an upload with a get's token answered %s", h)
				t.CheckStaged(p, data)
			}},
		Case{ID: "mover/corrupt-upload", Purpose: "an upload whose adler32 does not match its bytes is refused; the new file's write fails and it leaves no entry",
			Run: func(t *T) {
				p := t.Path("f")
				cl := t.Client(User1)
				putID, s := t.Ready(cl, "PUT", p)
				data := []byte("bytes that do not match the announced checksum")
				h := t.MoverPut(s.MoverURL, s.Token, bytes.NewReader(data), int64(len(data)), "0badc0de")
				t.Check(h.Err == nil && h.Status >= 400, "a corrupt upload: %s", h)
				t.Evidence("the corrupt upload answered %s", h)
				f := t.FinalOne(cl, putID)
				t.Check(f.Status == "FAILED" && f.ErrorMessage != "", "the corrupt write ended %s %q", f.Status, f.ErrorMessage)
				t.Evidence("the write failed: %s %s", f.ErrorCode, f.ErrorMessage)
				t.CheckMissing(p)
			}},
		Case{ID: "mover/malformed-checksum", Purpose: "an upload whose X-Pollux-Adler32 is not eight hex digits is refused and fails the write with the reason",
			Run: func(t *T) {
				p := t.Path("f")
				cl := t.Client(User1)
				putID, s := t.Ready(cl, "PUT", p)
				h := t.MoverPut(s.MoverURL, s.Token, strings.NewReader("abc"), 3, "xyz")
				t.Check(h.Err == nil && h.Status == http.StatusBadRequest, "malformed checksum: %s, want 400", h)
				t.Evidence("the upload answered %s", h)
				f := t.FinalOne(cl, putID)
				t.Check(f.Status == "FAILED", "the write ended %s", f.Status)
				t.Evidence("the write failed: %s", f.ErrorMessage)
			}},
		Case{ID: "mover/truncated-upload", Purpose: "an upload that ends before its Content-Length fails the write with the reason, and the new file leaves no entry",
			Run: func(t *T) {
				p := t.Path("f")
				cl := t.Client(User1)
				putID, s := t.Ready(cl, "PUT", p)
				data := make([]byte, 1<<20)
				// Half the bytes, then the client goes away.
				h := t.MoverPut(s.MoverURL, s.Token, io.LimitReader(bytes.NewReader(data), 1<<19), int64(len(data)), Adler(data))
				t.Check(h.Err != nil || h.Status >= 400, "a truncated upload was accepted: %s", h)
				f := t.FinalOne(cl, putID)
				t.Check(f.Status == "FAILED" && f.ErrorMessage != "", "the truncated write ended %s %q", f.Status, f.ErrorMessage)
				t.Evidence("the truncated write failed: %s %s", f.ErrorCode, f.ErrorMessage)
				t.CheckMissing(p)
			}},
		Case{ID: "mover/truncated-rewrite-keeps-old", Purpose: "a rewrite whose upload is truncated fails and the old content stays STAGED and readable",
			Run: func(t *T) {
				p, old := t.Store("f", 20000)
				cl := t.Client(User1)
				putID, s := t.Ready(cl, "PUT", p)
				data := make([]byte, 1<<20)
				t.MoverPut(s.MoverURL, s.Token, io.LimitReader(bytes.NewReader(data), 1000), int64(len(data)), Adler(data))
				t.Check(t.FinalOne(cl, putID).Status == "FAILED", "the truncated rewrite did not fail")
				t.CheckStaged(p, old)
				t.CheckContent(p, old)
			}},
	)
}
