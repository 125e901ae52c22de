package certify

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/pollux-storage/pollux/cmd/client"
	"github.com/pollux-storage/pollux/daemons/rhd/api"
)

// The request handler's API as any client meets it: authentication, malformed calls,
// request ids, long polls. rhd rejects what is malformed before anything is written.
func init() {
	// submit posts a request body as user 1 and expects status and kind.
	submit := func(t *T, body string, status int, kind, says string) {
		h := t.API(User1, http.MethodPost, api.PathRequests, body)
		t.Check(h.Err == nil && h.Status == status && h.Kind() == kind && strings.Contains(h.Body, says),
			"POST %s %s: got %s, want %d %s saying %q", api.PathRequests, body, h, status, kind, says)
		t.Evidence("POST %s answered %d %s: %s", api.PathRequests, h.Status, h.Kind(), firstLine(h.Body))
	}
	validPut := func(t *T, p string) string {
		id := client.NewRequestID()
		b, _ := json.Marshal(api.SubmitRequest{ID: id, Type: "PUT", Paths: []string{p}, TransferKeyHash: api.TransferKeyHash("certify secret of " + id)})
		return string(b)
	}
	register(
		Case{ID: "api/auth/no-token", Purpose: "a call without a bearer token is refused with 401 and kind permission",
			Run: func(t *T) {
				h := t.API(0, http.MethodGet, api.PathFiles+"?path="+url.QueryEscape(t.Unused("f")), "")
				t.Check(h.Status == http.StatusUnauthorized && h.Kind() == "permission", "got %s, want 401 permission", h)
				t.Evidence("GET without Authorization answered %s", h)
			}},
		Case{ID: "api/auth/unknown-token", Purpose: "stager_qry with an unknown token exits 1 and says to check POLLUX_TOKEN, without echoing the token",
			Run: func(t *T) {
				bad := "certify-unknown-token-" + t.s.cfg.RunID
				o := t.Fails(t.CmdEnv(map[string]string{"POLLUX_TOKEN": bad}, "stager_qry", "-M", t.Unused("f")), 1, "unknown token", "POLLUX_TOKEN")
				t.Check(!strings.Contains(o.Stdout+o.Stderr, bad), "the refusal echoes the token: %s", o)
				t.Evidence("the token does not appear in the refusal")
			}},
		Case{ID: "api/auth/unknown-token-submit", Purpose: "a put with an unknown token exits 1 and creates nothing",
			Run: func(t *T) {
				p := t.Unused("f")
				t.Fails(t.CmdEnv(map[string]string{"POLLUX_TOKEN": "certify-unknown-token"}, "stager_put", "--no-wait", "-M", p), 1, "unknown token")
				t.CheckMissing(p)
			}},
		Case{ID: "api/auth/empty-bearer-token-file", Purpose: "an empty BEARER_TOKEN_FILE (and no POLLUX_TOKEN) exits 1 saying to get a new token",
			Run: func(t *T) {
				f := t.Local("bt")
				if err := os.WriteFile(f, nil, 0o600); err != nil {
					t.Fatalf("write %s: %v", f, err)
				}
				t.Fails(t.CmdEnv(map[string]string{"POLLUX_TOKEN": "", "BEARER_TOKEN_FILE": f}, "stager_qry", "-M", t.Unused("f")), 1, "is empty")
			}},
		Case{ID: "api/submit/empty-body", Purpose: "a submission with an empty body is refused with 400 invalid",
			Run: func(t *T) {
				h := t.Raw(http.MethodPost, t.RHD()+api.PathRequests, strings.NewReader(""), 0,
					map[string]string{"Authorization": "Bearer " + t.s.cfg.Token, "Content-Type": "application/json"})
				t.Check(h.Err == nil && h.Status == http.StatusBadRequest && h.Kind() == "invalid", "an empty submission: %s", h)
				t.Evidence("POST %s with no body answered %s", api.PathRequests, h)
			}},
		Case{ID: "api/submit/two-json-values", Purpose: "a submission body holding two JSON values is refused with 400 invalid, and neither is stored",
			Run: func(t *T) {
				one := `{"id":"` + client.NewRequestID() + `","type":"PUT","paths":["` + t.Unused("f") + `"]}`
				submit(t, one+one, http.StatusBadRequest, "invalid", "")
				t.CheckMissing(t.Unused("f"))
			}},
		Case{ID: "api/submit/malformed-json", Purpose: "a submission that is not JSON is refused with 400 invalid",
			Run: func(t *T) { submit(t, `{"id": `, http.StatusBadRequest, "invalid", "") }},
		Case{ID: "api/submit/unknown-field", Purpose: "a submission with a field rhd does not know is refused with 400 naming the field",
			Run: func(t *T) {
				submit(t, `{"id":"`+client.NewRequestID()+`","type":"PUT","paths":["`+t.Unused("f")+`"],"colour":"red"}`, http.StatusBadRequest, "invalid", "colour")
				t.CheckMissing(t.Unused("f"))
			}},
		Case{ID: "api/submit/unknown-type", Purpose: "a submission of an unknown request type is refused with 400 invalid",
			Run: func(t *T) {
				submit(t, `{"id":"`+client.NewRequestID()+`","type":"MOVE","paths":["`+t.Unused("f")+`"]}`, http.StatusBadRequest, "invalid", "MOVE")
			}},
		Case{ID: "api/submit/missing-id", Purpose: "a submission without a request id is refused with 400 invalid",
			Run: func(t *T) {
				submit(t, `{"type":"PUT","paths":["`+t.Unused("f")+`"]}`, http.StatusBadRequest, "invalid", "id")
				t.CheckMissing(t.Unused("f"))
			}},
		Case{ID: "api/submit/malformed-id", Purpose: "a submission whose id is not a UUID is refused with 400 invalid",
			Run: func(t *T) {
				submit(t, `{"id":"not-a-uuid","type":"PUT","paths":["`+t.Unused("f")+`"]}`, http.StatusBadRequest, "invalid", "id")
			}},
		Case{ID: "api/submit/put-without-transfer-key", Purpose: "a PUT submitted without transfer_key_hash (a client too old to keep a transfer secret) is refused with 400 invalid saying so, and stores nothing",
			Run: func(t *T) {
				p := t.Unused("f")
				b, _ := json.Marshal(api.SubmitRequest{ID: client.NewRequestID(), Type: "PUT", Paths: []string{p}})
				submit(t, string(b), http.StatusBadRequest, "invalid", "needs transfer_key_hash")
				t.CheckMissing(p)
			}},
		Case{ID: "api/submit/no-paths", Purpose: "a submission naming no file is refused as invalid",
			Run: func(t *T) {
				submit(t, `{"id":"`+client.NewRequestID()+`","type":"GET","paths":[]}`, http.StatusBadRequest, "invalid", "")
			}},
		Case{ID: "api/submit/retry-same-id", Purpose: "the same submission sent twice (a client's retry) is stored once: the second answer says created false",
			Run: func(t *T) {
				cl := t.Client(User1)
				req := api.SubmitRequest{ID: client.NewRequestID(), Type: "PREPARE_TO_GET", ServiceClass: t.s.cfg.ServiceClass, Paths: []string{t.Unused("f")}}
				a, err := cl.Submit(t.Ctx, req, 0)
				t.Check(err == nil && a.Created, "first submission: %+v %v", a, err)
				b, err := cl.Submit(t.Ctx, req, 0)
				t.Check(err == nil && !b.Created && b.ID == a.ID, "second submission: %+v %v", b, err)
				t.Evidence("request %s: first answer created=true, the retry created=false", a.ID)
				t.FinalOne(cl, a.ID)
			}},
		Case{ID: "api/submit/reused-id", Purpose: "a request id reused for a different request is refused as a conflict",
			Run: func(t *T) {
				cl := t.Client(User1)
				req := api.SubmitRequest{ID: client.NewRequestID(), Type: "PREPARE_TO_GET", ServiceClass: t.s.cfg.ServiceClass, Paths: []string{t.Unused("f")}}
				if _, err := cl.Submit(t.Ctx, req, 0); err != nil {
					t.Fatalf("first submission: %v", err)
				}
				req.Paths = []string{t.Unused("g")}
				_, err := cl.Submit(t.Ctx, req, 0)
				t.Check(client.ExitCode(err) == 1 && err != nil && strings.Contains(err.Error(), "already used by a different request"), "reuse: %v", err)
				t.Evidence("reusing request id %s for another file: %v", req.ID, err)
			}},
		Case{ID: "api/request/unknown-id", Purpose: "reading a request id the service never stored answers 404 not_found",
			Run: func(t *T) {
				h := t.API(User1, http.MethodGet, api.RequestPath(client.NewRequestID()), "")
				t.Check(h.Status == http.StatusNotFound && h.Kind() == "not_found", "got %s", h)
				t.Evidence("GET of an unknown request answered %s", h)
			}},
		Case{ID: "api/request/bad-since", Purpose: "a long poll with a since that is not a time is refused with 400 saying what to give",
			Run: func(t *T) {
				h := t.API(User1, http.MethodGet, api.RequestPath(client.NewRequestID())+"?wait=1s&since=yesterday", "")
				t.Check(h.Status == http.StatusBadRequest && strings.Contains(h.Body, "since"), "got %s", h)
				t.Evidence("GET with since=yesterday answered %s", h)
			}},
		Case{ID: "api/request/long-poll-waits", Purpose: "a long poll on a request that does not change waits (about the wait asked for) and then answers unchanged",
			Run: func(t *T) {
				cl := t.Client(User1)
				sub := t.Submit(cl, "PREPARE_TO_GET", t.Unused("f"))
				req := t.Final(cl, sub.ID)
				start := time.Now()
				again, err := cl.Request(t.Ctx, sub.ID, req.UpdatedAt, 2*time.Second)
				took := time.Since(start)
				t.Check(err == nil && again.UpdatedAt.Equal(req.UpdatedAt), "long poll: %v %v", err, again.UpdatedAt)
				t.Check(took >= 1500*time.Millisecond, "a long poll of 2s on a finished request answered after %s: it did not wait", took)
				t.Evidence("a 2s long poll on an unchanged request answered after %s, unchanged", took.Round(10*time.Millisecond))
			}},
		Case{ID: "api/request/other-users-request", Purpose: "a user cannot read another user's request (its paths and tokens)", Needs: []Need{NeedUser2},
			Run: func(t *T) {
				sub := t.Submit(t.Client(User1), "PREPARE_TO_GET", t.Unused("f"))
				h := t.API(User2, http.MethodGet, api.RequestPath(sub.ID), "")
				t.Check(h.Status == http.StatusNotFound || h.Status == http.StatusForbidden, "the second user read the first user's request: %s", h)
				t.Evidence("the second user's GET of the first user's request answered %s", h)
			}},
		Case{ID: "api/files/no-path", Purpose: "a file query without ?path is refused with 400 saying how to name the file",
			Run: func(t *T) {
				h := t.API(User1, http.MethodGet, api.PathFiles, "")
				t.Check(h.Status == http.StatusBadRequest && strings.Contains(h.Body, "path="), "got %s", h)
				t.Evidence("GET %s answered %s", api.PathFiles, h)
			}},
		Case{ID: "api/submit/bad-path-changes-nothing", Purpose: "a request with one bad path among good ones is refused whole: the good paths are not created",
			Run: func(t *T) {
				good := t.Unused("good")
				t.Fails(t.Cmd("stager_put", "--no-wait", "-M", good, "-M", "relative/path"), 1, "relative")
				t.CheckMissing(good)
			}},
		Case{ID: "api/submit/validation", Purpose: validPutPurpose,
			Run: func(t *T) {
				p := t.Path("f")
				body := validPut(t, p)
				submit(t, body, http.StatusCreated, "", "")
				var req api.SubmitRequest
				_ = json.Unmarshal([]byte(body), &req)
				cl := t.Client(User1)
				s := t.WaitStatus(cl, req.ID, "READY")
				// The put waits for an upload that will not come: remove it.
				t.OK(t.Cmd("stager_rm", "-M", p))
				t.Spend("PUT", s.MoverURL, s.Token)
			}},
	)

	register(
		Case{ID: "service/unreachable-exit-2", Purpose: "a command whose STAGE_HOST answers nothing exits 2 (a service error) after --service-timeout, saying what it tried",
			Run: func(t *T) {
				addr := refuser(t)
				start := time.Now()
				o := t.CmdEnv(map[string]string{"STAGE_HOST": addr}, "stager_qry", "--service-timeout", "3s", "-M", t.Unused("f"))
				t.Fails(o, 2, "no request handler could serve the call", addr)
				t.Check(time.Since(start) < 30*time.Second, "gave up after %s, not about --service-timeout 3s", time.Since(start))
			}},
		Case{ID: "service/unavailable-503-exit-2", Purpose: "a request handler answering 503 unavailable makes the command exit 2 with its message once --service-timeout passes",
			Run: func(t *T) {
				addr := unavailableHandler(t)
				o := t.CmdEnv(map[string]string{"STAGE_HOST": addr}, "stager_get", "--service-timeout", "3s", "-M", t.Unused("f"))
				t.Fails(o, 2, "answered 503", "certify: the database is away")
			}},
		Case{ID: "service/failover-to-next-address", Purpose: "with a dead address listed first in STAGE_HOST, a command fails over to the live one and succeeds",
			Run: func(t *T) {
				dead := refuser(t)
				host := strings.TrimPrefix(strings.TrimPrefix(t.RHD(), "http://"), "https://")
				if strings.HasPrefix(t.RHD(), "https://") {
					host = "https://" + host
				}
				o := t.CmdEnv(map[string]string{"STAGE_HOST": dead + "," + host}, "stager_prepareToGet", "--service-timeout", "10s", "-M", t.Unused("f"))
				// The file does not exist: exit 1 with "no such file" means the live one answered.
				t.Fails(o, 1, "no such file")
			}},
		Case{ID: "service/readyz", Purpose: "/readyz on the clients' port answers 200 without a token while the request handler serves",
			Run: func(t *T) {
				h := t.Raw(http.MethodGet, t.RHD()+api.PathReady, nil, -1, nil)
				t.Check(h.Status == http.StatusOK, "GET /readyz: %s", h)
				t.Evidence("GET %s%s answered %s", t.RHD(), api.PathReady, h)
			}},
		Case{ID: "service/readyz-503-while-draining", Purpose: "/readyz answers 503 from a request handler's first SIGTERM on, while it drains", Needs: []Need{NeedDrain},
			Run: func(t *T) {
				readyz, restore, err := t.s.cfg.DrainRHD(t.Ctx)
				if err != nil {
					t.Fatalf("drain a request handler: %v", err)
				}
				defer func() {
					if err := restore(t.Ctx); err != nil {
						t.Fatalf("bring the request handler back: %v", err)
					}
					t.Evidence("the request handler was brought back")
				}()
				// The signal is on its way: the first answer that is not 200 must be a 503,
				// while the handler still runs (a refused connection would mean it stopped
				// serving its health check before it said it was unready).
				var h HTTP
				deadline := time.Now().Add(10 * time.Second)
				for {
					h = t.Raw(http.MethodGet, readyz, nil, -1, nil)
					if h.Err != nil || h.Status != http.StatusOK || time.Now().After(deadline) {
						break
					}
					select {
					case <-t.Ctx.Done():
					case <-time.After(20 * time.Millisecond): // the poll's interval
					}
				}
				t.Check(h.Err == nil && h.Status == http.StatusServiceUnavailable, "GET %s after SIGTERM: %s, want 503", readyz, h)
				t.Evidence("GET %s while draining answered %s", readyz, h)
			}},
		Case{ID: "service/usertag-honoured", Purpose: "-U is kept with the request and answered back by the service",
			Run: func(t *T) {
				tag := "certify-" + t.s.cfg.RunID
				p, _ := t.Store("f", 10)
				o := t.OK(t.Cmd("stager_prepareToGet", "-U", tag, "--json", "-M", p))
				var out struct {
					Request api.Request `json:"request"`
				}
				if err := json.Unmarshal([]byte(o.Stdout), &out); err != nil {
					t.Fatalf("--json output: %v: %s", err, o)
				}
				t.Check(out.Request.UserTag == tag, "request %s has user tag %q, want %q", out.Request.ID, out.Request.UserTag, tag)
				got, err := t.Client(User1).Request(t.Ctx, out.Request.ID, time.Time{}, 0)
				t.Check(err == nil && got.UserTag == tag, "reading request %s again: tag %q, %v", out.Request.ID, got.UserTag, err)
				t.Evidence("request %s carries user tag %q, read back from the service", out.Request.ID, tag)
			}},
		Case{ID: "service/svcclass-honoured", Purpose: "-S names the service class: the request and the file it writes are in it",
			Run: func(t *T) {
				local, data := t.File("f", 1000)
				p := t.Path("f")
				o := t.OK(t.Cmd("pollux", "cp", "-S", t.s.cfg.ServiceClass, "--json", local, p))
				var out struct {
					RequestID string `json:"request_id"`
				}
				_ = json.Unmarshal([]byte(o.Stdout), &out)
				req, err := t.Client(User1).Request(t.Ctx, out.RequestID, time.Time{}, 0)
				t.Check(err == nil && req.ServiceClass == t.s.cfg.ServiceClass, "request %s: service class %q, %v", out.RequestID, req.ServiceClass, err)
				f := t.MustQry(p)
				t.Check(f.ServiceClass == t.s.cfg.ServiceClass, "file %s: service class %q, want %q", p, f.ServiceClass, t.s.cfg.ServiceClass)
				t.Evidence("request %s and file %s are in service class %s (%d bytes)", out.RequestID, p, f.ServiceClass, len(data))
			}},
		Case{ID: "service/svcclass-unknown", Purpose: "-S of an unknown service class exits 1 naming it, and creates nothing",
			Run: func(t *T) {
				p := t.Unused("f")
				t.Fails(t.Cmd("stager_put", "--no-wait", "-S", "certify-no-such-class", "-M", p), 1, `unknown service class "certify-no-such-class"`)
				t.CheckMissing(p)
			}},
		Case{ID: "service/svcclass-from-env", Purpose: "STAGE_SVCCLASS is the service class when -S is not given",
			Run: func(t *T) {
				p := t.Unused("f")
				t.Fails(t.CmdEnv(map[string]string{"STAGE_SVCCLASS": "certify-env-class"}, "stager_put", "--no-wait", "-M", p), 1, `unknown service class "certify-env-class"`)
			}},
	)
}

const validPutPurpose = "a well-formed submission is stored (201) and can be removed at once"

// refuser listens on a port of its own (bound to :0 and kept) and closes every connection
// at once: a request handler that is down.
func refuser(t *T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// unavailableHandler is a request handler that answers every call 503 unavailable, as rhd
// does when its database is away.
func unavailableHandler(t *T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"error":{"kind":"unavailable","message":"certify: the database is away"}}`)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}
