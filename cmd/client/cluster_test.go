package client_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/adler32"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/cmd/client"
	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/daemons/rhd/rhdtest"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
	"github.com/pollux-storage/pollux/schema/schematest"
)

const token = "alice-token"

// cluster is a database with the logic, rhd in front of it, the decisions of stagerd,
// jobmanagerd and schedulerd driven through the same SQL functions they call, and one
// disk server whose mover speaks the wire contract of package api and reports to the
// logic as diskserverd does. Only the daemons' Go is left out; nothing is mocked.
type cluster struct {
	t     *testing.T
	ctx   context.Context
	db    *pg.DB
	rhd   *rhdtest.Instance
	mover *httptest.Server
	ds    atomic.Int64 // the disk server's id, 0 until it registers

	mu    sync.Mutex
	files map[string][]byte // disk_path → content
	// started are the transfers the mover published and no client has opened yet.
	started map[int64]startedTransfer
	// corrupt makes the mover send a wrong checksum with downloads.
	corrupt atomic.Bool
}

func newCluster(t *testing.T, withDiskServer bool) *cluster {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dsn := schematest.DSN(t)
	db, err := pg.Open(ctx, pg.Config{DSN: dsn})
	require.NoError(t, err)
	c := &cluster{t: t, ctx: ctx, db: db, files: map[string][]byte{}, started: map[int64]startedTransfer{}}
	c.rhd = rhdtest.Start(t, dsn, rhdtest.WriteTokens(t, map[string]string{token: "alice", "bob-token": "bob"}))
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/transfers/{id}", c.upload)
	mux.HandleFunc("GET /v1/transfers/{id}", c.download)
	c.mover = httptest.NewServer(mux)
	if withDiskServer {
		c.registerDiskServer()
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.drive() }()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		c.mover.Close()
		db.Close()
	})
	return c
}

func (c *cluster) registerDiskServer() {
	c.t.Helper()
	reg, err := model.DiskServerRegister(c.ctx, c.db.Pool(), "ds1", c.mover.URL, 0.1)
	require.NoError(c.t, err)
	_, err = model.FileSystemRegister(c.ctx, c.db.Pool(), reg, "/data/ds1", "default", 1<<40, 1<<39)
	require.NoError(c.t, err)
	c.ds.Store(reg)
}

// drive decides (placing at once) and starts movers, woken by the logic's notifications with a
// short poll as safety net (deferred subrequests come back by time, not by NOTIFY).
func (c *cluster) drive() {
	l := pg.NewListener(c.db, nil)
	go func() { _ = l.Run(c.ctx) }()
	wake := make(chan struct{}, 1)
	// What wakes the stager pools; not the requests' changes, which the driver itself
	// causes.
	var channels []string
	for _, f := range model.Families() {
		channels = append(channels, model.ChannelSubrequestNew(f))
	}
	for _, ch := range channels {
		sub := l.Subscribe(ch, 16)
		go func() {
			for {
				select {
				case <-c.ctx.Done():
					return
				case <-sub.C:
					select {
					case wake <- struct{}{}:
					default:
					}
				}
			}
		}()
	}
	for c.ctx.Err() == nil {
		c.step()
		select {
		case <-c.ctx.Done():
		case <-wake:
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (c *cluster) step() {
	ctx := c.ctx
	err := c.db.Tx(ctx, "stage", func(q pg.Querier) error {
		for _, f := range model.Families() {
			if _, err := model.SubrequestClaim(ctx, q, string(f), 100); err != nil {
				return err
			}
		}
		// As schedulerd: what waited for a disk server is placed once one appears.
		_, err := model.SubrequestClaimWaitsched(ctx, q, 100)
		return err
	})
	if err == nil {
		// The stager placed what it could; this one disk server claims it, registering each
		// transfer before the commit, as diskserverd does: the client may come at once.
		tokens := make([]string, 16)
		for i := range tokens {
			tokens[i] = randomToken()
		}
		err = c.db.Tx(ctx, "claim transfers", func(q pg.Querier) error {
			rows, err := model.TransferClaim(ctx, q, c.ds.Load(), c.mover.URL, tokens)
			c.mu.Lock()
			for _, r := range rows {
				c.started[r.SubrequestID] = startedTransfer{token: r.Token, loc: r}
			}
			c.mu.Unlock()
			return err
		})
	}
	if err != nil && ctx.Err() == nil {
		c.t.Errorf("drive the logic: %v", err)
	}
}

func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func moverError(w http.ResponseWriter, status int, kind model.ErrorKind, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: api.Error{Kind: string(kind), Message: msg}})
}

type startedTransfer struct {
	token string
	loc   model.TransferClaimRow
}

// open spends the transfer's one-time token, as diskserverd's mover does before moving a
// byte.
func (c *cluster) open(w http.ResponseWriter, r *http.Request) (int64, model.TransferClaimRow, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		moverError(w, 404, model.ErrorKindNotFound, "no such transfer")
		return 0, model.TransferClaimRow{}, false
	}
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	c.mu.Lock()
	st, ok := c.started[id]
	var bad error
	if ok {
		key := ""
		if st.loc.TransferKeyHash != nil {
			key = *st.loc.TransferKeyHash
		}
		if bad = api.CheckTransferCredential(tok, st.token, key); bad == nil {
			delete(c.started, id)
		}
	}
	c.mu.Unlock()
	if !ok || bad != nil {
		moverError(w, http.StatusForbidden, model.ErrorKindPermission, fmt.Sprintf("the transfer token for subrequest %d does not check: %v", id, bad))
		return 0, model.TransferClaimRow{}, false
	}
	return id, st.loc, true
}

