package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pollux-storage/pollux/framework/pgcluster"
)

// PgbenchResult is one pgbench -N run.
type PgbenchResult struct {
	Clients, Threads int
	Duration         time.Duration
	// TPS is pgbench's figure without initial connection time.
	TPS float64
}

// FindPgbench locates pgbench next to the PostgreSQL server binaries pgcluster would use,
// else on PATH.
func FindPgbench() (string, error) {
	if dir, err := pgcluster.FindBinDir(); err == nil {
		p := filepath.Join(dir, "pgbench")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("pgbench")
	if err != nil {
		return "", errors.New("no pgbench found next to the PostgreSQL server binaries or on PATH " +
			"(Debian ships it in postgresql-contrib or postgresql-client)")
	}
	return p, nil
}

// PgbenchInit loads pgbench's tables at the given scale into the database at dsn.
func PgbenchInit(ctx context.Context, pgbench, dsn string, scale int) error {
	if _, err := runPgbench(ctx, pgbench, dsn, "-i", "-s", strconv.Itoa(scale), "-q"); err != nil {
		return fmt.Errorf("initialise pgbench tables: %w", err)
	}
	return nil
}

// RunPgbench runs pgbench's simple-update workload (-N: one UPDATE, one SELECT and one
// INSERT per transaction) against the database at dsn and returns its throughput.
func RunPgbench(ctx context.Context, pgbench, dsn string, clients, threads int, d time.Duration) (PgbenchResult, error) {
	secs := wholeSeconds(d)
	out, err := runPgbench(ctx, pgbench, dsn, "-N", "-c", strconv.Itoa(clients), "-j", strconv.Itoa(threads), "-T", strconv.Itoa(secs))
	if err != nil {
		return PgbenchResult{}, fmt.Errorf("run pgbench: %w", err)
	}
	tps, err := ParsePgbenchTPS(out)
	if err != nil {
		return PgbenchResult{}, fmt.Errorf("run pgbench -c %d: %w", clients, err)
	}
	return PgbenchResult{Clients: clients, Threads: threads, Duration: time.Duration(secs) * time.Second, TPS: tps}, nil
}

var tpsLine = regexp.MustCompile(`(?m)^tps = ([0-9]+(?:\.[0-9]+)?) \(without initial connection time\)`)

// ParsePgbenchTPS reads "tps = X (without initial connection time)" from pgbench's report.
func ParsePgbenchTPS(out string) (float64, error) {
	m := tpsLine.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no tps line in pgbench's output:\n%s", tail(out, 20))
	}
	return strconv.ParseFloat(m[1], 64)
}

// runPgbench runs pgbench against dsn's database and returns its combined output. pgbench
// takes the connection as -h/-p/-U rather than dsn itself, because a pgx DSN may carry
// parameters libpq rejects; a Unix-socket DSN gives its socket directory as the host.
func runPgbench(ctx context.Context, pgbench, dsn string, args ...string) (string, error) {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return "", fmt.Errorf("parse database url: %w", err)
	}
	args = append(args, "-h", cfg.Host, "-p", strconv.Itoa(int(cfg.Port)), "-U", cfg.User, cfg.Database)
	cmd := exec.CommandContext(ctx, pgbench, args...)
	cmd.Env = os.Environ()
	if cfg.Password != "" {
		cmd.Env = append(cmd.Env, "PGPASSWORD="+cfg.Password)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, tail(string(out), 20))
	}
	return string(out), nil
}

// wholeSeconds is d as pgbench's -T takes it: whole seconds, rounded up, at least 1.
func wholeSeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
