package hotpatch

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// fileError names the logic file a statement failed in and, where PostgreSQL said where,
// the line and column in that file, so that an operator fixing a patch goes straight to it:
// a syntax error carries its character position in what was sent (the whole file); an
// error raised while a PL/pgSQL body runs (a DO block, a function a file calls) carries its
// line in that function's body.
func fileError(name, sql string, err error) error {
	if line, col, ok := errorLocation(sql, err); ok {
		return fmt.Errorf("logic file %s, line %d, column %d: %w", name, line, col, err)
	}
	return fmt.Errorf("logic file %s: %w", name, err)
}

// plpgsqlWhere matches PostgreSQL's context line for an error in a PL/pgSQL body.
var plpgsqlWhere = regexp.MustCompile(`PL/pgSQL function ([A-Za-z0-9_."]+)\([^)]*\) line (\d+)`)

func errorLocation(sql string, err error) (line, col int, ok bool) {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return 0, 0, false
	}
	if pe.Position > 0 {
		line, col = lineCol(sql, int(pe.Position))
		return line, col, true
	}
	m := plpgsqlWhere.FindStringSubmatch(pe.Where)
	if m == nil {
		return 0, 0, false
	}
	n, _ := strconv.Atoi(m[2])
	body, found := bodyStart(sql, strings.Trim(m[1], `"`))
	if !found {
		return 0, 0, false
	}
	// A body's line 1 is the rest of the line its opening $$ is on.
	return body + n - 1, 1, true
}

// lineCol turns a 1-based character position in s into a line and column.
func lineCol(s string, pos int) (line, col int) {
	line, col = 1, 1
	i := 0
	for _, r := range s {
		i++
		if i >= pos {
			break
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return line, col
}

// bodyStart finds the line of the $$ that opens the body of function fn (schema-qualified
// or not) in sql.
func bodyStart(sql, fn string) (int, bool) {
	if i := strings.LastIndex(fn, "."); i >= 0 {
		fn = fn[i+1:]
	}
	re, err := regexp.Compile(`(?i)function\s+(?:[a-z0-9_"]+\.)?"?` + regexp.QuoteMeta(fn) + `"?\s*\(`)
	if err != nil {
		return 0, false
	}
	loc := re.FindStringIndex(sql)
	if loc == nil {
		return 0, false
	}
	at := loc[0]
	open := strings.Index(sql[at:], "$$")
	if open < 0 {
		return 0, false
	}
	return strings.Count(sql[:at+open], "\n") + 1, true
}
