package pgcluster_test

import (
	"context"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/pgcluster"
)

func TestEnsureIsIdempotentAndStops(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("a second cluster takes seconds to create; -short leaves it out")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// t.TempDir is 0700: as root this exercises handing the cluster to the postgres account.
	dir := filepath.Join(t.TempDir(), "pg")
	c, err := pgcluster.Ensure(ctx, dir, io.Discard)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Stop(context.Background()) })

	again, err := pgcluster.Ensure(ctx, dir, io.Discard)
	require.NoError(t, err)
	require.Equal(t, c.DSN("postgres"), again.DSN("postgres"))

	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	require.NoError(t, err)
	var sb string
	require.NoError(t, conn.QueryRow(ctx, "show shared_buffers").Scan(&sb))
	require.Equal(t, "2GB", sb)
	require.NoError(t, conn.Close(ctx))

	require.NoError(t, c.Stop(ctx))
	up, err := c.Running(ctx)
	require.NoError(t, err)
	require.False(t, up)
}
