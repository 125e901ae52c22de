// Package client is what Pollux's client commands share: reaching rhd (STAGE_HOST with
// fail-over between its addresses, POLLUX_TOKEN), submitting a request and waiting for it
// by long poll, querying files, moving data to and from the disk servers' movers with
// adler32 checks, and the CASTOR-style command lines of stager_put, stager_get,
// stager_putdone, stager_prepareToGet, stager_rm, stager_qry and pollux cp.
package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/framework/flagenv"
	"github.com/pollux-storage/pollux/framework/uuid"
	"github.com/pollux-storage/pollux/model/wire"
)

// Client talks to rhd and to the movers.
type Client struct {
	cfg Config
	// PollWait is how long one long poll asks rhd to wait for a change.
	PollWait time.Duration
	// ServiceTimeout bounds how long a call goes unserved — every request handler
	// unreachable, answering 5xx or not answering — before it fails with kind unavailable.
	// The clock starts with the call, or for a long poll when its wait is cut short; the
	// wait itself does not count.
	ServiceTimeout time.Duration
	// RoundPause is the pause before every address is tried again.
	RoundPause time.Duration
	// CallTimeout bounds one try at one address, a long poll's wait aside. A try also gets
	// no more than its share of ServiceTimeout, so that every address is tried within it.
	CallTimeout time.Duration
	// Notices, when not nil, hears what a call waits for while it is not served: which
	// request handler, what it answered, how long until the call gives up; one line per
	// change, each starting with Name.
	Notices io.Writer
	// Name is the command, for the notices.
	Name string

	api  *http.Client
	data *http.Client

	mu    sync.Mutex
	addrs []string // shuffled base URLs; nil until resolved
	cur   int      // the address that answered last: calls start there
	// secrets are the transfer secrets of the requests this client submitted, by request
	// id (see api.TransferKeyHash): they never leave the process but to a mover.
	secrets map[string]string
}

// DefaultServiceTimeout is ServiceTimeout unless told otherwise: long enough to ride out a
// request handler's restart or the database's failover, short enough that a batch job
// learns of an outage in its first minute.
const DefaultServiceTimeout = 30 * time.Second

// New returns a client for cfg.
func New(cfg Config) *Client {
	dialer := &net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}
	apiTransport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         dialer.DialContext,
		TLSHandshakeTimeout: 5 * time.Second,
		TLSClientConfig:     cfg.TLS,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
	}
	dataDialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	dataTransport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         dataDialer.DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		TLSClientConfig:     cfg.TLS,
		// The mover checks the token before the body of an upload of expectFrom bytes or
		// more is sent: a refused upload costs no bytes.
		ExpectContinueTimeout: 2 * time.Second,
		// After the last byte the mover checks the data and syncs it to disk.
		ResponseHeaderTimeout: 5 * time.Minute,
		// Compression would hide the length and bytes the checksum is about.
		DisableCompression: true,
	}
	return &Client{cfg: cfg, PollWait: 30 * time.Second, ServiceTimeout: DefaultServiceTimeout, RoundPause: time.Second,
		CallTimeout: 45 * time.Second, api: &http.Client{Transport: apiTransport}, data: &http.Client{Transport: dataTransport}}
}

// Close releases idle connections.
func (c *Client) Close() {
	c.api.CloseIdleConnections()
	c.data.CloseIdleConnections()
}

// NewRequestID returns a time-ordered (version 7) UUID for a request: the request's rows and
// its subrequests' and transitions' index entries then land at the right edge of their
// indexes, whatever the history behind them (see uuid.NewV7). A command chooses it once
// and sends it with every try, so a submission retried through another rhd is stored once.
func NewRequestID() string { return uuid.NewV7() }

