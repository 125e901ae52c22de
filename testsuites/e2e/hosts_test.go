package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/cmd/client"
	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/pgcluster"
	"github.com/pollux-storage/pollux/framework/pgtest"
	"github.com/pollux-storage/pollux/model"
	"github.com/pollux-storage/pollux/schema/schematest"
	"github.com/pollux-storage/pollux/testsuites/e2e"
	"github.com/pollux-storage/pollux/testsuites/netns"
)

// Disk servers on hosts of their own (network namespaces, testsuites/netns) that die
// whole, are cut off and come back, or are stopped cleanly, under the other daemons and
// the clients, which run in the test's own network. PostgreSQL listens on the network's
// bridge address and every daemon reaches it over TCP: a Unix socket is a file, and a
// cut-off host would still reach it.
//
// The liveness policy is the default one (6 s), so each test measures the detection an
// operator gets out of the box, and prints it.

// hostsFixture is what the host tests share: one network and one PostgreSQL on it, a
// database per test.
type hostsFixture struct {
	net   *netns.Network
	pg    *pgcluster.Cluster
	dir   string
	admin string
}

var (
	hostsOnce sync.Once
	hosts     *hostsFixture
	hostsErr  error
	hostRuns  atomic.Int64
)

func sharedHosts(t *testing.T) *hostsFixture {
	t.Helper()
	if testing.Short() {
		t.Skip("the host suite starts whole instances as processes on network namespaces; -short leaves it out")
	}
	if err := netns.Check(netns.Options{}); err != nil {
		t.Fatal(err)
	}
	hostsOnce.Do(func() {
		f := &hostsFixture{}
		if f.net, hostsErr = netns.NewNetwork(netns.Options{}); hostsErr != nil {
			return
		}
		hosts = f
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		var root string
		if root, hostsErr = pgcluster.RepoRoot(); hostsErr != nil {
			return
		}
		// One cluster per test process, under the checkout: a run that was killed leaves
		// its cluster running, and the next run stops it.
		base := filepath.Join(root, "var", "hosts-pg")
		if hostsErr = stopStaleClusters(ctx, base); hostsErr != nil {
			return
		}
		f.dir = filepath.Join(base, strconv.Itoa(os.Getpid()))
		f.pg, hostsErr = pgcluster.EnsureWith(ctx, filepath.Join(f.dir, "pg"), pgcluster.Options{
			Listen: f.net.Address().String(),
			Trust:  []string{f.net.Prefix().String()},
			Settings: map[string]string{
				"shared_buffers": "128MB", "max_connections": "300",
				// A cut-off host's sessions end within seconds instead of hours: what
				// they locked is released, and the host reconnects when it comes back.
				"tcp_keepalives_idle": "5", "tcp_keepalives_interval": "1", "tcp_keepalives_count": "3",
			},
		}, io.Discard)
		if hostsErr != nil {
			return
		}
		f.admin, hostsErr = f.pg.TCPDSN("postgres")
	})
	if hostsErr != nil {
		t.Fatalf("host suite: %v", hostsErr)
	}
	return hosts
}

// stopStaleClusters stops and removes the clusters under base whose test process is gone.
func stopStaleClusters(ctx context.Context, base string) error {
	entries, err := os.ReadDir(base)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || syscall.Kill(pid, 0) == nil {
			continue // not ours, or its process runs
		}
		dir := filepath.Join(base, e.Name())
		if cl, err := pgcluster.Open(filepath.Join(dir, "pg")); err == nil {
			if err := cl.Stop(ctx); err != nil {
				return fmt.Errorf("stop the cluster a dead run left in %s: %w", dir, err)
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	return nil
}

// closeHosts stops what sharedHosts started (TestMain calls it).
func closeHosts() {
	if hosts == nil {
		return
	}
	if hosts.pg != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := hosts.pg.Stop(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "host suite: stop PostgreSQL:", err)
		}
	}
	if err := hosts.net.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "host suite: close the network:", err)
	}
	if hosts.dir != "" {
		_ = os.RemoveAll(hosts.dir)
	}
}

// hostsCase is one test's instance: its disk servers disk1..diskN on hosts of their own.
type hostsCase struct {
	t     *testing.T
	ctx   context.Context
	in    *e2e.Instance
	db    *pg.DB
	hosts map[string]*netns.Host
	dir   string
}

