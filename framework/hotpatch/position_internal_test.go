package hotpatch

import (
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
)

func TestErrorLocation(t *testing.T) {
	sql := "select 1;\n\nCREATE OR REPLACE FUNCTION app.f(p int) RETURNS int LANGUAGE plpgsql AS $$\nDECLARE x int;\nBEGIN\n  x := g(p);\n  RETURN x;\nEND;\n$$;\n"
	for _, tc := range []struct {
		name      string
		err       error
		line, col int
		ok        bool
	}{
		{"a position in the file", &pgconn.PgError{Position: 11}, 2, 1, true},
		{"a position within a line", &pgconn.PgError{Position: 3}, 1, 3, true},
		{"a line in a PL/pgSQL body", &pgconn.PgError{Where: "PL/pgSQL function app.f(integer) line 4 at assignment"}, 6, 1, true},
		{"a function this file does not define", &pgconn.PgError{Where: "PL/pgSQL function other(integer) line 3 at assignment"}, 0, 0, false},
		{"no location", &pgconn.PgError{}, 0, 0, false},
		{"not from the server", errors.New("conn closed"), 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line, col, ok := errorLocation(sql, tc.err)
			require.Equal(t, tc.ok, ok)
			require.Equal(t, tc.line, line)
			require.Equal(t, tc.col, col)
		})
	}
	line, col := lineCol("é\nxy", 4)
	require.Equal(t, 2, line)
	require.Equal(t, 2, col, "positions count characters, not bytes")
}
