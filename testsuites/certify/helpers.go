package certify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/pollux-storage/pollux/cmd/client"
	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/framework/certs"
)

// Store writes a file of size random bytes to name in the case's directory with pollux cp
// (put, upload, close) and returns its path and content.
func (t *T) Store(name string, size int) (string, []byte) {
	return t.StoreAs(User1, name, size)
}

// StoreAs is Store as user.
func (t *T) StoreAs(user int, name string, size int) (string, []byte) {
	local, data := t.File(strings.ReplaceAll(name, "/", "_")+".src", size)
	p := t.PathAs(user, name)
	t.OK(t.CmdAs(user, "pollux", "cp", local, p))
	return p, data
}

// Qry reads a file's entry through the client library (stager_qry's call).
func (t *T) Qry(user int, p string) (api.File, error) {
	return t.Client(user).Query(t.Ctx, p)
}

// MustQry is Qry that fails the case on an error.
func (t *T) MustQry(p string) api.File {
	f, err := t.Qry(User1, p)
	if err != nil {
		t.Fatalf("stager_qry %s: %v", p, err)
	}
	return f
}

// CheckStaged checks that p is STAGED with data's size and checksum.
func (t *T) CheckStaged(p string, data []byte) {
	f := t.MustQry(p)
	want := Adler(data)
	got := ""
	if f.ChecksumAdler32 != nil {
		got = *f.ChecksumAdler32
	}
	size := int64(-1)
	if f.SizeBytes != nil {
		size = *f.SizeBytes
	}
	t.Check(f.Status == "STAGED" && size == int64(len(data)) && got == want,
		"stager_qry %s: %s %d bytes adler32 %s, want STAGED %d bytes adler32 %s", p, f.Status, size, got, len(data), want)
	t.Evidence("stager_qry %s: STAGED %d bytes adler32 %s", p, size, got)
}

// ReadBack downloads p with pollux cp and returns its bytes.
func (t *T) ReadBack(p string) []byte { return t.ReadBackAs(User1, p) }

// ReadBackAs is ReadBack as user.
func (t *T) ReadBackAs(user int, p string) []byte {
	t.n++
	local := t.Local(fmt.Sprintf("back-%d", t.n))
	t.OK(t.CmdAs(user, "pollux", "cp", p, local))
	b, err := os.ReadFile(local)
	if err != nil {
		t.Fatalf("read the download: %v", err)
	}
	return b
}

// CheckContent downloads p and compares it with want.
func (t *T) CheckContent(p string, want []byte) {
	got := t.ReadBack(p)
	t.Check(bytes.Equal(got, want), "%s read back %d bytes adler32 %s, want %d bytes adler32 %s", p, len(got), Adler(got), len(want), Adler(want))
	t.Evidence("%s read back byte for byte (%d bytes, adler32 %s)", p, len(got), Adler(got))
}

// CheckMissing checks that stager_qry answers "no such file" for p.
func (t *T) CheckMissing(p string) {
	o := t.Cmd("stager_qry", "-M", p)
	t.Fails(o, 1, "no such file")
}

// Ready submits a request of typ for p and waits until its subrequest is READY. When the
// case ends its token is spent (Spend) if the case did not use it.
func (t *T) Ready(cl *client.Client, typ, p string) (string, api.Subrequest) {
	sub := t.Submit(cl, typ, p)
	s := t.WaitStatus(cl, sub.ID, "READY")
	t.Cleanup(func() { t.Spend(typ, s.MoverURL, s.Token) })
	return sub.ID, s
}