func startOnHosts(t *testing.T, prefix string, disks int) *hostsCase {
	t.Helper()
	f := sharedHosts(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	c := &hostsCase{t: t, ctx: ctx, hosts: map[string]*netns.Host{}, dir: t.TempDir()}
	o := e2e.Options{DiskServers: disks, Hosts: map[string]e2e.Host{}}
	// Host names are the network's, which outlives a test (go test -count=2 runs it again).
	run := hostRuns.Add(1)
	for i := range disks {
		name := fmt.Sprintf("disk%d", i+1)
		h, err := f.net.AddHost(fmt.Sprintf("%s%d-%s", prefix, run, name))
		require.NoError(t, err)
		c.hosts[name], o.Hosts[name] = h, h
	}
	o.Bin, o.DSN, o.Dir = bin, pgtest.NewDatabaseOn(t, f.admin, schematest.Template), t.TempDir()
	in, err := e2e.Start(ctx, o)
	require.NoError(t, err)
	c.in = in
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(in.Logs(40))
		}
		in.Stop()
	})
	c.db, err = pg.Open(ctx, pg.Config{DSN: in.DSN()})
	require.NoError(t, err)
	t.Cleanup(c.db.Close)
	return c
}

// pin makes every disk server but name DRAINING (no new writes) until unpin, so that what
// is written meanwhile lands on name.
func (c *hostsCase) pin(name string) (unpin func()) {
	c.t.Helper()
	_, err := c.db.Pool().Exec(c.ctx, "update disk_server set status = case when name = $1 then 'PRODUCTION' else 'DRAINING' end::disk_server_status", name)
	require.NoError(c.t, err)
	return func() {
		c.t.Helper()
		// An operator's change by hand; capacity_changed wakes what waited meanwhile.
		_, err := c.db.Pool().Exec(c.ctx, "update disk_server set status = 'PRODUCTION'; select capacity_changed()")
		require.NoError(c.t, err)
	}
}

// write copies a new random file to remote on disk server name and returns its bytes.
func (c *hostsCase) write(remote, name string, size int) []byte {
	c.t.Helper()
	unpin := c.pin(name)
	defer unpin()
	src, data := randomFile(c.t, c.dir, strings.ReplaceAll(strings.TrimPrefix(remote, "/"), "/", "_"), size)
	ok(c.t, c.in.Run(c.ctx, nil, "pollux", "cp", src, remote))
	require.Equal(c.t, name, c.serverOf(remote))
	return data
}

// readBack copies remote out and checks it holds data.
func (c *hostsCase) readBack(remote string, data []byte) {
	c.t.Helper()
	local := filepath.Join(c.dir, fmt.Sprintf("back-%d", time.Now().UnixNano()))
	ok(c.t, c.in.Run(c.ctx, nil, "pollux", "cp", remote, local))
	got, err := os.ReadFile(local)
	require.NoError(c.t, err)
	require.Equal(c.t, data, got, "%s reads back different", remote)
}

// serverOf is the disk server holding remote's newest copy, closed or not.
func (c *hostsCase) serverOf(remote string) string {
	c.t.Helper()
	var name string
	require.NoError(c.t, c.db.Pool().QueryRow(c.ctx, `select ds.name from file f
		join disk_copy dc on dc.file_id = f.id and dc.status in ('STAGED', 'STAGEOUT')
		join file_system fs on fs.id = dc.file_system_id join disk_server ds on ds.id = fs.disk_server_id
		where f.path = $1 order by dc.id desc limit 1`, remote).Scan(&name))
	return name
}

// held is a transfer left READY on disk server name: stager_put without a file stops once
// the mover waits for the data.
func (c *hostsCase) held(remote, name string) api.Subrequest {
	c.t.Helper()
	unpin := c.pin(name)
	defer unpin()
	r := ok(c.t, c.in.Run(c.ctx, nil, "stager_put", "--json", "-M", remote))
	var out struct {
		Request api.Request `json:"request"`
	}
	require.NoError(c.t, json.Unmarshal([]byte(r.Stdout), &out), r.Stdout)
	s := out.Request.Subrequests[0]
	require.Equal(c.t, string(model.SubrequestStatusReady), s.Status)
	require.Equal(c.t, "http://"+c.in.Procs()[name].Addr(), strings.SplitN(s.MoverURL, "/v1/", 2)[0])
	return s
}

