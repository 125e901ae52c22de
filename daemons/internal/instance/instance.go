// Package instance is what every Pollux daemon shares on top of the framework: it records
// the instance in daemon_instance through the logic functions, and decides readiness
// (migrations at head, logic installed untouched and providing every function this binary
// calls).
package instance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/jackc/pgerrcode"

	"github.com/pollux-storage/pollux/framework/daemon"
	"github.com/pollux-storage/pollux/framework/hotpatch"
	"github.com/pollux-storage/pollux/framework/migrate"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
	"github.com/pollux-storage/pollux/schema"
)

// LogicTable is where installed logic versions are recorded.
const LogicTable = model.LogicBundleTable

// Registry records daemon instances in daemon_instance.
type Registry struct{}

var _ daemon.Registry = Registry{}

// Register records a starting instance.
func (Registry) Register(ctx context.Context, db *pg.DB, in daemon.Instance) error {
	pools, err := json.Marshal(in.Pools)
	if err != nil {
		return fmt.Errorf("encode pools: %w", err)
	}
	// The instance's calls are idempotent (schema/logic/daemon_instance.sql).
	return db.TxIdempotent(ctx, "register instance", func(q pg.Querier) error {
		return model.DaemonInstanceRegister(ctx, q, in.ID, in.Role, in.Host, int32(in.PID), in.Version, pools, in.AdminURL)
	})
}

// Heartbeat refreshes the instance's heartbeat.
func (Registry) Heartbeat(ctx context.Context, db *pg.DB, id string) error {
	return db.DoIdempotent(ctx, "heartbeat", func(q pg.Querier) error { return model.DaemonInstanceHeartbeat(ctx, q, id) })
}

// Deregister marks the instance stopped.
func (Registry) Deregister(ctx context.Context, db *pg.DB, id string) error {
	return db.TxIdempotent(ctx, "deregister instance", func(q pg.Querier) error { return model.DaemonInstanceStop(ctx, q, id) })
}

// Ready are the readiness checks of every Pollux daemon.
var Ready = []func(ctx context.Context, db *pg.DB) error{MigrationsAtHead, LogicInstalled}

// MigrationsAtHead fails while the database is behind (or ahead of) this binary's
// migrations, or dirty. The versions come from readiness_versions: a daemon's role reads
// no table.
func MigrationsAtHead(ctx context.Context, db *pg.DB) error {
	head, err := migrate.Head(schema.Migrations())
	if err != nil {
		return err
	}
	v, err := readiness(ctx, db)
	if err != nil {
		return err
	}
	cur := migrate.Versions{Schema: uint(v.SchemaVersion), Dirty: v.SchemaDirty, River: int(v.RiverVersion)}
	if cur != head {
		return fmt.Errorf("database at %s, this binary needs %s: run `pollux-admin migrate`", cur, head)
	}
	return nil
}

// LogicInstalled fails unless logic is installed, nobody changed its functions by hand, and
// every function this binary calls exists with the signature it was generated for. A hot
// patch from a directory keeps daemons ready as long as it keeps those signatures.
func LogicInstalled(ctx context.Context, db *pg.DB) error {
	v, err := readiness(ctx, db)
	if err != nil {
		return err
	}
	if v.LogicVersion == nil || v.LogicCatalogChecksum == nil {
		return errors.New("no logic installed: run `pollux-admin migrate` or `pollux-admin logic apply`")
	}
	in := hotpatch.Installed{Version: *v.LogicVersion, CatalogChecksum: *v.LogicCatalogChecksum}
	if err := json.Unmarshal(v.LogicFiles, &in.Files); err != nil {
		return fmt.Errorf("read installed logic files: %w", err)
	}
	var edited bool
	if err := db.DoIdempotent(ctx, "compare installed logic", func(q pg.Querier) (err error) {
		edited, err = hotpatch.HandEdited(ctx, q, in)
		return err
	}); err != nil {
		return err
	}
	if edited {
		return fmt.Errorf("logic version %d was changed by hand since it was applied: run `pollux-admin logic status` and re-apply", in.Version)
	}
	return CheckSignatures(ctx, db)
}

