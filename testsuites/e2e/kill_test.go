package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"hash/adler32"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/cmd/client"
	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
	"github.com/pollux-storage/pollux/testsuites/e2e"
)

// TestKill9WhileHoldingWork kills rhd, stagerd and a disk server with SIGKILL while each
// holds work — a client's long poll, claimed subrequests inside their transaction, a
// transfer waiting for its client — under a load of puts released in batches, and
// restarts each. Every request stored reaches a final state, and every file a client was
// told is written reads back as it was sent. Only rhd, stagerd and diskserverd are killed,
// and the statuses the test reads are theirs (READY, FINISHED, FAILED, a request PENDING),
// so it does not depend on how the job manager and the scheduler share the request path.
func TestKill9WhileHoldingWork(t *testing.T) {
	t.Parallel()
	// Two rhd, so that the clients of the killed one fail over; one stagerd, so that what
	// it left is done by its successor; a short open timeout, so that a transfer whose
	// client gave up (its mover died under it) fails soon rather than in five minutes.
	in, ctx := start(t, e2e.Options{RHDs: 2, DiskServers: 2})
	db, err := pg.Open(ctx, pg.Config{DSN: in.DSN()})
	require.NoError(t, err)
	t.Cleanup(db.Close)
	// The open timeout is the database's policy, read at each claim.
	_, err = model.PolicySet(ctx, db.Pool(), "transfer_open_seconds", 10, "e2e")
	require.NoError(t, err)
	dir := t.TempDir()

	// The load: clients copy files in, a batch of concurrent ones released before each
	// kill and one after. Each client is a process of its own: one that waits (its upload
	// held up by a kill) does not hold back the next batch.
	const batches, perBatch = 4, 10
	type put struct {
		src, remote string
		data        []byte
		res         e2e.Result
	}
	puts := make([]put, batches*perBatch)
	for i := range puts {
		src, data := randomFile(t, dir, fmt.Sprintf("f%d", i), 256<<10+i*37<<10)
		puts[i] = put{src: src, remote: fmt.Sprintf("/pollux/kill/f%d", i), data: data}
	}
	// A put ends within a second here; one whose transfer dies waits at most for the
	// open timeout of its retries. Minutes mean a request that never ends.
	loadCtx, stopLoad := context.WithTimeout(ctx, 90*time.Second)
	var load sync.WaitGroup
	defer func() {
		if t.Failed() {
			stopLoad()
		}
		load.Wait()
	}()
	release := func(batch int) {
		t.Logf("%s batch %d released", stamp(), batch)
		for i := batch * perBatch; i < (batch+1)*perBatch; i++ {
			load.Add(1)
			go func() {
				defer load.Done()
				puts[i].res = in.Run(loadCtx, nil, "pollux", "cp", puts[i].src, puts[i].remote)
			}()
		}
	}

	// A transfer held open: stager_put without --file stops at READY, and the disk
	// server's watcher waits for a client that does not come (until transfer_open_seconds).
	r := ok(t, in.Run(ctx, nil, "stager_put", "--json", "-M", "/pollux/kill/held"))
	var held struct {
		Request api.Request `json:"request"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.Stdout), &held), r.Stdout)
	require.Equal(t, string(model.SubrequestStatusReady), held.Request.Subrequests[0].Status)

	// rhd1 while it holds a long poll: a client waiting on rhd1 alone for the held request,
	// which does not change.
	release(0)
	rhd1 := in.Procs()["rhd1"]
	poll := client.New(client.Config{Hosts: []string{rhd1.Addr()}, Token: in.Token, ServiceClass: "default"})
	poll.ServiceTimeout = time.Second
	polled := make(chan error, 1)
	go func() {
		_, err := poll.Request(ctx, held.Request.ID, held.Request.UpdatedAt, time.Minute)
		polled <- err
	}()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Positive(c, longPolls(c, rhd1.Admin()))
	}, time.Minute, 5*time.Millisecond, "rhd1 never held the long poll")
	t.Logf("%s rhd1 holds a long poll: kill -9", stamp())
	in.Kill("rhd1", syscall.SIGKILL)
	require.Error(t, <-polled, "the long poll ended with rhd1")
	poll.Close()
	require.NoError(t, in.Restart(ctx, "rhd1"))

	// stagerd1 while it holds claimed subrequests inside its claim: the put decision
	// creates the file's namespace entry in the claim's transaction, so while writes of
	// the file table wait behind this lock, the claim waits holding its subrequests.
	lock, err := db.Pool().Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = lock.Rollback(context.WithoutCancel(ctx)) }() // after an early failure
	_, err = lock.Exec(ctx, "lock table file in share row exclusive mode")
	require.NoError(t, err)
	release(1)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var n int
		require.NoError(c, db.Pool().QueryRow(ctx, `select count(*) from pg_stat_activity
			where datname = current_database() and application_name like 'stagerd %' and wait_event_type = 'Lock'`).Scan(&n))
		assert.Positive(c, n)
	}, time.Minute, 5*time.Millisecond, "stagerd1 never waited inside a claim")
	t.Logf("%s stagerd1 waits inside a claim: kill -9", stamp())
	in.Kill("stagerd1", syscall.SIGKILL)
	require.NoError(t, lock.Rollback(ctx))
	require.NoError(t, in.Restart(ctx, "stagerd1"))

	// The disk server of the held transfer, while it holds it, with the next batch in
	// flight, once every transfer has reached READY or ended (what was only placed on it
	// would be claimed by its successor anyway: this keeps the moment the test checks).
	disk := diskOf(t, in, held.Request.Subrequests[0].MoverURL)
	release(2)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var before, ready int
		require.NoError(c, db.Pool().QueryRow(ctx, `select count(*) filter (where status::text <> all ($1)),
			count(*) filter (where status = $2 and mover_url like $3) from subrequest`,
			[]string{string(model.SubrequestStatusReady), string(model.SubrequestStatusFinished), string(model.SubrequestStatusFailed)},
			model.SubrequestStatusReady, "http://"+disk.Addr()+"/%").Scan(&before, &ready))
		assert.Zero(c, before, "subrequests not yet READY")
		assert.Positive(c, ready, "transfers on %s", disk.Name)
	}, time.Minute, 5*time.Millisecond, "%s never held a transfer with no other on its way", disk.Name)
	t.Logf("%s %s holds a transfer: kill -9", stamp(), disk.Name)
	in.Kill(disk.Name, syscall.SIGKILL)
	require.NoError(t, in.Restart(ctx, disk.Name))

	release(3)
	load.Wait()
	t.Logf("%s every client ended", stamp())

	// Every request stored, answered or not, ends.
	ended := assert.EventuallyWithT(t, func(c *assert.CollectT) {
		var n int
		require.NoError(c, db.Pool().QueryRow(ctx, "select count(*) from request where status = $1", model.RequestStatusPending).Scan(&n))
		assert.Zero(c, n, "requests not in a final state")
	}, time.Minute, 100*time.Millisecond)
	if !ended {
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		t.Logf("subrequests of the requests not ended:\n%s", unended(c, db))
		t.FailNow()
	}

	// Every file a client was told is written is there, whole; the batch that came after
	// the restarts was served entirely.
	written := 0
	for i, p := range puts {
		if p.res.Code != 0 {
			require.Less(t, i, 3*perBatch, "a put after every restart failed: %s", p.res.Stderr)
			t.Logf("put %s failed under the kills (allowed): %s", p.remote, strings.TrimSpace(p.res.Stderr))
			continue
		}
		written++
		q := ok(t, in.Run(ctx, nil, "stager_qry", "-M", p.remote))
		require.Equal(t, fmt.Sprintf("%s STAGED %d %s", p.remote, len(p.data), client.Adler32(adler32.Checksum(p.data))), strings.TrimSpace(q.Stdout))
		back := filepath.Join(dir, fmt.Sprintf("back%d", i))
		ok(t, in.Run(ctx, nil, "pollux", "cp", p.remote, back))
		got, err := os.ReadFile(back)
		require.NoError(t, err)
		require.Equal(t, p.data, got, "%s reads back different", p.remote)
	}
	t.Logf("%d of %d puts written and read back", written, len(puts))
}

// stamp is the time as the daemons' logs write it, to read the test's steps beside them.
func stamp() string { return time.Now().UTC().Format("15:04:05.000") }

// unended describes the subrequests of requests not in a final state, for a failure's
// message.
func unended(ctx context.Context, db *pg.DB) string {
	rows, err := db.Pool().Query(ctx, `select s.id || ' ' || s.path || ' ' || s.status || coalesce(' on disk server ' || s.disk_server_id, '') || ' ' || s.info
		from subrequest s join request r on r.id = s.request_id where r.status = $1 order by s.id`, model.RequestStatusPending)
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return err.Error()
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// longPolls reads rhd's pollux_rhd_long_polls from its admin listener.
func longPolls(t require.TestingT, admin string) int {
	resp, err := http.Get("http://" + admin + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "pollux_rhd_long_polls "); ok {
			n, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return int(n)
		}
	}
	require.NoError(t, sc.Err())
	return 0
}

// diskOf is the disk server whose mover serves moverURL.
func diskOf(t *testing.T, in *e2e.Instance, moverURL string) *e2e.Proc {
	t.Helper()
	u, err := url.Parse(moverURL)
	require.NoError(t, err)
	for _, p := range in.Procs() {
		if strings.HasPrefix(p.Name, "disk") && p.Addr() == u.Host {
			return p
		}
	}
	t.Fatalf("no disk server serves %s", moverURL)
	return nil
}