func oneSubrequest(rows pgx.Rows) (model.Subrequest, error) {
	subs, err := model.CollectSubrequests(rows)
	if err == nil && len(subs) != 1 {
		err = fmt.Errorf("%d subrequests, want 1", len(subs))
	}
	if err != nil {
		return model.Subrequest{}, err
	}
	return subs[0], nil
}

// rawPut starts an upload to a mover and sends the first part of its body: the rest is
// the caller's to send, or not.
func rawPut(t *testing.T, target, token string, declared int64, body []byte) net.Conn {
	t.Helper()
	u, err := url.Parse(target)
	require.NoError(t, err)
	conn, err := net.Dial("tcp", u.Host)
	require.NoError(t, err)
	_, err = fmt.Fprintf(conn, "PUT %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", u.Path, u.Host, token, declared)
	require.NoError(t, err)
	_, err = conn.Write(body)
	require.NoError(t, err)
	return conn
}

func (c *hostsCase) subrequest(id int64) model.Subrequest {
	c.t.Helper()
	var s model.Subrequest
	rows, err := c.db.Pool().Query(c.ctx, "select * from subrequest where id = $1", id)
	require.NoError(c.t, err)
	s, err = oneSubrequest(rows)
	require.NoError(c.t, err)
	return s
}

// waitSubrequest waits until the subrequest of path (the newest) satisfies cond.
func (c *hostsCase) waitSubrequest(path string, what string, cond func(s model.Subrequest) bool) model.Subrequest {
	c.t.Helper()
	var s model.Subrequest
	require.EventuallyWithT(c.t, func(ct *assert.CollectT) {
		rows, err := c.db.Pool().Query(c.ctx, "select * from subrequest where path = $1 order by id desc limit 1", path)
		require.NoError(ct, err)
		s, err = oneSubrequest(rows)
		require.NoError(ct, err)
		assert.True(ct, cond(s), "%s: %s on %v (%s)", path, s.Status, s.DiskServerID, s.Info)
	}, time.Minute, 20*time.Millisecond, "%s never %s", path, what)
	return s
}

// event waits for the first event of kind about disk server name at or after since.
func (c *hostsCase) event(kind, name string, since time.Time, within time.Duration) time.Time {
	c.t.Helper()
	var at time.Time
	require.EventuallyWithT(c.t, func(ct *assert.CollectT) {
		err := c.db.Pool().QueryRow(c.ctx, `select e.at from system_event e join disk_server d on d.id = (e.detail->>'disk_server_id')::bigint
			where e.kind = $1 and d.name = $2 and e.at >= $3 order by e.id limit 1`, kind, name, since).Scan(&at)
		assert.NoError(ct, err)
	}, within, 20*time.Millisecond, "no %s event for %s within %s", kind, name, within)
	return at
}

func (c *hostsCase) availability(name string) model.DiskServerAvailability {
	c.t.Helper()
	var a model.DiskServerAvailability
	require.NoError(c.t, c.db.Pool().QueryRow(c.ctx, "select availability from disk_server where name = $1", name).Scan(&a))
	return a
}

// admin runs pollux-admin against the instance's database.
func (c *hostsCase) admin(args ...string) string {
	c.t.Helper()
	return ok(c.t, c.in.Run(c.ctx, []string{"POLLUX_DATABASE_URL=" + c.in.DSN()}, "pollux-admin", args...)).Stdout
}

// detectionTarget is the bound the default policy promises: 6 s of silence, and a sweep
// every 2 s; the tests print each detection against it. They fail only past
// detectionLimit, which no loaded machine reaches unless detection is broken: a timed
// target belongs to the figures, not to a test's verdict.
const (
	detectionTarget = 10 * time.Second
	detectionLimit  = 3 * detectionTarget
)

