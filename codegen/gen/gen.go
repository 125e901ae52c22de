// Package gen renders the files generated from a schema description: the Go packages
// model and model/wire (its pgx-free part, for clients), the generated logic files of
// schema/logic and the generated docs. It works in memory; writing the files, or
// comparing them with those on disk, is the caller's job.
package gen

import (
	"bytes"
	"embed"
	"fmt"
	"go/format"
	"regexp"
	"strings"
	"text/template"

	"github.com/pollux-storage/pollux/codegen/desc"
)

//go:embed templates/*.tmpl
var templateFS embed.FS

var templates = template.Must(template.New("").Funcs(funcs).ParseFS(templateFS, "templates/*.tmpl"))

// output is one generated file and the template that renders it.
type output struct {
	path     string
	template string
	imports  func(*data) imports
	// when, if set, says whether the description asks for this file at all.
	when func(*data) bool
}

var outputs = []output{
	{path: "model/doc_gen.go", template: "doc.go.tmpl", imports: func(*data) imports { return imports{} }},
	{path: "model/db_gen.go", template: "db.go.tmpl", imports: dbImports},
	{path: "model/enums_gen.go", template: "enums.go.tmpl", imports: enumImports},
	{path: "model/errors_gen.go", template: "errors.go.tmpl", imports: errorImports},
	{path: "model/tables_gen.go", template: "tables.go.tmpl", imports: tableImports},
	{path: "model/logic_gen.go", template: "logic.go.tmpl", imports: logicImports},
	{path: "model/names_gen.go", template: "names.go.tmpl", imports: namesImports},
	{path: "model/wire/doc_gen.go", template: "wire_doc.go.tmpl", imports: func(*data) imports { return imports{} }},
	{path: "model/wire/enums_gen.go", template: "wire_enums.go.tmpl", imports: wireEnumImports},
	{path: "model/wire/errors_gen.go", template: "wire_errors.go.tmpl", imports: func(*data) imports { return imports{} }},
	{path: "docs/schema.md", template: "schema.md.tmpl"},
	{path: "docs/statuses.md", template: "statuses.md.tmpl"},
	{path: "schema/logic/" + desc.TransitionsFile, template: "transitions.sql.tmpl"},
	{path: "schema/logic/" + desc.NamesFile, template: "names.sql.tmpl"},
	{path: "schema/logic/" + desc.GrantsFile, template: "grants.sql.tmpl", when: func(d *data) bool { return d.Roles != nil }},
}

// Render renders every generated file of s, keyed by its slash-separated path relative
// to the repository root. source is the description's path as the files' headers name
// it (e.g. schema/pollux.yaml); it should be relative, so that output is the same on
// every machine.
func Render(s *desc.Schema, source string) (map[string][]byte, error) {
	// Load has validated s already, but rendering relies on it: a hand-built or edited
	// Schema must not produce code that only fails to compile later.
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("render: %w", err)
	}
	d := newData(s, source)
	if err := d.checkGoNames(); err != nil {
		return nil, fmt.Errorf("render: %w", err)
	}
	files := make(map[string][]byte, len(outputs))
	for _, o := range outputs {
		if o.when != nil && !o.when(d) {
			continue
		}
		fd := *d
		if o.imports != nil {
			fd.Imports = o.imports(d)
		}
		var buf bytes.Buffer
		if err := templates.ExecuteTemplate(&buf, o.template, &fd); err != nil {
			return nil, fmt.Errorf("render %s: %w", o.path, err)
		}
		out := buf.Bytes()
		if strings.HasSuffix(o.path, ".go") {
			formatted, err := format.Source(out)
			if err != nil {
				return nil, fmt.Errorf("render %s: format: %w", o.path, err)
			}
			out = formatted
		} else {
			out = tidyText(out)
		}
		files[o.path] = out
	}
	return files, nil
}

var blankLines = regexp.MustCompile(`\n{3,}`)

// tidyText does for Markdown and SQL what go/format does for Go, so that the template can
// be written for reading rather than for exact blank lines.
func tidyText(b []byte) []byte {
	b = blankLines.ReplaceAll(b, []byte("\n\n"))
	return append(bytes.TrimRight(b, "\n"), '\n')
}
