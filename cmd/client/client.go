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
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/framework/uuid"
	"github.com/pollux-storage/pollux/model/wire"
)

// Client talks to rhd and to the movers.
type Client struct {
	cfg Config
	// PollWait is how long one long poll asks rhd to wait for a change.
	PollWait time.Duration
	// Rounds is how many times every address is tried before giving up.
	Rounds int
	// RoundPause is the pause between rounds.
	RoundPause time.Duration
	// CallTimeout bounds one call to rhd other than a long poll (rhd gives up on its
	// database well within it).
	CallTimeout time.Duration

	api  *http.Client
	data *http.Client

	mu    sync.Mutex
	addrs []string // shuffled base URLs; nil until resolved
	cur   int      // the address that answered last: calls start there
}

// New returns a client for cfg.
func New(cfg Config) *Client {
	dialer := &net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}
	apiTransport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         dialer.DialContext,
		TLSHandshakeTimeout: 5 * time.Second,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
	}
	dataDialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	dataTransport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         dataDialer.DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		// The mover checks the token before the body is sent: a refused upload costs no
		// bytes.
		ExpectContinueTimeout: 2 * time.Second,
		// After the last byte the mover checks the data and syncs it to disk.
		ResponseHeaderTimeout: 5 * time.Minute,
		// Compression would hide the length and bytes the checksum is about.
		DisableCompression: true,
	}
	return &Client{cfg: cfg, PollWait: 30 * time.Second, Rounds: 2, RoundPause: time.Second, CallTimeout: 45 * time.Second,
		api: &http.Client{Transport: apiTransport}, data: &http.Client{Transport: dataTransport}}
}

// Close releases idle connections.
func (c *Client) Close() {
	c.api.CloseIdleConnections()
	c.data.CloseIdleConnections()
}

// NewRequestID returns a random (version 4) UUID for a request. A command chooses it once
// and sends it with every try, so a submission retried through another rhd is stored once.
func NewRequestID() string { return uuid.New() }

// addresses resolves STAGE_HOST once and shuffles it, so that clients spread over the
// request handlers.
func (c *Client) addresses(ctx context.Context) ([]string, int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.addrs == nil {
		addrs, err := c.cfg.resolve(ctx, net.DefaultResolver)
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

// call sends one API call, failing over to the next address on a connection failure or a
// 5xx answer, and decodes a 2xx answer into out. A call with a body is safe to repeat: a
// submission carries its client-chosen id.
func (c *Client) call(ctx context.Context, method, path string, body []byte, timeout time.Duration, out any) (int, error) {
	addrs, start, err := c.addresses(ctx)
	if err != nil {
		return 0, err
	}
	var last *Error
	var failures []string
	for round := 0; round < max(c.Rounds, 1); round++ {
		if round > 0 {
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(c.RoundPause):
			}
		}
		for k := range addrs {
			i := (start + k) % len(addrs)
			status, b, err := c.once(ctx, addrs[i]+path, method, body, timeout)
			switch {
			case ctx.Err() != nil:
				return 0, ctx.Err()
			case err != nil:
				failures = append(failures, fmt.Sprintf("%s: %v", addrs[i], connError(err)))
				continue
			case status >= 500:
				last = fromBody(status, b, addrs[i])
				failures = append(failures, fmt.Sprintf("%s: %d %s", addrs[i], status, last.Message))
				continue
			}
			c.answered(i)
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
	}
	if last != nil {
		// A request handler that answered said more about the failure than the others'
		// silence.
		return 0, last
	}
	return 0, errorf(wire.ErrorKindUnavailable, "no request handler could serve the call (%s): retry later; if it persists check %s or ask the operator whether rhd runs",
		strings.Join(dedupe(failures), "; "), EnvHost)
}

func (c *Client) once(ctx context.Context, u, method string, body []byte, timeout time.Duration) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.api.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, b, nil
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
func (c *Client) Submit(ctx context.Context, req api.SubmitRequest, wait time.Duration) (api.SubmitResponse, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return api.SubmitResponse{}, fmt.Errorf("encode request: %w", err)
	}
	path, timeout := api.PathRequests, c.CallTimeout
	if wait > 0 {
		path += "?" + url.Values{api.ParamWait: {wait.String()}}.Encode()
		timeout += wait
	}
	var out api.SubmitResponse
	_, err = c.call(ctx, http.MethodPost, path, body, timeout, &out)
	return out, err
}

// Request reads a request. With a non-zero since it waits up to wait for a change after
// since.
func (c *Client) Request(ctx context.Context, id string, since time.Time, wait time.Duration) (api.Request, error) {
	path := api.RequestPath(id)
	timeout := c.CallTimeout
	if !since.IsZero() && wait > 0 {
		path += "?" + url.Values{api.ParamSince: {since.Format(api.TimeFormat)}, api.ParamWait: {wait.String()}}.Encode()
		timeout += wait
	}
	var out api.Request
	_, err := c.call(ctx, http.MethodGet, path, nil, timeout, &out)
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
	_, err := c.call(ctx, http.MethodGet, api.PathFiles+"?"+url.Values{api.ParamPath: {path}}.Encode(), nil, c.CallTimeout, &out)
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