// TestDiskServerHostKilled kills disk2's host whole (every process, kill -9) while it holds
// a transfer and just after a write and a read were placed on it: it is found silent within
// the bound, the write is placed elsewhere and succeeds without a retry, the transfer it
// held fails with the reason, files on the other servers read back, the read of its only
// file waits saying so (and stager_qry says it), and once disk2 is started again on its
// host that read is served.
func TestDiskServerHostKilled(t *testing.T) {
	t.Parallel()
	c := startOnHosts(t, "kill", 3)
	a := c.write("/pollux/hosts/a", "disk1", 200<<10)
	b := c.write("/pollux/hosts/b", "disk2", 300<<10)
	cc := c.write("/pollux/hosts/c", "disk3", 100<<10)
	held := c.held("/pollux/hosts/held", "disk2")

	killed := time.Now()
	require.NoError(t, c.hosts["disk2"].Kill())
	<-c.in.Procs()["disk2"].Exited()
	// Until it is found silent, disk2 still counts as live: a write and a read land on it.
	unpin := c.pin("disk2")
	src, late := randomFile(t, c.dir, "late", 150<<10)
	put := c.in.Go(c.ctx, nil, "pollux", "cp", src, "/pollux/hosts/late")
	c.waitSubrequest("/pollux/hosts/late", "placed on disk2", func(s model.Subrequest) bool {
		return s.Status == model.SubrequestStatusScheduled
	})
	get := c.in.Go(c.ctx, nil, "pollux", "cp", "/pollux/hosts/b", filepath.Join(c.dir, "b.back"))
	c.waitSubrequest("/pollux/hosts/b", "placed on disk2", func(s model.Subrequest) bool {
		return s.Type == model.RequestTypeGet && s.Status == model.SubrequestStatusScheduled
	})
	unpin()

	detected := c.event("disk_server_silent", "disk2", killed.Add(-time.Second), time.Minute)
	took := detected.Sub(killed)
	t.Logf("disk2's host killed: found silent after %s (target %s)", took.Round(10*time.Millisecond), detectionTarget)
	require.Less(t, took, detectionLimit)

	// What it was moving failed with the reason; what was only placed there went elsewhere.
	h := c.subrequest(held.ID)
	require.Equal(t, model.SubrequestStatusFailed, h.Status)
	require.Contains(t, *h.ErrorMessage, "disk server disk2 stopped answering during the transfer")
	ok(t, put.Wait())
	require.NotEqual(t, "disk2", c.serverOf("/pollux/hosts/late"))
	require.Zero(t, c.waitSubrequest("/pollux/hosts/late", "finished", func(s model.Subrequest) bool {
		return s.Status == model.SubrequestStatusFinished
	}).Retries, "placed again without using up a retry")
	c.readBack("/pollux/hosts/late", late)
	// Files with a copy elsewhere read on.
	c.readBack("/pollux/hosts/a", a)
	c.readBack("/pollux/hosts/c", cc)
	// The read of disk2's file waits and says why, and so does stager_qry.
	require.NoError(t, get.WaitStderr(c.ctx, "/pollux/hosts/b: queued, its only copy is on disk2, unavailable since "))
	q := ok(t, c.in.Run(c.ctx, nil, "stager_qry", "-M", "/pollux/hosts/b")).Stdout
	require.Regexp(t, `^/pollux/hosts/b STAGED 307200 [0-9a-f]{8} \(only copy is on disk2, unavailable since 20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC \(it stopped answering\)\)\n$`, q)
	t.Logf("stager_qry while disk2 is down: %s", strings.TrimSpace(q))
	require.Regexp(t, `(?m)^disk2\s+PRODUCTION\s+SILENT\s`, c.admin("diskservers"))
	require.Contains(t, c.admin("events"), "disk server disk2 stopped answering")

	// disk2's host boots and its disk server starts again: the waiting read is served.
	restarted := time.Now()
	require.NoError(t, c.in.Restart(c.ctx, "disk2"))
	ok(t, get.Wait())
	t.Logf("disk2 started again: the waiting read of its file was served %s later", time.Since(restarted).Round(10*time.Millisecond))
	got, err := os.ReadFile(filepath.Join(c.dir, "b.back"))
	require.NoError(t, err)
	require.Equal(t, b, got)
	require.Equal(t, model.DiskServerAvailabilityAvailable, c.availability("disk2"))
}

