package schema_test

import (
	"context"
	"go/scanner"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/codegen/desc"
	"github.com/pollux-storage/pollux/model"
	"github.com/pollux-storage/pollux/schema"
	"github.com/pollux-storage/pollux/schema/schematest"
)

// TestGeneratedNamesAgree checks the names of schema/logic/names_gen.sql, as installed,
// against their Go constants: both come from the description, and this is where the two
// generated sides meet.
func TestGeneratedNamesAgree(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := schematest.DB(t)
	for _, typ := range model.RequestTypeValues() {
		var family, channel string
		require.NoError(t, db.Pool().QueryRow(ctx, "select pollux_family($1), pollux_channel_subrequest_new($1)", typ).Scan(&family, &channel))
		require.Equal(t, string(typ.Family()), family, "family of %s", typ)
		require.Equal(t, model.ChannelSubrequestNew(typ.Family()), channel, "channel of %s", typ)
		require.Contains(t, typ.Family().RequestTypes(), typ)
	}
	var families []string
	require.NoError(t, db.Pool().QueryRow(ctx, "select pollux_families()").Scan(&families))
	require.Equal(t, labels(model.Families()), families)
	for fn, want := range map[string]string{
		"pollux_channel_request_changed": model.ChannelRequestChanged,
	} {
		var got string
		require.NoError(t, db.Pool().QueryRow(ctx, "select "+fn+"()").Scan(&got))
		require.Equal(t, want, got, fn)
	}
}

// TestNamesAreNotSpelledByHand fails when a Go or SQL file other than a generated one
// spells a NOTIFY channel of the description in a string literal (comments may name
// them): a channel written by hand on one side is how a listener ends up waiting on a
// channel nobody notifies. Use model.Channel* in Go and pollux_channel_*() in SQL.
func TestNamesAreNotSpelledByHand(t *testing.T) {
	t.Parallel()
	s, err := desc.Load(schema.Description)
	require.NoError(t, err)
	require.NotEmpty(t, s.Channels)
	patterns := map[string]*regexp.Regexp{}
	for _, c := range s.Channels {
		if c.PerFamily {
			// The stem followed by "_" catches both a whole name and one put together
			// from the stem and a family.
			patterns[c.GoName()] = regexp.MustCompile(`\b` + c.Name + `_`)
		} else {
			patterns[c.GoName()] = regexp.MustCompile(`\b` + c.Name + `\b`)
		}
	}

	root := ".."
	found := map[string][]string{} // file → Go names of the channels it spells
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			switch rel {
			case ".git", "var", "codegen/testdata":
				return filepath.SkipDir
			}
			return nil
		}
		var literals func([]byte) []string
		switch filepath.Ext(path) {
		case ".go":
			literals = goLiterals
		case ".sql":
			literals = sqlLiterals
		default:
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if generatedHeader.Match(b) {
			return nil
		}
		for _, lit := range literals(b) {
			for name, re := range patterns {
				if re.MatchString(lit) && !slices.Contains(found[rel], name) {
					found[rel] = append(found[rel], name)
				}
			}
		}
		return nil
	})
	require.NoError(t, err)
	for file, names := range found {
		slices.Sort(names)
		require.Empty(t, names, "%s spells channel names by hand in string literals: use model.Channel* (Go) or pollux_channel_*() (SQL)", file)
	}
}

// generatedHeader is Go's convention for a generated file's first line, in Go or SQL.
var generatedHeader = regexp.MustCompile(`^(//|--) Code generated .* DO NOT EDIT\.\n`)

// goLiterals returns the values of the string literals of a Go file.
func goLiterals(src []byte) []string {
	var s scanner.Scanner
	fset := token.NewFileSet()
	s.Init(fset.AddFile("", fset.Base(), len(src)), src, nil, 0)
	var out []string
	for {
		_, tok, lit := s.Scan()
		if tok == token.EOF {
			return out
		}
		if tok == token.STRING {
			if v, err := strconv.Unquote(lit); err == nil {
				out = append(out, v)
			}
		}
	}
}

// sqlLiterals returns the contents of the single-quoted literals of a SQL file, outside
// comments; dollar-quoted function bodies are read through, so that the literals inside
// them count.
func sqlLiterals(src []byte) []string {
	var out []string
	text := string(src)
	for i := 0; i < len(text); i++ {
		switch {
		case strings.HasPrefix(text[i:], "--"):
			end := strings.IndexByte(text[i:], '\n')
			if end < 0 {
				return out
			}
			i += end
		case strings.HasPrefix(text[i:], "/*"):
			end := strings.Index(text[i:], "*/")
			if end < 0 {
				return out
			}
			i += end + 1
		case text[i] == '\'':
			var lit strings.Builder
			j := i + 1
			for ; j < len(text); j++ {
				if text[j] == '\'' {
					if j+1 < len(text) && text[j+1] == '\'' {
						lit.WriteByte('\'')
						j++
						continue
					}
					break
				}
				lit.WriteByte(text[j])
			}
			out = append(out, lit.String())
			i = j
		}
	}
	return out
}

func TestSQLLiterals(t *testing.T) {
	t.Parallel()
	sql := `-- NOTIFY 'not_me' in a comment
/* nor 'me' */ SELECT 'a', 'it''s', 'x -- y' $$ BEGIN PERFORM pg_notify('inside', ''); END $$`
	require.Equal(t, []string{"a", "it's", "x -- y", "inside", ""}, sqlLiterals([]byte(sql)))
}