// addresses resolves STAGE_HOST once and shuffles it, so that clients spread over the
// request handlers.
func (c *Client) addresses(ctx context.Context) ([]string, int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.addrs == nil {
		var r Resolver = net.DefaultResolver
		if c.cfg.Resolver != nil {
			r = c.cfg.Resolver
		}
		addrs, err := c.cfg.resolve(ctx, r)
		if err != nil {
			return nil, 0, err
		}
		for i := len(addrs) - 1; i > 0; i-- {
			n, _ := rand.Int(rand.Reader, big.NewInt(int64(i+1)))
			j := int(n.Int64())
			addrs[i], addrs[j] = addrs[j], addrs[i]
		}
		c.addrs = addrs
	}
	return c.addrs, c.cur, nil
}

func (c *Client) answered(i int) {
	c.mu.Lock()
	c.cur = i
	c.mu.Unlock()
}

// apiCall is one call to rhd: path and query, and for a long poll the wait it asks for.
type apiCall struct {
	method, path string
	query        url.Values
	body         []byte
	wait         time.Duration
}

// A try gets half of ServiceTimeout shared among the addresses, so that each is tried
// about twice within it, and so that a user hears what the first one said early on; but
// at least minShare (a request handler needs that much to answer, 503 included) and at
// most maxShare (more would only delay the first notice). patience is the time after
// which a try without an answer is worth a notice.
const (
	minShare = 2 * time.Second
	maxShare = 10 * time.Second
	patience = 3 * time.Second
)

