package instance_test

import (
	"context"
	"testing"

	"github.com/jackc/pgerrcode"
	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/daemons/internal/instance"
	"github.com/pollux-storage/pollux/framework/daemon"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/schema/schematest"
)

func TestRegistryAndReadiness(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := schematest.DB(t)
	for _, check := range instance.Ready {
		require.NoError(t, check(ctx, db), "a migrated database with logic installed is ready")
	}

	reg := instance.Registry{}
	in := daemon.Instance{ID: "00000000-0000-4000-8000-000000000002", Role: "stagerd", Host: "h1", PID: 7, Version: "v0",
		Pools: map[string]int{"put": 4}, AdminURL: "http://127.0.0.1:1"}
	require.NoError(t, reg.Register(ctx, db, in))
	require.NoError(t, reg.Heartbeat(ctx, db, in.ID))
	require.NoError(t, reg.Deregister(ctx, db, in.ID))
	require.NoError(t, reg.Deregister(ctx, db, in.ID), "stopping twice is harmless")
	require.ErrorContains(t, reg.Heartbeat(ctx, db, "00000000-0000-4000-8000-00000000dead"), "is not registered")
	var events int
	require.NoError(t, db.Pool().QueryRow(ctx, "select count(*) from system_event where instance_id = $1", in.ID).Scan(&events))
	require.Equal(t, 2, events, "start and stop are journaled once each")

	// Logic changed behind apply's back, or missing a function this binary calls.
	_, err := db.Pool().Exec(ctx, "CREATE OR REPLACE FUNCTION system_event_list(p_limit integer) RETURNS SETOF system_event LANGUAGE sql STABLE AS 'SELECT * FROM system_event LIMIT 1'")
	require.NoError(t, err)
	require.ErrorContains(t, instance.LogicInstalled(ctx, db), "changed by hand")
	_, err = db.Pool().Exec(ctx, "DROP FUNCTION system_event_list")
	require.NoError(t, err)
	require.ErrorContains(t, instance.CheckSignatures(ctx, db), "system_event_list is missing")

	_, err = db.Pool().Exec(ctx, "update schema_migrations set version = 0")
	require.NoError(t, err)
	require.ErrorContains(t, instance.MigrationsAtHead(ctx, db), "run `pollux-admin migrate`")
}

// A daemon's role reads no table, yet its readiness checks pass: they read the versions
// through readiness_versions and the catalogue; and a role may not read the bookkeeping
// tables directly.
func TestReadinessAsADaemonRole(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn, err := pg.WithUser(schematest.DSN(t), schematest.RolePrefix+"stagerd")
	require.NoError(t, err)
	db, err := pg.Open(ctx, pg.Config{DSN: dsn})
	require.NoError(t, err)
	defer db.Close()
	for _, check := range instance.Ready {
		require.NoError(t, check(ctx, db))
	}
	for _, table := range []string{"schema_migrations", "river_migration", "logic_bundle"} {
		_, err := db.Pool().Exec(ctx, "select * from "+table)
		require.Equal(t, pgerrcode.InsufficientPrivilege, pg.SQLState(err), table)
	}
}
