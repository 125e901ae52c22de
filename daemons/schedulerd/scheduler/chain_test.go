package scheduler_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/daemons/jobmanagerd/jobmanager"
	"github.com/pollux-storage/pollux/daemons/schedulerd/scheduler"
	"github.com/pollux-storage/pollux/daemons/stagerd/stager"
	"github.com/pollux-storage/pollux/framework/daemon"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
	"github.com/pollux-storage/pollux/schema/schematest"
)

// TestClaimChain runs stagerd, jobmanagerd and schedulerd in-process (two of each, as any
// number may run) and follows puts from START to SCHEDULED on a disk server: first with no
// disk server (the puts wait in the database and say so), then with one appearing, which
// schedulerd places them on and wakes with a hint; then one more put, which the stager
// places at once and hints itself.
func TestClaimChain(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dsn := schematest.DSN(t)
	db, err := pg.Open(ctx, pg.Config{DSN: dsn})
	require.NoError(t, err)
	defer db.Close()

	// The disk server's mover listener, as far as hints go.
	var hints atomic.Int64
	disk := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/wake" {
			hints.Add(1)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer disk.Close()

	run, stop := context.WithCancel(ctx)
	exited := make(chan int, 6)
	for _, spec := range []daemon.Spec{stager.Spec(), stager.Spec(), jobmanager.Spec(), jobmanager.Spec(), scheduler.Spec(), scheduler.Spec()} {
		go func() {
			exited <- daemon.Run(run, []string{"--log-format", "json", "--log-level", "warn"},
				[]string{"POLLUX_DATABASE_URL=" + dsn}, io.Discard, io.Discard, spec)
		}()
	}
	defer func() {
		stop()
		for range 6 {
			assert.Equal(t, 0, <-exited, "a daemon did not drain cleanly")
		}
	}()

	submit := func(id string, paths ...string) {
		t.Helper()
		_, err := model.RequestSubmit(ctx, db.Pool(), id, model.RequestTypePut, "default", "alice", "", "", paths, false, nil, nil)
		require.NoError(t, err)
	}
	subs := func(id string) []model.Subrequest {
		s, err := model.SubrequestList(ctx, db.Pool(), id)
		if err != nil {
			t.Errorf("list subrequests: %v", err)
		}
		return s
	}
	const n = 20
	var paths []string
	for i := range n {
		paths = append(paths, fmt.Sprintf("/pollux/chain/f%d", i))
	}
	id := "00000000-0000-4000-8000-0000000000c1"
	submit(id, paths...)
	require.Eventually(t, func() bool {
		s := subs(id)
		for _, s := range s {
			if s.Status != model.SubrequestStatusWaitsched || s.Info != "queued, no disk server of its service class is available" {
				return false
			}
		}
		return len(s) == n
	}, 30*time.Second, 20*time.Millisecond, "with no disk server the puts wait in the database and say why")

	ds, err := model.DiskServerRegister(ctx, db.Pool(), "ds1", disk.URL, 0)
	require.NoError(t, err)
	_, err = model.FileSystemRegister(ctx, db.Pool(), ds, "/data/ds1", "default", 1<<40, 1<<39)
	require.NoError(t, err)

	placed := func(id string) bool {
		for _, s := range subs(id) {
			if s.Status != model.SubrequestStatusScheduled || s.DiskServerID == nil || *s.DiskServerID != ds {
				return false
			}
		}
		return true
	}
	require.Eventually(t, func() bool { return placed(id) }, 30*time.Second, 20*time.Millisecond,
		"once a disk server appears schedulerd places every put on it: %+v", subs(id)[0])
	require.Eventually(t, func() bool { return hints.Load() >= 1 }, 10*time.Second, 10*time.Millisecond,
		"and wakes the disk server")

	before := hints.Load()
	fast := "00000000-0000-4000-8000-0000000000c2"
	submit(fast, "/pollux/chain/fast")
	require.Eventually(t, func() bool { return placed(fast) }, 30*time.Second, 10*time.Millisecond,
		"with a disk server up the stager places a put at once")
	require.Eventually(t, func() bool { return hints.Load() > before }, 10*time.Second, 10*time.Millisecond,
		"and wakes its disk server itself")
	var waiting int
	require.NoError(t, db.Pool().QueryRow(ctx, "select count(*) from subrequest where status = 'WAITSCHED'").Scan(&waiting))
	require.Zero(t, waiting)
}
