package scheduler_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

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
// number may run) and follows puts from START to a transfer job queued on the chosen disk
// server — first with no disk server (the puts wait in the database and say so), then with
// one appearing.
func TestClaimChain(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dsn := schematest.DSN(t)
	db, err := pg.Open(ctx, pg.Config{DSN: dsn})
	require.NoError(t, err)
	defer db.Close()

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
			require.Equal(t, 0, <-exited, "a daemon did not drain cleanly")
		}
	}()

	const n = 20
	var paths []string
	for i := range n {
		paths = append(paths, fmt.Sprintf("/pollux/chain/f%d", i))
	}
	id := "00000000-0000-4000-8000-0000000000c1"
	_, err = model.RequestSubmit(ctx, db.Pool(), id, model.RequestTypePut, "default", "alice", "", "", paths, false)
	require.NoError(t, err)

	subs := func() []model.Subrequest {
		s, err := model.SubrequestList(ctx, db.Pool(), id)
		require.NoError(t, err)
		return s
	}
	require.Eventually(t, func() bool {
		for _, s := range subs() {
			if s.Info != "queued, no disk server available" {
				return false
			}
		}
		return true
	}, 30*time.Second, 20*time.Millisecond, "with no disk server the puts wait in the database and say why")

	reg, err := model.DiskServerRegister(ctx, db.Pool(), "ds1", "http://ds1:9100", 0)
	require.NoError(t, err)
	_, err = model.FileSystemRegister(ctx, db.Pool(), reg[0].ID, "/data/ds1", "default", 1<<40, 1<<39)
	require.NoError(t, err)

	require.Eventually(t, func() bool {
		for _, s := range subs() {
			if s.Status != model.SubrequestStatusScheduled || s.DiskServerID == nil || *s.DiskServerID != reg[0].ID {
				return false
			}
		}
		return true
	}, 30*time.Second, 20*time.Millisecond, "once a disk server appears every put is placed on it: %+v", subs()[0])

	var queued int
	require.NoError(t, db.Pool().QueryRow(ctx, "select count(*) from river_job where queue = $1 and kind = 'pollux_transfer'", reg[0].Queue).Scan(&queued))
	require.Equal(t, n, queued, "exactly one transfer job per subrequest, on the disk server's own queue")
}
