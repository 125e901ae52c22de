package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/testsuites/e2e"
)

// statementLog has the server log every statement with its session and virtual
// transaction id, so that the transactions each daemon runs can be told apart and counted.
// pg_stat_database cannot: it also counts the transaction in which every listening session
// reads the notification queue after each NOTIFY, whichever channel it was on.
type statementLog struct {
	conn *pgx.Conn
	path string
}

// linePrefix is what the log lines start with while the count runs: database, application
// (the daemon's name and instance) and virtual transaction id.
const linePrefix = "%m [%p] db=%d app=%a vx=%v: "

var logLine = regexp.MustCompile(`^\S+ \S+ \S+ \[(\d+)\] db=(\S*) app=(.*?) vx=(\S*): LOG:  (?:statement|execute) `)

// startStatementLog turns statement logging on (ALTER SYSTEM: the role must be a
// superuser, and path the server's log). Stop turns it off again.
func startStatementLog(ctx context.Context, adminDSN, path string) (*statementLog, error) {
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		return nil, fmt.Errorf("statement log: %w", err)
	}
	l := &statementLog{conn: conn, path: path}
	for _, q := range []string{
		"ALTER SYSTEM SET log_statement = 'all'",
		"ALTER SYSTEM SET log_line_prefix = '" + linePrefix + "'",
		"SELECT pg_reload_conf()",
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			_ = l.Stop(ctx) // the error below says what failed first
			return nil, fmt.Errorf("statement log: %s: %w", q, err)
		}
	}
	// Every session rereads the configuration before its next command.
	time.Sleep(500 * time.Millisecond)
	return l, nil
}

// Stop resets the logging settings; an error means the server may still log every
// statement, which the operator must be told.
func (l *statementLog) Stop(ctx context.Context) error {
	defer l.conn.Close(ctx)
	for _, q := range []string{"ALTER SYSTEM RESET log_statement", "ALTER SYSTEM RESET log_line_prefix", "SELECT pg_reload_conf()"} {
		if _, err := l.conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("statement log: %s: %w (reset log_statement and log_line_prefix by hand)", q, err)
		}
	}
	return nil
}

// Offset is the log's current end.
func (l *statementLog) Offset() (int64, error) {
	st, err := os.Stat(l.path)
	if err != nil {
		return 0, fmt.Errorf("statement log: %w", err)
	}
	return st.Size(), nil
}

// Transactions counts the distinct transactions that ran a statement in database db
// between two offsets, by program (the application name's first word: rhd, stagerd, ...).
func (l *statementLog) Transactions(db string, from, to int64) (map[string]int, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, fmt.Errorf("statement log: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return nil, fmt.Errorf("statement log: %w", err)
	}
	seen := map[string]bool{}
	out := map[string]int{}
	sc := bufio.NewScanner(io.LimitReader(f, to-from))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		m := logLine.FindStringSubmatch(sc.Text())
		if m == nil || m[2] != db {
			continue
		}
		key := m[1] + "/" + m[4]
		if seen[key] {
			continue
		}
		seen[key] = true
		program, _, _ := strings.Cut(m[3], " ")
		out[program]++
	}
	return out, sc.Err()
}

// cpuSample is the CPU time (user and system) each process of the system under test has
// used since it started: the benchmark itself, the instance's daemons and every process of
// the database server (pg_stat_activity lists its backends and its auxiliary processes).
// Unlike busyCPU it does not count what else runs on the machine, so it holds on a machine
// others share.
type cpuSample map[int]time.Duration

func sampleCPU(ctx context.Context, db *pg.DB, in *e2e.Instance) (cpuSample, error) {
	pids := []int{os.Getpid()}
	for _, p := range in.Procs() {
		if pid := p.Pid(); pid > 0 {
			pids = append(pids, pid)
		}
	}
	rows, err := db.Pool().Query(ctx, "select pid from pg_stat_activity")
	if err != nil {
		return nil, fmt.Errorf("list the server's processes: %w", err)
	}
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			return nil, err
		}
		pids = append(pids, pid)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	s := cpuSample{}
	for _, pid := range pids {
		if d, ok := processCPU(pid); ok {
			s[pid] = d
		}
	}
	return s, nil
}

// since is the CPU the processes of s used after earlier: a process that started since
// counts whole; one that ended in between is lost (the daemons and their pooled database
// sessions live through a measurement).
func (s cpuSample) since(earlier cpuSample) time.Duration {
	var d time.Duration
	for pid, t := range s {
		d += t - earlier[pid]
	}
	return d
}

// processCPU reads utime + stime of pid from /proc/<pid>/stat.
func processCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command name (field 2) may hold spaces: the fields that follow come after its ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	// Fields 14 and 15 of the line (utime, stime) are 12 and 13 after the name.
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	k, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(u+k) * 10 * time.Millisecond, true // USER_HZ is 100 on Linux
}