func (c *cluster) upload(w http.ResponseWriter, r *http.Request) {
	id, t, ok := c.open(w, r)
	if !ok {
		return
	}
	data, err := io.ReadAll(r.Body)
	sum := client.Adler32(adler32.Checksum(data))
	if err != nil || int64(len(data)) != r.ContentLength || r.Header.Get(api.HeaderAdler32) != sum {
		_ = model.TransferFail(r.Context(), c.db.Pool(), id, t.Token, model.SQLStateBadData, "the upload was truncated or corrupt")
		moverError(w, 400, model.ErrorKindInvalid, "the upload was truncated or corrupt")
		return
	}
	c.mu.Lock()
	c.files[t.DiskPath] = data
	c.mu.Unlock()
	if err := model.TransferPutEnded(r.Context(), c.db.Pool(), id, t.Token, int64(len(data)), sum, new(sum)); err != nil {
		moverError(w, 409, model.ErrorKindConflict, pg.ServerMessage(err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(api.UploadResponse{SizeBytes: int64(len(data)), ChecksumAdler32: sum})
}

func (c *cluster) download(w http.ResponseWriter, r *http.Request) {
	id, t, ok := c.open(w, r)
	if !ok {
		return
	}
	c.mu.Lock()
	data := c.files[t.DiskPath]
	c.mu.Unlock()
	sum := client.Adler32(adler32.Checksum(data))
	if c.corrupt.Load() {
		sum = "00000001"
	}
	// As diskserverd's mover: the catalogue's size and sum in the header.
	w.Header().Set(api.HeaderAdler32, sum)
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	_, _ = w.Write(data)
	_ = model.TransferGetEnded(r.Context(), c.db.Pool(), id, t.Token, int64(len(data)))
}

func (c *cluster) count(sql string) int {
	c.t.Helper()
	return c.countFor(c.t, sql)
}

// countFor is count for t, which may be an EventuallyWithT's collector.
func (c *cluster) countFor(t require.TestingT, sql string) int {
	var n int
	require.NoError(t, c.db.Pool().QueryRow(c.ctx, sql).Scan(&n))
	return n
}

// result is what a command did.
type result struct {
	code           int
	stdout, stderr string
}

// run runs a command in-process with the cluster's rhd in STAGE_HOST, unless env says
// otherwise ("" removes a variable).
func (c *cluster) run(cmd func(context.Context, client.Env) int, env map[string]string, args ...string) result {
	c.t.Helper()
	return c.runWith(cmd, env, false, args...)
}

// runOnTerminal runs a command as if its stderr were a terminal.
func (c *cluster) runOnTerminal(cmd func(context.Context, client.Env) int, args ...string) result {
	c.t.Helper()
	return c.runWith(cmd, nil, true, args...)
}

func (c *cluster) runWith(cmd func(context.Context, client.Env) int, env map[string]string, terminal bool, args ...string) result {
	c.t.Helper()
	vars := map[string]string{client.EnvHost: c.rhd.Addr, client.EnvToken: token}
	for k, v := range env {
		vars[k] = v
	}
	var stdout, stderr strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := cmd(ctx, client.Env{Args: args, Getenv: func(k string) string { return vars[k] }, Stdout: &stdout, Stderr: &stderr, Terminal: terminal})
	return result{code, stdout.String(), stderr.String()}
}

// deadAddress is an address nothing listens on.
func deadAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}