// LogicStatus compares the installed logic with bundle, as hotpatch's Status does, from
// readiness_versions and the catalogue: a daemon's role reads neither bookkeeping table.
// Its schema version comes with it.
func LogicStatus(ctx context.Context, db *pg.DB, bundle hotpatch.Bundle) (hotpatch.Status, int64, error) {
	v, err := readiness(ctx, db)
	if err != nil {
		return hotpatch.Status{}, 0, err
	}
	if v.LogicVersion == nil || v.LogicCatalogChecksum == nil || v.LogicChecksum == nil {
		return hotpatch.Status{Added: bundle.Names()}, v.SchemaVersion, nil
	}
	in := hotpatch.Installed{Version: *v.LogicVersion, Checksum: *v.LogicChecksum, CatalogChecksum: *v.LogicCatalogChecksum}
	if err := json.Unmarshal(v.LogicFiles, &in.Files); err != nil {
		return hotpatch.Status{}, 0, fmt.Errorf("read installed logic files: %w", err)
	}
	var edited bool
	if err := db.DoIdempotent(ctx, "compare installed logic", func(q pg.Querier) (err error) {
		edited, err = hotpatch.HandEdited(ctx, q, in)
		return err
	}); err != nil {
		return hotpatch.Status{}, 0, err
	}
	return hotpatch.Compare(&in, edited, bundle), v.SchemaVersion, nil
}

func readiness(ctx context.Context, db *pg.DB) (model.ReadinessVersionsRow, error) {
	var rows []model.ReadinessVersionsRow
	err := db.DoIdempotent(ctx, "read versions", func(q pg.Querier) (err error) {
		rows, err = model.ReadinessVersions(ctx, q)
		return err
	})
	if pg.SQLState(err) == pgerrcode.UndefinedFunction {
		return model.ReadinessVersionsRow{}, fmt.Errorf("the logic is not installed (%w): run `pollux-admin migrate`", err)
	}
	if err != nil {
		return model.ReadinessVersionsRow{}, err
	}
	if len(rows) != 1 {
		return model.ReadinessVersionsRow{}, fmt.Errorf("read versions: %d rows, want 1", len(rows))
	}
	return rows[0], nil
}

// CheckSignatures compares the catalogue with model.LogicFunctions.
func CheckSignatures(ctx context.Context, db *pg.DB) error {
	want := map[string]model.LogicFunction{}
	names := make([]string, 0, len(model.LogicFunctions))
	for _, f := range model.LogicFunctions {
		want[f.Name] = f
		names = append(names, f.Name)
	}
	have := map[string][2]string{}
	err := db.DoIdempotent(ctx, "read function signatures", func(q pg.Querier) error {
		rows, err := q.Query(ctx, `
			select p.proname, pg_get_function_identity_arguments(p.oid), pg_get_function_result(p.oid)
			from pg_proc p
			where p.proname = any($1)
			  and p.pronamespace in (select oid from pg_namespace where nspname = any(current_schemas(false)))`, names)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var name, args, result string
			if err := rows.Scan(&name, &args, &result); err != nil {
				return err
			}
			have[name] = [2]string{args, result}
		}
		return rows.Err()
	})
	if err != nil {
		return err
	}
	var problems []string
	for _, name := range names {
		w := want[name]
		h, ok := have[name]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s is missing", name))
		case h[0] != w.IdentityArgs || h[1] != w.Result:
			problems = append(problems, fmt.Sprintf("%s(%s) returns %s, expected %s(%s) returns %s", name, h[0], h[1], name, w.IdentityArgs, w.Result))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("installed logic does not match this binary: %s", strings.Join(problems, "; "))
	}
	return nil
}

// Version is the version daemons report: the VCS revision the binary was built from
// (with "+dirty" for uncommitted changes), or "dev".
func Version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev == "" {
		return "dev"
	}
	return rev[:min(12, len(rev))] + dirty
}
