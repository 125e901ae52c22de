package pgcluster_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
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

func TestListenOnTCPForTrustedNetworks(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("a second cluster takes seconds to create; -short leaves it out")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// A random loopback address with the fixed port: no other server listens there, and a
	// bind that fails anyway fails the start with the server's reason.
	addr := fmt.Sprintf("127.%d.%d.%d", 1+rand.IntN(250), rand.IntN(256), 1+rand.IntN(250))
	dir := filepath.Join(t.TempDir(), "pg")
	c, err := pgcluster.EnsureWith(ctx, dir, pgcluster.Options{
		Listen: addr, Trust: []string{"127.0.0.0/8"}, Settings: map[string]string{"shared_buffers": "32MB"},
	}, io.Discard)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Stop(context.Background()) })

	dsn, err := c.TCPDSN("postgres")
	require.NoError(t, err)
	require.Contains(t, dsn, "@"+addr+":5432/")
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var listen, sb string
	var client *string
	require.NoError(t, conn.QueryRow(ctx, "select current_setting('listen_addresses'), current_setting('shared_buffers'), inet_client_addr()::text").
		Scan(&listen, &sb, &client))
	require.Equal(t, addr, listen)
	require.Equal(t, "32MB", sb, "Settings override the defaults")
	require.NotNil(t, client, "connected over TCP, not the socket")

	_, err = pgcluster.EnsureWith(ctx, dir, pgcluster.Options{Trust: []string{"10.0.0.0"}}, io.Discard)
	require.ErrorContains(t, err, `trusted network "10.0.0.0" is not a CIDR prefix`)
	_, err = pgcluster.EnsureWith(ctx, dir, pgcluster.Options{Listen: "localhost"}, io.Discard)
	require.ErrorContains(t, err, `listen address "localhost" is not an IP address`)
	plain, err := pgcluster.Open(dir)
	require.NoError(t, err)
	_, err = plain.TCPDSN("postgres")
	require.ErrorContains(t, err, "listens on no TCP address")
}

// RequirePassword makes the named roles give a password, leaving every other role on the
// cluster's trust, and can be undone.
func TestRequirePassword(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("a second cluster takes seconds to create; -short leaves it out")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "pg")
	c, err := pgcluster.EnsureWith(ctx, dir, pgcluster.Options{Settings: map[string]string{"shared_buffers": "32MB"}}, io.Discard)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	admin, err := pgx.Connect(ctx, c.DSN("postgres"))
	require.NoError(t, err)
	defer admin.Close(ctx)
	_, err = admin.Exec(ctx, "CREATE ROLE probe LOGIN PASSWORD 'probe-secret'")
	require.NoError(t, err)

	connect := func(password string) error {
		cfg, err := pgx.ParseConfig(c.DSN("postgres"))
		require.NoError(t, err)
		cfg.User, cfg.Password = "probe", password
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil {
			conn.Close(ctx)
		}
		return err
	}
	require.NoError(t, connect(""), "trusted before")

	require.NoError(t, c.RequirePassword(ctx, []string{"probe"}))
	require.NoError(t, c.RequirePassword(ctx, []string{"probe"}), "a second call replaces the block")
	require.Error(t, connect(""), "no password")
	require.Error(t, connect("wrong"))
	require.NoError(t, connect("probe-secret"))
	var one int
	require.NoError(t, admin.QueryRow(ctx, "SELECT 1").Scan(&one), "the superuser stays trusted")
	fresh, err := pgx.Connect(ctx, c.DSN("postgres"))
	require.NoError(t, err, "a new superuser session is trusted too")
	fresh.Close(ctx)

	require.NoError(t, c.RequirePassword(ctx, nil))
	require.NoError(t, connect(""), "trusted again once no role must give a password")
	require.Error(t, c.RequirePassword(ctx, []string{"a,b"}))
}