// Spend presents a READY transfer's token to its mover, with a refused upload (a put) or
// a download (a get), so that the disk server's transfer worker it holds is freed at once
// rather than at the open timeout (policy transfer_open_seconds): a run must not leave a
// shared instance's movers busy. A token already spent is refused, which changes nothing.
func (t *T) Spend(typ, url, token string) {
	hc := t.httpClient()
	method, body := http.MethodGet, io.Reader(nil)
	if typ == "PUT" {
		method, body = http.MethodPut, strings.NewReader("x")
	}
	req, err := http.NewRequestWithContext(context.WithoutCancel(t.Ctx), method, url, body)
	if err != nil {
		return
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if typ == "PUT" {
		req.ContentLength = 1
		req.Header.Set(api.HeaderAdler32, "00000000")
	}
	if resp, err := hc.Do(req); err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// SpendPrinted spends the token of every "PATH READY URL token=TOKEN" line a command
// printed.
func (t *T) SpendPrinted(typ string, o Out) {
	for _, line := range strings.Split(o.Stdout, "\n") {
		f := strings.Fields(line)
		if len(f) == 4 && f[1] == "READY" && strings.HasPrefix(f[3], "token=") {
			t.Spend(typ, f[2], strings.TrimPrefix(f[3], "token="))
		}
	}
}

// Final waits until every subrequest of request id is over.
func (t *T) Final(cl *client.Client, id string) api.Request {
	return t.WaitRequest(cl, id, "over", func(r api.Request) bool {
		for _, s := range r.Subrequests {
			if !client.Over(s) {
				return false
			}
		}
		return len(r.Subrequests) > 0
	})
}

// FinalOne waits until the only subrequest of id is over and returns it.
func (t *T) FinalOne(cl *client.Client, id string) api.Subrequest {
	return t.Final(cl, id).Subrequests[0]
}

// httpClient is for the calls the client library does not make (a bad token, a
// truncated upload), with the same trust as the commands (POLLUX_CA_FILE). One for the
// run, made by Run: cases call it from goroutines of their own.
func (t *T) httpClient() *http.Client { return t.s.http }

func newHTTPClient() (*http.Client, func()) {
	tr := &http.Transport{DisableCompression: true, ExpectContinueTimeout: 2 * time.Second}
	if f := os.Getenv(client.EnvCAFile); f != "" {
		// A bad file is the clients' to report (ConfigFromEnv); the calls made here then
		// fail their TLS check with an error that says so.
		if c, err := certs.Client(f); err == nil {
			tr.TLSClientConfig = c
		}
	}
	return &http.Client{Transport: tr, Timeout: time.Minute}, tr.CloseIdleConnections
}

// HTTP is one raw call's outcome.
type HTTP struct {
	Status int
	Body   string
	Err    error
}

// Kind is the error kind of a failed call's api.ErrorBody, or "".
func (h HTTP) Kind() string {
	var eb api.ErrorBody
	if json.Unmarshal([]byte(h.Body), &eb) != nil {
		return ""
	}
	return eb.Error.Kind
}

func (h HTTP) String() string {
	if h.Err != nil {
		return "error: " + h.Err.Error()
	}
	return fmt.Sprintf("%d %s", h.Status, firstLine(strings.TrimSpace(h.Body)))
}

// Raw makes one HTTP call; length is the body's announced length (-1: none, or chunked).
// It never ends the case, so goroutines of a case may use it.
func (t *T) Raw(method, url string, body io.Reader, length int64, header map[string]string) HTTP {
	req, err := http.NewRequestWithContext(t.Ctx, method, url, body)
	if err != nil {
		return HTTP{Err: fmt.Errorf("request %s %s: %w", method, url, err)}
	}
	if length >= 0 {
		req.ContentLength = length
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := t.httpClient().Do(req)
	if err != nil {
		return HTTP{Err: err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return HTTP{Status: resp.StatusCode, Body: string(b)}
}

// RHD is the base URL of the first request handler STAGE_HOST names.
func (t *T) RHD() string {
	h := strings.TrimSpace(strings.Split(t.s.cfg.StageHost, ",")[0])
	if !strings.Contains(h, "://") {
		h = "http://" + h
	}
	if !strings.Contains(strings.TrimPrefix(strings.TrimPrefix(h, "http://"), "https://"), ":") {
		h = fmt.Sprintf("%s:%d", h, api.DefaultPort)
	}
	return h
}

// API makes one call to the first request handler as user (Token2 for User2, none for 0).
func (t *T) API(user int, method, path string, body string) HTTP {
	hdr := map[string]string{"Accept": "application/json"}
	switch user {
	case User1:
		hdr["Authorization"] = "Bearer " + t.s.cfg.Token
	case User2:
		hdr["Authorization"] = "Bearer " + t.s.cfg.Token2
	}
	var r io.Reader
	length := int64(-1)
	if body != "" {
		r, length = strings.NewReader(body), int64(len(body))
		hdr["Content-Type"] = "application/json"
	}
	return t.Raw(method, t.RHD()+path, r, length, hdr)
}

// MoverPut uploads body to a mover with token, announcing length bytes and adler.
func (t *T) MoverPut(url, token string, body io.Reader, length int64, adler string) HTTP {
	hdr := map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/octet-stream"}
	if adler != "" {
		hdr[api.HeaderAdler32] = adler
	}
	return t.Raw(http.MethodPut, url, body, length, hdr)
}

// MoverGet downloads from a mover with token.
func (t *T) MoverGet(url, token string) HTTP {
	return t.Raw(http.MethodGet, url, nil, -1, map[string]string{"Authorization": "Bearer " + token})
}

// user names a user for messages ("you are bob"), when its name is known.
func (t *T) user(u int) string {
	if u == User2 {
		return t.s.cfg.User2
	}
	return t.s.cfg.User
}

var timeZero time.Time

// WaitDecided waits until the only subrequest of id is READY or over: the end of a put's
// decision.
func (t *T) WaitDecided(cl *client.Client, id string) api.Subrequest {
	return t.WaitRequest(cl, id, "READY or over", func(r api.Request) bool {
		return len(r.Subrequests) == 1 && client.Ready(r.Subrequests[0])
	}).Subrequests[0]
}

func newPipe() (*io.PipeReader, *io.PipeWriter) { return io.Pipe() }

// downloadAround downloads a READY get's data, calling during once the first megabyte
// has arrived (the transfer is then under way), and returns every byte received.
func (t *T) downloadAround(g api.Subrequest, during func()) ([]byte, error) {
	req, err := http.NewRequestWithContext(t.Ctx, http.MethodGet, g.MoverURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+g.Token)
	resp, err := t.httpClient().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("mover answered %d: %s", resp.StatusCode, b)
	}
	first := make([]byte, 1<<20)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		return nil, fmt.Errorf("first megabyte: %w", err)
	}
	during()
	rest, err := io.ReadAll(resp.Body)
	return append(first, rest...), err
}