// TestDiskServerHostCutOff cuts disk2's link while its processes run on: it is found
// silent within the bound, its transfer fails, reads of its only file wait saying so,
// other files read and new writes go elsewhere; when the link comes back it is heard again
// within seconds, serves the waiting read, and the late end of the failed transfer is
// refused (the catalogue never takes bytes it gave up on).
func TestDiskServerHostCutOff(t *testing.T) {
	t.Parallel()
	c := startOnHosts(t, "cut", 2)
	a := c.write("/pollux/hosts/a", "disk1", 200<<10)
	b := c.write("/pollux/hosts/b", "disk2", 300<<10)
	held := c.held("/pollux/hosts/held", "disk2")

	cut := time.Now()
	require.NoError(t, c.hosts["disk2"].Cut())
	detected := c.event("disk_server_silent", "disk2", cut.Add(-time.Second), time.Minute)
	took := detected.Sub(cut)
	t.Logf("disk2's host cut off: found silent after %s (target %s)", took.Round(10*time.Millisecond), detectionTarget)
	require.Less(t, took, detectionLimit)
	require.Equal(t, -1, c.in.Procs()["disk2"].ExitCode(), "disk2's process runs on behind the cut")
	h := c.subrequest(held.ID)
	require.Equal(t, model.SubrequestStatusFailed, h.Status)
	require.Contains(t, *h.ErrorMessage, "disk server disk2 stopped answering during the transfer")

	get := c.in.Go(c.ctx, nil, "pollux", "cp", "/pollux/hosts/b", filepath.Join(c.dir, "b.back"))
	require.NoError(t, get.WaitStderr(c.ctx, "/pollux/hosts/b: queued, its only copy is on disk2, unavailable since "))
	require.Contains(t, ok(t, c.in.Run(c.ctx, nil, "stager_qry", "-M", "/pollux/hosts/b")).Stdout, "(only copy is on disk2, unavailable since ")
	c.readBack("/pollux/hosts/a", a)
	src, d := randomFile(t, c.dir, "during", 50<<10)
	ok(t, c.in.Run(c.ctx, nil, "pollux", "cp", src, "/pollux/hosts/during"))
	require.Equal(t, "disk1", c.serverOf("/pollux/hosts/during"))

	restored := time.Now()
	require.NoError(t, c.hosts["disk2"].Restore())
	back := c.event("disk_server_back", "disk2", restored.Add(-time.Second), time.Minute)
	t.Logf("disk2's link restored: heard again after %s", back.Sub(restored).Round(10*time.Millisecond))
	ok(t, get.Wait())
	got, err := os.ReadFile(filepath.Join(c.dir, "b.back"))
	require.NoError(t, err)
	require.Equal(t, b, got)
	c.readBack("/pollux/hosts/during", d)

	// disk2's mover still holds the transfer failed meanwhile: its client's upload is
	// refused at the end, and nothing of it becomes a file.
	local, _ := randomFile(t, c.dir, "stale", 10<<10)
	cl := client.New(client.Config{Hosts: []string{c.in.StageHost()}, Token: c.in.Token, ServiceClass: "default"})
	defer cl.Close()
	_, err = cl.Upload(c.ctx, held.MoverURL, held.Token, local, nil)
	require.Error(t, err, "the end of a transfer given up on is refused")
	r := c.in.Run(c.ctx, nil, "stager_qry", "-M", "/pollux/hosts/held")
	require.Equal(t, 1, r.Code, "no file: %s%s", r.Stdout, r.Stderr)
	require.Contains(t, r.Stderr, "no such file")
}

// TestDiskServerStoppedLeavesPlacementAtOnce stops disk2 with SIGTERM while a client is
// sending it data: it is out of placement at once, although it holds fewer transfers than
// the others and would otherwise be chosen, so that writes during its drain go elsewhere
// and none stalls; the upload in flight finishes, and the daemon exits cleanly.
func TestDiskServerStoppedLeavesPlacementAtOnce(t *testing.T) {
	t.Parallel()
	c := startOnHosts(t, "term", 3)
	// disk1 and disk3 hold two waiting transfers each, disk2 one moving data: the emptiest
	// server is disk2.
	for i, name := range []string{"disk1", "disk1", "disk3", "disk3"} {
		c.held(fmt.Sprintf("/pollux/hosts/busy%d", i), name)
	}
	moving := c.held("/pollux/hosts/moving", "disk2")
	data := make([]byte, 64<<10)
	conn := rawPut(t, moving.MoverURL, moving.Token, int64(len(data)), data[:1000])
	defer conn.Close()
	c.waitSubrequest("/pollux/hosts/moving", "connected", func(s model.Subrequest) bool { return s.Status == model.SubrequestStatusReady })

	stopped := time.Now()
	require.NoError(t, c.in.Signal("disk2", syscall.SIGTERM))
	c.event("disk_server_stopped", "disk2", stopped.Add(-time.Second), 10*time.Second)
	require.Equal(t, model.DiskServerAvailabilityStopped, c.availability("disk2"))
	t.Logf("disk2 got SIGTERM: out of placement after %s", time.Since(stopped).Round(time.Millisecond))
	require.Regexp(t, `(?m)^disk2\s+PRODUCTION\s+STOPPED\s`, c.admin("diskservers"))

	for i := range 3 {
		src, _ := randomFile(t, c.dir, fmt.Sprintf("during%d", i), 20<<10)
		r := ok(t, c.in.Run(c.ctx, nil, "pollux", "cp", src, fmt.Sprintf("/pollux/hosts/during%d", i)))
		require.Less(t, r.Took, 5*time.Second, "no write stalls on the stopping server")
		require.NotEqual(t, "disk2", c.serverOf(fmt.Sprintf("/pollux/hosts/during%d", i)))
	}
	select {
	case <-c.in.Procs()["disk2"].Exited():
		t.Fatal("disk2 exited while a client was sending it data")
	default:
	}

	_, err := conn.Write(data[1000:])
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode, "the upload in flight finishes during the drain")
	select {
	case <-c.in.Procs()["disk2"].Exited():
	case <-c.ctx.Done():
		t.Fatal("disk2 did not exit")
	}
	require.Equal(t, 0, c.in.Procs()["disk2"].ExitCode())
	require.Equal(t, "disk2", c.serverOf("/pollux/hosts/moving"))
	require.Equal(t, model.DiskServerAvailabilityStopped, c.availability("disk2"))

	require.NoError(t, c.in.Restart(c.ctx, "disk2"))
	require.Equal(t, model.DiskServerAvailabilityAvailable, c.availability("disk2"))
}

