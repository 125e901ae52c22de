// Package pgtest gives tests a real PostgreSQL database of their own, in milliseconds.
//
// The server is the one named by POLLUX_TEST_DATABASE_URL (any database on it; the role
// must be allowed to CREATE DATABASE), or else the private cluster under <repo>/var/pg that
// `make db` also uses, started on first use. A template database is built once per
// Template.Key (callers key it by a hash of what Setup installs), under an advisory lock so
// that test packages running in parallel build it once; every test then gets
// `CREATE DATABASE … TEMPLATE` and drops it when it ends.
//
// There is no fallback: a test that cannot get a database fails and says how to get one.
package pgtest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/pgcluster"
)

// EnvURL names the variable that points the tests at an existing server.
const EnvURL = "POLLUX_TEST_DATABASE_URL"

// Template describes what every database cloned from it contains.
type Template struct {
	// Key identifies the template's content; change it whenever Setup would install
	// something different (a hash of the migration and logic files does that).
	Key string
	// Setup installs the content into the empty database at dsn.
	Setup func(ctx context.Context, dsn string) error
}

var (
	serverOnce sync.Once
	serverDSN  string
	serverErr  error
	counter    atomic.Int64
)

// ServerDSN returns a DSN of a maintenance database on the test server, starting the
// private cluster if needed.
func ServerDSN(tb testing.TB) string {
	tb.Helper()
	serverOnce.Do(func() {
		if u := os.Getenv(EnvURL); u != "" {
			serverDSN = u
			return
		}
		root, err := pgcluster.RepoRoot()
		if err != nil {
			serverErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		c, err := pgcluster.Ensure(ctx, filepath.Join(root, "var", "pg"), os.Stderr)
		if err != nil {
			serverErr = err
			return
		}
		serverDSN = c.DSN("postgres")
	})
	if serverErr != nil {
		tb.Fatalf("pgtest: no PostgreSQL for the tests: %v\n"+
			"Run `make db` (starts a private cluster under ./var/pg), or set %s to a server where this role may CREATE DATABASE.", serverErr, EnvURL)
	}
	return serverDSN
}

// NewDatabase creates a database cloned from tmpl for this test, drops it when the test
// ends, and returns its DSN.
func NewDatabase(tb testing.TB, tmpl Template) string {
	tb.Helper()
	return NewDatabaseOn(tb, ServerDSN(tb), tmpl)
}

// NewDatabaseOn is NewDatabase on the server of admin, a DSN of a maintenance database of
// a server the test started itself (one listening on a test network, say); the DSN
// returned reaches the new database the way admin reaches its server.
func NewDatabaseOn(tb testing.TB, admin string, tmpl Template) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tplName, err := ensureTemplate(ctx, admin, tmpl)
	if err != nil {
		tb.Fatalf("pgtest: build template database: %v", err)
	}
	name := fmt.Sprintf("pollux_test_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e6, counter.Add(1))
	if err := adminExec(ctx, admin, fmt.Sprintf("create database %s template %s", name, tplName)); err != nil {
		tb.Fatalf("pgtest: create test database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := adminExec(ctx, admin, fmt.Sprintf("drop database if exists %s with (force)", name)); err != nil {
			tb.Errorf("pgtest: drop test database %s: %v", name, err)
		}
	})
	dsn, err := pg.WithDatabase(admin, name)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	return dsn
}

// ensureTemplate builds the template database once per key and returns its name.
func ensureTemplate(ctx context.Context, admin string, tmpl Template) (string, error) {
	sum := sha256.Sum256([]byte(tmpl.Key))
	name := fmt.Sprintf("pollux_tpl_%x", sum[:6])
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", fmt.Errorf("connect to test server: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// One builder per template across every test process; the others wait here.
	lockID := int64(binary.BigEndian.Uint64(sum[:8]))
	if _, err := conn.Exec(ctx, "select pg_advisory_lock($1)", lockID); err != nil {
		return "", fmt.Errorf("lock template: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "select pg_advisory_unlock($1)", lockID) //nolint:errcheck // closing the connection unlocks too

	var exists bool
	if err := conn.QueryRow(ctx, "select exists(select 1 from pg_database where datname = $1)", name).Scan(&exists); err != nil {
		return "", fmt.Errorf("look for template: %w", err)
	}
	if exists {
		return name, nil
	}
	// Build under a scratch name and rename when complete, so an interrupted build never
	// leaves a half-made template behind under the real name.
	scratch := name + "_building"
	if _, err := conn.Exec(ctx, "drop database if exists "+scratch+" with (force)"); err != nil {
		return "", fmt.Errorf("drop stale scratch template: %w", err)
	}
	if _, err := conn.Exec(ctx, "create database "+scratch); err != nil {
		return "", fmt.Errorf("create scratch template: %w", err)
	}
	dsn, err := pg.WithDatabase(admin, scratch)
	if err != nil {
		return "", err
	}
	if err := tmpl.Setup(ctx, dsn); err != nil {
		return "", fmt.Errorf("set up template: %w", err)
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("alter database %s rename to %s", scratch, name)); err != nil {
		return "", fmt.Errorf("publish template: %w", err)
	}
	return name, nil
}

func adminExec(ctx context.Context, admin, sql string) error {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return fmt.Errorf("connect to test server: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// CREATE DATABASE … TEMPLATE fails if another session is connected to the template at
	// that instant (a sibling test process just finished building it); that passes quickly.
	for attempt := 0; ; attempt++ {
		_, err = conn.Exec(ctx, sql)
		if err == nil || attempt >= 50 || !strings.Contains(err.Error(), "is being accessed by other users") {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// SQLTemplate is a template whose content is the given SQL (tables and functions a test
// of its own needs); it is keyed by the SQL itself, so editing the SQL rebuilds it.
func SQLTemplate(sql string) Template {
	return Template{Key: "sql:" + sql, Setup: func(ctx context.Context, dsn string) error {
		db, err := pg.Open(ctx, pg.Config{DSN: dsn})
		if err != nil {
			return err
		}
		defer db.Close()
		// The simple protocol (no arguments) runs several statements in one call.
		_, err = db.Pool().Exec(ctx, sql)
		return err
	}}
}
