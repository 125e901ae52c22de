package gen

import (
	"strconv"
	"strings"
	"text/template"
)

var funcs = template.FuncMap{
	"quote":      strconv.Quote,
	"comment":    comment,
	"sqlcomment": sqlComment,
	"cell":       cell,
	"sqlquote":   sqlQuote,
	"familyList": familyList,
}

// familyList describes the families for a comment: "put (PUT), get (GET, PREPARE_TO_GET)".
func familyList(families []familyData) string {
	parts := make([]string, len(families))
	for i, f := range families {
		parts[i] = f.Name + " (" + strings.Join(f.Types, ", ") + ")"
	}
	return strings.Join(parts, ", ")
}

// sqlQuote makes text a SQL string literal.
func sqlQuote(text string) string { return "'" + strings.ReplaceAll(text, "'", "''") + "'" }

// commentWidth is where comment lines wrap, so that generated doc comments read like
// hand-written ones however long the description's docs are.
const commentWidth = 90

// comment renders paragraphs as a Go comment, wrapped, with an empty comment line
// between paragraphs; the template places it at the right indentation.
func comment(paragraphs ...string) string { return wrap("//", paragraphs) }

// sqlComment renders paragraphs as a SQL comment, as comment does for Go.
func sqlComment(paragraphs ...string) string { return wrap("--", paragraphs) }

func wrap(mark string, paragraphs []string) string {
	var lines []string
	for _, p := range paragraphs {
		words := strings.Fields(p)
		if len(words) == 0 {
			continue
		}
		if len(lines) > 0 {
			lines = append(lines, mark)
		}
		line := mark
		for _, w := range words {
			if len(line) > len(mark) && len(line)+1+len(w) > commentWidth {
				lines = append(lines, line)
				line = mark
			}
			line += " " + w
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}

// cell makes text fit in one cell of a Markdown table.
func cell(text string) string {
	text = strings.Join(strings.Fields(text), " ")
	return strings.ReplaceAll(text, "|", `\|`)
}