// TestDiskServerHostsUnderLoad is the long host suite (make test/hosts): clients copy files
// in and out without pause while, round after round, one of three disk servers' hosts is
// killed (then started again) or cut off (then restored). It prints each round's detection
// and return times and what the clients saw, and checks that every put a client was told
// succeeded reads back as written, that every read that succeeded read the right bytes, that
// failures say why, and that no request is left unfinished.
func TestDiskServerHostsUnderLoad(t *testing.T) {
	rounds, err := strconv.Atoi(os.Getenv("HOSTS_ROUNDS"))
	if err != nil || rounds < 1 {
		t.Skip("the long host suite runs with HOSTS_ROUNDS=N (make test/hosts)")
	}
	c := startOnHosts(t, "load", 3)

	type written struct {
		remote string
		data   []byte
	}
	var (
		mu       sync.Mutex
		acked    []written
		finished int // puts
		putFail  = map[string]int{}
		getFail  = map[string]int{}
		gets     int
		news     = make(chan struct{}, 1)
	)
	reason := func(r e2e.Result) string {
		lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
		l := lines[len(lines)-1]
		// The reason without the file and request: "disk server disk2 stopped answering ..."
		for _, key := range []string{"stopped answering", "no longer wanted", "broke off", "connection broken", "connection reset", "timeout", "refused"} {
			if strings.Contains(l, key) {
				return fmt.Sprintf("exit %d: …%s…", r.Code, key)
			}
		}
		return fmt.Sprintf("exit %d: %s", r.Code, l)
	}
	// The load stops between commands, not by killing them: a client killed mid-request
	// would leave its transfer waiting for it until the open timeout.
	var stopping atomic.Bool
	loadCtx := c.ctx
	var load sync.WaitGroup
	// Four writers and two readers: a read of a file whose only copy is on the server that
	// is out waits until it is back, while writes go on to the others.
	const writers, readers = 4, 2
	for w := range writers + readers {
		load.Add(1)
		go func() {
			defer load.Done()
			for i := 0; !stopping.Load() && loadCtx.Err() == nil; i++ {
				mu.Lock()
				var pick *written
				if w >= writers && len(acked) > 0 {
					p := acked[(i*7+w)%len(acked)]
					pick = &p
				}
				mu.Unlock()
				if w >= writers && pick == nil {
					// Nothing to read yet: wait for a write.
					select {
					case <-news:
					case <-loadCtx.Done():
					}
					continue
				}
				if pick == nil {
					remote := fmt.Sprintf("/pollux/load/w%d-%d", w, i)
					// Not randomFile: require may not stop the test from this goroutine.
					src, data := filepath.Join(c.dir, fmt.Sprintf("w%d-%d", w, i)), make([]byte, 64<<10+i*1000)
					_, _ = rand.Read(data)
					werr := os.WriteFile(src, data, 0o644)
					r := e2e.Result{Code: -1, Stderr: fmt.Sprint(werr)}
					if werr == nil {
						r = c.in.Run(loadCtx, nil, "pollux", "cp", src, remote)
					}
					mu.Lock()
					switch {
					case loadCtx.Err() != nil:
					case r.Code == 0:
						acked = append(acked, written{remote, data})
					default:
						putFail[reason(r)]++
					}
					finished++
				} else {
					local := filepath.Join(c.dir, fmt.Sprintf("r%d-%d", w, i))
					r := c.in.Run(loadCtx, nil, "pollux", "cp", pick.remote, local)
					mu.Lock()
					switch {
					case loadCtx.Err() != nil:
					case r.Code == 0:
						gets++
						if got, err := os.ReadFile(local); err != nil || !bytes.Equal(got, pick.data) {
							getFail["WRONG BYTES"]++
						}
					default:
						getFail[reason(r)]++
					}
				}
				mu.Unlock()
				select {
				case news <- struct{}{}:
				default:
				}
			}
		}()
	}
	// progress waits until n more puts have ended: the load runs on between steps.
	progress := func(n int) {
		t.Helper()
		mu.Lock()
		goal := finished + n
		mu.Unlock()
		for {
			mu.Lock()
			done := finished >= goal
			mu.Unlock()
			if done {
				return
			}
			select {
			case <-news:
			case <-c.ctx.Done():
				t.Fatalf("the load stopped: %v", c.ctx.Err())
			}
		}
	}

	progress(20)
	var detections, returns []time.Duration
	for r := range rounds {
		name := fmt.Sprintf("disk%d", r%3+1)
		h := c.hosts[name]
		at := time.Now()
		kill := r%2 == 0
		if kill {
			require.NoError(t, h.Kill())
		} else {
			require.NoError(t, h.Cut())
		}
		detected := c.event("disk_server_silent", name, at.Add(-time.Second), time.Minute)
		detections = append(detections, detected.Sub(at))
		progress(8) // the others carry the load meanwhile
		back := time.Now()
		if kill {
			require.NoError(t, c.in.Restart(c.ctx, name))
		} else {
			require.NoError(t, h.Restore())
		}
		require.Eventually(t, func() bool { return c.availability(name) == model.DiskServerAvailabilityAvailable }, time.Minute, 20*time.Millisecond)
		returns = append(returns, time.Since(back))
		what := "cut off"
		if kill {
			what = "killed"
		}
		t.Logf("round %d: %s's host %s: found silent after %s, back %s after it was %s",
			r+1, name, what, detections[r].Round(10*time.Millisecond), returns[r].Round(10*time.Millisecond),
			map[bool]string{true: "started again", false: "restored"}[kill])
		progress(8)
	}
	stopping.Store(true)
	load.Wait()

	// Nothing is left unfinished.
	if !assert.EventuallyWithT(t, func(ct *assert.CollectT) {
		var n int
		require.NoError(ct, c.db.Pool().QueryRow(c.ctx, "select count(*) from request where status = 'PENDING'").Scan(&n))
		assert.Zero(ct, n, "requests not in a final state")
	}, time.Minute, 100*time.Millisecond) {
		t.Fatalf("subrequests of the requests not ended:\n%s", unended(c.ctx, c.db))
	}
	// Every put a client was told succeeded is there, whole.
	lost := 0
	for _, w := range acked {
		local := filepath.Join(c.dir, "verify")
		r := c.in.Run(c.ctx, nil, "pollux", "cp", w.remote, local)
		got, err := os.ReadFile(local)
		if r.Code != 0 || err != nil || !bytes.Equal(got, w.data) {
			lost++
			t.Errorf("%s was acknowledged and does not read back: %s", w.remote, r.Stderr)
		}
	}
	sort.Slice(detections, func(i, j int) bool { return detections[i] < detections[j] })
	t.Logf("%d rounds; detection min %s median %s max %s (target %s)", rounds, detections[0].Round(10*time.Millisecond),
		detections[len(detections)/2].Round(10*time.Millisecond), detections[len(detections)-1].Round(10*time.Millisecond), detectionTarget)
	t.Logf("puts acknowledged %d, failed %v; gets served %d, failed %v; files verified %d, lost %d",
		len(acked), putFail, gets, getFail, len(acked)-lost, lost)
	require.Zero(t, lost)
	require.Zero(t, getFail["WRONG BYTES"], "no read served wrong bytes")
	require.Less(t, detections[len(detections)-1], detectionLimit)
}
