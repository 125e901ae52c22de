package schema_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"golang.org/x/text/unicode/norm"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/framework/uuid"
	"github.com/pollux-storage/pollux/model"
	"github.com/pollux-storage/pollux/schema/schematest"
)

// pathProblems asks namespace_path_problem about every path at once: "" where it is valid.
func pathProblems(t *testing.T, db *pg.DB, paths []string) []string {
	t.Helper()
	rows, err := db.Pool().Query(context.Background(),
		`select coalesce(namespace_path_problem(p), '') from unnest($1::text[]) with ordinality as x(p, n) order by n`, paths)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Len(t, out, len(paths))
	return out
}

// refusedRune says whether a name may not hold r, as Go's Unicode tables see it: the
// policy namespace_path_problem states in its comment. TestPathCharacters holds the SQL
// to it.
func refusedRune(r rune) bool {
	return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp) || r == utf8.RuneError
}

// TestPathCharacters checks namespace_path_problem against Go's Unicode tables: every
// control character, invisible formatting character, line or paragraph separator and
// U+FFFD is refused with its code point named, and every other assigned letter, mark,
// number, punctuation, symbol or space is accepted in an NFC path. A Unicode upgrade that
// adds a formatting character fails here until the SQL's list has it.
func TestPathCharacters(t *testing.T) {
	t.Parallel()
	db := schematest.DB(t)
	var refused []rune
	for _, tab := range []*unicode.RangeTable{unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp} {
		for r := rune(1); r <= unicode.MaxRune; r++ {
			if unicode.Is(tab, r) {
				refused = append(refused, r)
			}
		}
	}
	refused = append(refused, utf8.RuneError)
	paths := make([]string, len(refused))
	for i, r := range refused {
		paths[i] = "/pollux/a" + string(r) + "b"
	}
	for i, p := range pathProblems(t, db, paths) {
		require.Contains(t, p, fmt.Sprintf("U+%04X at character 10", refused[i]), "namespace_path_problem of /pollux/a<U+%04X>b", refused[i])
	}

	var accepted []string
	var runes []rune
	for r := rune(' '); r <= unicode.MaxRune; r++ {
		if r == '/' || refusedRune(r) || !unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Zs) {
			continue
		}
		// After "x", so that a combining mark has something to combine with; NFC, as rhd
		// writes it.
		accepted = append(accepted, norm.NFC.String("/pollux/x"+string(r)))
		runes = append(runes, r)
	}
	for i, p := range pathProblems(t, db, accepted) {
		require.Empty(t, p, "namespace_path_problem of /pollux/x<U+%04X>", runes[i])
	}
}

// TestPathNormalForm checks that the SQL refuses a path that is not NFC, whoever calls it,
// and that a request naming one is refused whole and stores nothing.
func TestPathNormalForm(t *testing.T) {
	t.Parallel()
	db := schematest.DB(t)
	nfd, nfc := "/pollux/cafe\u0301", "/pollux/caf\u00e9"
	got := pathProblems(t, db, []string{nfd, nfc, "/pollux/\u1100\u1161"})
	require.Contains(t, got[0], "not in Unicode normal form NFC")
	require.Empty(t, got[1])
	require.Contains(t, got[2], "not in Unicode normal form NFC", "conjoining jamo compose to a syllable in NFC")

	ctx := context.Background()
	_, err := model.RequestSubmit(ctx, db.Pool(), uuid.New(), model.RequestTypePut, "default", "alice", "", "test", []string{nfc, nfd}, false, nil, nil)
	require.Error(t, err)
	require.Equal(t, "PX002", pg.SQLState(err))
	require.Contains(t, pg.ServerMessage(err), "not in Unicode normal form NFC")
	var n int
	require.NoError(t, db.Pool().QueryRow(ctx, `select (select count(*) from request) + (select count(*) from subrequest)`).Scan(&n))
	require.Zero(t, n, "a refused request leaves nothing behind")
}

// FuzzPathProblem calls request_submit and namespace_path_problem with arbitrary paths, as
// rhd would pass them on (valid UTF-8 without NUL: rhd refuses the rest, see its
// FuzzCleanPath), and checks that the SQL never fails other than with invalid_argument
// (PX002) carrying namespace_path_problem's message, and that it agrees with Go's Unicode
// tables: what it accepts holds no refused character and is NFC, and an NFC path of
// allowed characters in a well-formed place is accepted.
func FuzzPathProblem(f *testing.F) {
	for _, s := range []string{"/pollux/u/f", "/pollux/caf\u00e9", "/pollux/cafe\u0301", "/pollux/a\x07", "/pollux/\u202efdp.exe",
		"/pollux/../etc", "/etc/passwd", "relative", "/pollux/a//b", "/pollux/\ufffd", "/pollux/\U000e0041", "/pollux/" + strings.Repeat("x", 1020)} {
		f.Add(s)
	}
	db := schematest.DB(f)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, path string) {
		if !utf8.ValidString(path) || strings.IndexByte(path, 0) >= 0 {
			return // never reaches the database: rhd refuses it (FuzzCleanPath)
		}
		var problem string
		var submitErr error
		// Rolled back: the fuzzer runs this thousands of times on one database.
		err := pgx.BeginFunc(ctx, db.Pool(), func(tx pgx.Tx) error {
			if err := tx.QueryRow(ctx, `select coalesce(namespace_path_problem($1), '')`, path).Scan(&problem); err != nil {
				return err
			}
			_, submitErr = model.RequestSubmit(ctx, tx, uuid.New(), model.RequestTypePut, "default", "alice", "", "test", []string{path}, false, nil, nil)
			return errRollback
		})
		require.ErrorIs(t, err, errRollback)
		if problem == "" {
			require.NoError(t, submitErr, "request_submit of %q", path)
			for _, r := range path {
				require.False(t, refusedRune(r), "accepted %q holding U+%04X", path, r)
			}
			require.True(t, norm.NFC.IsNormalString(path), "accepted %q, which is not NFC", path)
			require.True(t, strings.HasPrefix(path, "/pollux/"), "accepted %q outside the namespace", path)
			return
		}
		require.Error(t, submitErr, "request_submit accepted %q: %s", path, problem)
		require.Equal(t, "PX002", pg.SQLState(submitErr), "request_submit of %q: %v", path, submitErr)
		require.Equal(t, problem, pg.ServerMessage(submitErr))
		if wellFormed(path) {
			t.Fatalf("refused the well-formed path %q: %s", path, problem)
		}
	})
}

var errRollback = fmt.Errorf("rollback")

// wellFormed is the path rule as Go sees it: under /pollux/, no empty, "." or ".."
// component, at most 1023 bytes, NFC, and no refused character.
func wellFormed(path string) bool {
	if len(path) > 1023 || !strings.HasPrefix(path, "/pollux/") || !norm.NFC.IsNormalString(path) {
		return false
	}
	for _, c := range strings.Split(path[1:], "/") {
		if c == "" || c == "." || c == ".." {
			return false
		}
	}
	for _, r := range path {
		if refusedRune(r) {
			return false
		}
	}
	return true
}
