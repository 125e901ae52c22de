// Package migrate brings a database to the head of two migration sequences with one call:
// the application's own golang-migrate files (given as an fs.FS) and River's tables through
// River's own rivermigrate, so River's SQL is never copied into the application. It reports
// both versions, and takes both down again (tests prove every down migration works).
package migrate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"

	gomigrate "github.com/golang-migrate/migrate/v4"
	migratepgx "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/pollux-storage/pollux/framework/pg"
)

// Versions says where a database stands.
type Versions struct {
	// Schema is the application's golang-migrate version (0: nothing applied).
	Schema uint `json:"schema"`
	// Dirty is golang-migrate's flag for a migration that failed half-way; an operator must
	// repair the database and `pollux-admin migrate force` it.
	Dirty bool `json:"dirty"`
	// River is the highest River migration applied (0: none).
	River int `json:"river"`
}

// String renders the versions the way operators read them.
func (v Versions) String() string {
	s := fmt.Sprintf("schema %d, river %d", v.Schema, v.River)
	if v.Dirty {
		s += " (schema DIRTY: a migration failed half-way)"
	}
	return s
}

// Head returns the versions a fully migrated database has.
func Head(migrations fs.FS) (Versions, error) {
	src, err := iofs.New(migrations, ".")
	if err != nil {
		return Versions{}, fmt.Errorf("read migrations: %w", err)
	}
	defer src.Close()
	v, err := src.First()
	if err != nil {
		return Versions{}, fmt.Errorf("read migrations: %w", err)
	}
	for {
		next, err := src.Next(v)
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return Versions{}, fmt.Errorf("read migrations: %w", err)
		}
		v = next
	}
	all := riverMigrator(nil).AllVersions()
	return Versions{Schema: v, River: all[len(all)-1].Version}, nil
}

// Up applies every pending migration of both sequences and returns the resulting versions.
func Up(ctx context.Context, db *pg.DB, migrations fs.FS) (Versions, error) {
	m, err := open(db, migrations)
	if err != nil {
		return Versions{}, err
	}
	defer m.Close()
	if err := m.Up(); err != nil && !errors.Is(err, gomigrate.ErrNoChange) {
		return Versions{}, fmt.Errorf("migrate schema up: %w", err)
	}
	if _, err := riverMigrator(db).Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return Versions{}, fmt.Errorf("migrate river up: %w", err)
	}
	return Current(ctx, db, migrations)
}

// Down removes every migration of both sequences (River's first, as it was applied last).
func Down(ctx context.Context, db *pg.DB, migrations fs.FS) error {
	if _, err := riverMigrator(db).Migrate(ctx, rivermigrate.DirectionDown, &rivermigrate.MigrateOpts{TargetVersion: -1}); err != nil {
		return fmt.Errorf("migrate river down: %w", err)
	}
	m, err := open(db, migrations)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := m.Down(); err != nil && !errors.Is(err, gomigrate.ErrNoChange) {
		return fmt.Errorf("migrate schema down: %w", err)
	}
	return nil
}

// Force sets the schema version without running anything, clearing the dirty flag; it is
// the operator's tool after repairing a half-applied migration by hand.
func Force(db *pg.DB, migrations fs.FS, version int) error {
	m, err := open(db, migrations)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := m.Force(version); err != nil {
		return fmt.Errorf("force schema version %d: %w", version, err)
	}
	return nil
}

// Current reads the versions a database is at.
func Current(ctx context.Context, db *pg.DB, migrations fs.FS) (Versions, error) {
	var v Versions
	err := db.DoIdempotent(ctx, "read schema version", func(q pg.Querier) error {
		var exists bool
		if err := q.QueryRow(ctx, "select to_regclass('schema_migrations') is not null").Scan(&exists); err != nil {
			return err
		}
		if !exists {
			return nil
		}
		var version int64
		err := q.QueryRow(ctx, "select version, dirty from schema_migrations limit 1").Scan(&version, &v.Dirty)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		v.Schema = uint(version)
		return err
	})
	if err != nil {
		return Versions{}, err
	}
	existing, err := riverMigrator(db).ExistingVersions(ctx)
	if err != nil {
		return Versions{}, fmt.Errorf("read river version: %w", err)
	}
	for _, m := range existing {
		v.River = max(v.River, m.Version)
	}
	return v, nil
}

func open(db *pg.DB, migrations fs.FS) (*gomigrate.Migrate, error) {
	src, err := iofs.New(migrations, ".")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	// golang-migrate drives database/sql; this shares the daemon's pool instead of opening
	// a second one from the DSN.
	driver, err := migratepgx.WithInstance(stdlib.OpenDBFromPool(db.Pool()), &migratepgx.Config{})
	if err != nil {
		return nil, fmt.Errorf("open migration driver: %w", err)
	}
	m, err := gomigrate.NewWithInstance("iofs", src, "pgx5", driver)
	if err != nil {
		return nil, fmt.Errorf("open migrations: %w", err)
	}
	return m, nil
}

func riverMigrator(db *pg.DB) *rivermigrate.Migrator[pgx.Tx] {
	var driver *riverpgxv5.Driver
	if db == nil {
		driver = riverpgxv5.New(nil)
	} else {
		driver = riverpgxv5.New(db.Pool())
	}
	// River logs every applied step at info to stdout by default; our callers report.
	m, err := rivermigrate.New(driver, &rivermigrate.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(fmt.Sprintf("river migrator: %v", err)) // only fails on an invalid built-in line
	}
	return m
}