// call sends one API call and decodes a 2xx answer into out. While it is not served (a
// connection failure, a 5xx answer, no answer within a try's time) it tries the next
// address, and every address again after RoundPause, until ServiceTimeout has passed
// unserved; a long poll's retries ask for no wait, so that a request handler that answers
// ends the outage at once. Every call is safe to repeat: a submission carries its
// client-chosen id.
func (c *Client) call(ctx context.Context, ac apiCall, out any) (int, error) {
	addrs, start, err := c.addresses(ctx)
	if err != nil {
		return 0, err
	}
	bound := c.ServiceTimeout
	if bound <= 0 {
		bound = DefaultServiceTimeout
	}
	share := min(max(bound/time.Duration(2*len(addrs)), minShare), maxShare, c.CallTimeout)
	began := time.Now()
	// unserved is when the call stopped being served: the end of the wait it asked for,
	// or the failure that cut the wait short.
	unserved := began.Add(ac.wait)
	n := &notices{c: c, said: map[string]bool{}}
	last := make([]string, len(addrs)) // what each address did last
	final := make([]*Error, len(addrs))
	finals, failures := 0, 0
	var lastAnswer *Error
	// pause is the wait before the next round: RoundPause, or what a busy request handler
	// asked for (Retry-After), spread by up to half again so that the clients a burst
	// turned away do not all come back in the same instant.
	pause := c.RoundPause
	for round := 0; ; round++ {
		if round > 0 {
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(min(pause, time.Until(unserved.Add(bound)))):
			}
			pause = c.RoundPause
		}
		for k := range addrs {
			i := (start + k) % len(addrs)
			if final[i] != nil {
				continue
			}
			left := time.Until(unserved.Add(bound))
			if left <= minShare/10 {
				return 0, gaveUp(addrs, last, lastAnswer, bound, time.Since(began))
			}
			wait := ac.wait
			if failures > 0 {
				wait = 0
			}
			timeout := min(wait+share, left)
			status, b, retryAfter, err := c.once(ctx, addrs[i], ac, wait, timeout, unserved.Add(bound), n)
			// When the call stopped being served. A try that ended in an answer or a
			// timeout was not served for at most its share (rhd answers within it beyond
			// the wait, api.HeaderTimeout); a connection that broke may have broken a wait
			// that the request handler served until then.
			stopped := time.Now().Add(-(timeout - wait))
			switch {
			case ctx.Err() != nil:
				return 0, ctx.Err()
			case errors.Is(err, context.DeadlineExceeded):
				last[i] = "no answer in " + seconds(timeout)
			case err != nil:
				stopped = time.Now()
				last[i] = connError(err)
			case status >= 500 || status == http.StatusTooManyRequests:
				lastAnswer = fromBody(status, b, addrs[i])
				last[i] = fmt.Sprintf("answered %d: %s", status, lastAnswer.Message)
				if retryAfter > 0 {
					pause = max(pause, jitter(min(retryAfter, maxRetryAfter)))
				}
				if status == http.StatusInternalServerError {
					// A fault, not an outage: worth another address, not the same one again.
					final[i] = lastAnswer
					finals++
				}
			default:
				c.answered(i)
				n.served(addrs[i])
				if status >= 300 {
					return status, fromBody(status, b, addrs[i])
				}
				if out != nil {
					if err := decodeJSON(b, out); err != nil {
						return status, errorf(wire.ErrorKindInternal, "%s sent an answer this client cannot read (%v): is it a Pollux request handler of a compatible version?", addrs[i], err)
					}
				}
				return status, nil
			}
			failures++
			stopped = maxTime(stopped, began)
			if stopped.Before(unserved) {
				unserved = stopped
			}
			if finals == len(addrs) {
				// Every request handler answered with a fault: its own words say most.
				return 0, lastAnswer
			}
			n.failed(addrs[i], last[i], c.next(addrs, final, i, k, pause, time.Until(unserved.Add(bound))))
		}
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// next says what the call does after a failure at address i, the k-th of this round,
// with left until it gives up.
func (c *Client) next(addrs []string, final []*Error, i, k int, pause, left time.Duration) string {
	giving := "giving up in " + seconds(left)
	for j := k + 1; j < len(addrs); j++ {
		if a := (i + j - k) % len(addrs); final[a] == nil && left > minShare/10 {
			return "trying " + addrs[a] + ", " + giving
		}
	}
	switch {
	case left <= pause+minShare/10:
		return giving
	case len(addrs) == 1:
		return fmt.Sprintf("trying again in %s, %s", seconds(pause), giving)
	default:
		return fmt.Sprintf("trying every address again in %s, %s", seconds(pause), giving)
	}
}

// maxRetryAfter caps the wait a Retry-After may ask for: a request handler that asks for
// minutes is better left for the next address and the service timeout to judge.
const maxRetryAfter = 30 * time.Second

// jitter spreads d over [d, 1.5 d).
func jitter(d time.Duration) time.Duration {
	return d + time.Duration(mrand.Int64N(int64(d/2)+1))
}

// parseRetryAfter reads a Retry-After header: whole seconds, or an HTTP date; 0 when
// absent or unreadable.
func parseRetryAfter(h string) time.Duration {
	if h == "" {
		return 0
	}
	if n, err := strconv.Atoi(h); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// notices tells the user, through Client.Notices, what a call waits for: a line when an
// address does something it did not do before in this call, not one per try.
type notices struct {
	c *Client
	// mu serialises the notices of a slow try, which come from a timer's goroutine.
	mu   sync.Mutex
	said map[string]bool
	any  bool
}

func (n *notices) say(key, format string, args ...any) {
	if n.c.Notices == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.said[key] {
		return
	}
	n.said[key], n.any = true, true
	fmt.Fprintf(n.c.Notices, "%s: "+format+"\n", append([]any{n.c.Name}, args...)...)
}

func (n *notices) failed(addr, what, next string) {
	n.say(addr+" "+what, "%s: %s — %s", addr, what, next)
}

func (n *notices) slow(addr string, left time.Duration) {
	n.say(addr+" slow", "waiting for %s: no answer for %s, giving up in %s", addr, patience, seconds(left))
}

// served says that the outage is over, when the user was told of it.
func (n *notices) served(addr string) {
	if n.c.Notices == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.any {
		fmt.Fprintf(n.c.Notices, "%s: %s answered; going on\n", n.c.Name, addr)
	}
}

// seconds rounds a time left for a person to read.
func seconds(d time.Duration) string {
	if d < 10*time.Second {
		return max(d, 0).Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// gaveUp is the error of a call that went unserved for ServiceTimeout.
func gaveUp(addrs, last []string, lastAnswer *Error, bound, took time.Duration) error {
	var parts []string
	for i, a := range addrs {
		if last[i] != "" {
			parts = append(parts, a+": "+last[i])
		}
	}
	if len(parts) == 0 && lastAnswer != nil {
		return lastAnswer
	}
	return errorf(wire.ErrorKindUnavailable, "no request handler could serve the call in %s (%s): gave up after --service-timeout %s (%s); retry later; if it persists check %s or ask the operator whether rhd runs",
		took.Round(100*time.Millisecond), strings.Join(parts, "; "), bound, flagenv.Name(FlagServiceTimeout), EnvHost)
}

// once is one try of ac at base; deadline is when the call gives up, for the notice of a
// try without an answer.
func (c *Client) once(ctx context.Context, base string, ac apiCall, wait, timeout time.Duration, deadline time.Time, n *notices) (int, []byte, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	u := base + ac.path
	q := url.Values{}
	for k, v := range ac.query {
		q[k] = v
	}
	if wait > 0 {
		q.Set(api.ParamWait, wait.String())
	}
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var r io.Reader
	if ac.body != nil {
		r = bytes.NewReader(ac.body)
	}
	req, err := http.NewRequestWithContext(ctx, ac.method, u, r)
	if err != nil {
		return 0, nil, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	req.Header.Set("Accept", "application/json")
	// rhd answers within it beyond the wait, with why when its database is out of reach.
	if beyond := timeout - wait; beyond > 0 {
		req.Header.Set(api.HeaderTimeout, beyond.Round(time.Millisecond).String())
	}
	if ac.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if wait+patience < timeout {
		said := make(chan struct{})
		slow := time.AfterFunc(wait+patience, func() { defer close(said); n.slow(base, time.Until(deadline)) })
		defer func() {
			// A notice under way is written before the command writes anything else.
			if !slow.Stop() {
				<-said
			}
		}()
	}
	resp, err := c.api.Do(req)
	if err != nil {
		return 0, nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return 0, nil, 0, err
	}
	return resp.StatusCode, b, parseRetryAfter(resp.Header.Get("Retry-After")), nil
}

// connError shortens what net/http says about a failed connection to its cause.
func connError(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "no answer in time"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// decodeJSON decodes an answer of rhd or a mover strictly: exactly one JSON value, every
// field of which the client knows (daemons/rhd/api). A field it does not know means the two
// sides disagree on the contract, and acting on the part it understood could misread the
// rest (a new status field, a moved token); the caller reports the answer as unreadable.
func decodeJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

// Submit stores a request. A request the service already had with this id (an earlier try
// that got through) is not an error: Created is false.
// A request that moves data gets a transfer secret of this client's (the same one for a
// retry of the same id), whose hash goes with it; the views of the request this client
// reads carry the whole mover credential in Token.
func (c *Client) Submit(ctx context.Context, req api.SubmitRequest, wait time.Duration) (api.SubmitResponse, error) {
	if api.NeedsTransferKey(req.Type) && req.TransferKeyHash == "" {
		secret, err := c.transferSecret(req.ID)
		if err != nil {
			return api.SubmitResponse{}, errorf(wire.ErrorKindInternal, "%v", err)
		}
		req.TransferKeyHash = api.TransferKeyHash(secret)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return api.SubmitResponse{}, fmt.Errorf("encode request: %w", err)
	}
	var out api.SubmitResponse
	_, err = c.call(ctx, apiCall{method: http.MethodPost, path: api.PathRequests, body: body, wait: wait}, &out)
	if out.Request != nil {
		c.credentials(out.Request)
	}
	return out, err
}

// transferSecret is the secret of request id, made on first use.
func (c *Client) transferSecret(id string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.secrets[id]; ok {
		return s, nil
	}
	s, err := api.NewTransferSecret()
	if err != nil {
		return "", err
	}
	if c.secrets == nil {
		c.secrets = map[string]string{}
	}
	c.secrets[id] = s
	return s, nil
}

// credentials completes the mover tokens of a request this client submitted with its
// secret. A request submitted elsewhere keeps the bare token, which a mover refuses.
func (c *Client) credentials(r *api.Request) {
	c.mu.Lock()
	secret, ok := c.secrets[r.ID]
	c.mu.Unlock()
	if !ok {
		return
	}
	for i := range r.Subrequests {
		if t := r.Subrequests[i].Token; t != "" && !strings.Contains(t, ".") {
			r.Subrequests[i].Token = api.TransferCredential(t, secret)
		}
	}
}

// Request reads a request. With a non-zero since it waits up to wait for a change after
// since.
func (c *Client) Request(ctx context.Context, id string, since time.Time, wait time.Duration) (api.Request, error) {
	ac := apiCall{method: http.MethodGet, path: api.RequestPath(id)}
	if !since.IsZero() && wait > 0 {
		ac.query, ac.wait = url.Values{api.ParamSince: {since.Format(api.TimeFormat)}}, wait
	}
	var out api.Request
	_, err := c.call(ctx, ac, &out)
	c.credentials(&out)
	return out, err
}

// History reads the whole story of request id (api.HistoryPath): every transition of its
// subrequests and what each waits for now.
func (c *Client) History(ctx context.Context, id string) (api.History, error) {
	var out api.History
	_, err := c.call(ctx, apiCall{method: http.MethodGet, path: api.HistoryPath(id)}, &out)
	return out, err
}

// Wait long-polls a request until done holds for every subrequest, writing each new info
// of a subrequest still waiting ("queued, no disk server of its service class is available") to info, unless info
// is nil, and calling each, unless nil, once for every subrequest as soon as done holds for
// it: with many files, the first movers need not wait for the last to be ready.
// first, when not nil, is the request as already known (SubmitResponse.Request): the wait
// goes on from there rather than reading it again.
func (c *Client) Wait(ctx context.Context, id string, first *api.Request, done func(api.Subrequest) bool, info io.Writer, each func(api.Subrequest)) (api.Request, error) {
	var since time.Time
	said := map[int64]string{}
	over := map[int64]bool{}
	for {
		var req api.Request
		if first != nil {
			req, first = *first, nil
		} else {
			var err error
			if req, err = c.Request(ctx, id, since, c.PollWait); err != nil {
				return req, err
			}
		}
		all := true
		for _, s := range req.Subrequests {
			switch {
			case !done(s):
				// What it waits for; once done the caller reports it.
				if info != nil && s.Info != "" && said[s.ID] != s.Info {
					fmt.Fprintf(info, "%s: %s\n", s.Path, s.Info)
				}
				said[s.ID] = s.Info
				all = false
			case !over[s.ID]:
				over[s.ID] = true
				if each != nil {
					each(s)
				}
			}
		}
		if all {
			return req, nil
		}
		since = req.UpdatedAt
	}
}

// Query answers stager_qry for one file.
func (c *Client) Query(ctx context.Context, path string) (api.File, error) {
	var out api.File
	_, err := c.call(ctx, apiCall{method: http.MethodGet, path: api.PathFiles, query: url.Values{api.ParamPath: {path}}}, &out)
	return out, err
}

// Quotas returns the caller's usage and limits in each service class (stager_qry --quota).
func (c *Client) Quotas(ctx context.Context) (api.Quotas, error) {
	var out api.Quotas
	_, err := c.call(ctx, apiCall{method: http.MethodGet, path: api.PathQuotas}, &out)
	return out, err
}

// Statuses a wait may end on.
var (
	// Ready: a mover waits for the data (PUT, GET), or the subrequest is over.
	Ready = func(s api.Subrequest) bool {
		return s.Status == string(wire.SubrequestStatusReady) || Over(s)
	}
	// Over: the subrequest is FINISHED or FAILED, the final statuses of its state
	// machine: nothing changes it any more.
	Over = func(s api.Subrequest) bool { return wire.SubrequestStatus(s.Status).Final() }
)
