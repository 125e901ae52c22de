// Package schematest gives a test its own database migrated to head with Pollux's logic
// installed, cloned from a template that is rebuilt whenever a migration or logic file
// changes.
package schematest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/hotpatch"
	"github.com/pollux-storage/pollux/framework/migrate"
	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/pgtest"
	"github.com/pollux-storage/pollux/model"
	"github.com/pollux-storage/pollux/schema"
)

// LogicTable is where Pollux records installed logic versions.
const LogicTable = model.LogicBundleTable

// Template is the migrated-and-logic-installed template.
var Template = pgtest.Template{Key: contentKey(), Setup: Install}

// RolePrefix prefixes the database roles of the test databases (schematest's template and
// its clones), so that tests never use the roles of the local instance (`make run`, prefix
// pollux_), which log in with passwords on the same development cluster. Every test
// database shares these roles: grants are per database, roles per cluster.
const RolePrefix = "pollux_test_"

// Install migrates the database at dsn to head and installs the embedded logic, with the
// database roles named by RolePrefix.
func Install(ctx context.Context, dsn string) error {
	dsn, err := pg.WithParam(dsn, "options", "-c pollux.role_prefix="+RolePrefix)
	if err != nil {
		return err
	}
	db, err := pg.Open(ctx, pg.Config{DSN: dsn})
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := migrate.Up(ctx, db, schema.Migrations()); err != nil {
		return err
	}
	b, err := hotpatch.Load(schema.Logic())
	if err != nil {
		return err
	}
	_, err = hotpatch.New(db, LogicTable, hotpatch.Final(model.LogicFinalFile)).Apply(ctx, b, "schematest", "test template", false)
	return err
}

// DSN returns the DSN of a fresh database for this test.
func DSN(tb testing.TB) string {
	tb.Helper()
	return pgtest.NewDatabase(tb, Template)
}

// DB opens a pool on a fresh database for this test and closes it when the test ends.
func DB(tb testing.TB) *pg.DB {
	tb.Helper()
	db, err := pg.Open(context.Background(), pg.Config{DSN: DSN(tb)})
	require.NoError(tb, err)
	tb.Cleanup(db.Close)
	return db
}

func contentKey() string {
	h := sha256.New()
	for _, f := range []fs.FS{schema.Migrations(), schema.Logic()} {
		names, _ := fs.Glob(f, "*")
		sort.Strings(names)
		for _, n := range names {
			b, _ := fs.ReadFile(f, n)
			h.Write([]byte(n))
			h.Write(b)
		}
	}
	return "pollux-schema-" + hex.EncodeToString(h.Sum(nil))
}
