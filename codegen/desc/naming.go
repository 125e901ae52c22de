package desc

import "strings"

// initialisms are the words written all in capitals in Go names, as Go style asks.
var initialisms = map[string]string{
	"id":   "ID",
	"url":  "URL",
	"uuid": "UUID",
	"sql":  "SQL",
	"json": "JSON",
	"http": "HTTP",
}

// GoName turns a snake_case name into an exported Go name: admin_url → AdminURL,
// disk_server_id → DiskServerID.
func GoName(snake string) string {
	var b strings.Builder
	for _, word := range strings.Split(snake, "_") {
		b.WriteString(capitalize(word))
	}
	return b.String()
}

// GoEnumValueName turns an enum label into the suffix of its Go constant:
// WAITSCHED → Waitsched, PREPARE_TO_GET → PrepareToGet.
func GoEnumValueName(value string) string {
	return GoName(strings.ToLower(value))
}

// GoArgName turns a function argument into a Go parameter name: the p_ prefix (there to
// keep arguments apart from columns inside PL/pgSQL) goes, the rest becomes lowerCamelCase
// (p_window_seconds → windowSeconds), and a name the generated wrapper cannot use as a
// parameter gets the suffix Arg (p_type → typeArg).
func GoArgName(name string) string {
	if rest, ok := strings.CutPrefix(name, "p_"); ok && rest != "" && isLower(rest[0]) {
		name = rest
	}
	words := strings.Split(name, "_")
	var b strings.Builder
	b.WriteString(words[0])
	for _, word := range words[1:] {
		b.WriteString(capitalize(word))
	}
	out := b.String()
	if unusableParams[out] {
		out += "Arg"
	}
	return out
}

// GoPlural is the plural of an exported Go name, for functions returning many rows:
// Subrequest → Subrequests, DiskCopy → DiskCopies, ServiceClass → ServiceClasses.
func GoPlural(name string) string {
	switch {
	case strings.HasSuffix(name, "s"), strings.HasSuffix(name, "x"), strings.HasSuffix(name, "z"),
		strings.HasSuffix(name, "ch"), strings.HasSuffix(name, "sh"):
		return name + "es"
	case len(name) >= 2 && name[len(name)-1] == 'y' && !strings.ContainsRune("aeiouAEIOU", rune(name[len(name)-2])):
		return name[:len(name)-1] + "ies"
	}
	return name + "s"
}

func capitalize(word string) string {
	if word == "" {
		return ""
	}
	if up, ok := initialisms[word]; ok {
		return up
	}
	return strings.ToUpper(word[:1]) + word[1:]
}

func isLower(c byte) bool { return 'a' <= c && c <= 'z' }

// unusableParams are the names a wrapper's parameter must not take: Go keywords,
// predeclared identifiers (a parameter called error would hide the result type), the
// packages the generated code imports, and the wrapper's own parameters and locals.
var unusableParams = func() map[string]bool {
	m := map[string]bool{}
	for _, group := range [][]string{
		{"break", "case", "chan", "const", "continue", "default", "defer", "else", "fallthrough",
			"for", "func", "go", "goto", "if", "import", "interface", "map", "package", "range",
			"return", "select", "struct", "switch", "type", "var"},
		{"any", "bool", "byte", "comparable", "complex64", "complex128", "error", "float32",
			"float64", "int", "int8", "int16", "int32", "int64", "rune", "string", "uint",
			"uint8", "uint16", "uint32", "uint64", "uintptr", "true", "false", "iota", "nil",
			"append", "cap", "clear", "close", "complex", "copy", "delete", "imag", "len",
			"make", "max", "min", "new", "panic", "print", "println", "real", "recover"},
		{"context", "json", "time", "fmt", "errors", "pgx", "pgconn", "pgtype", "pgxpool"},
		{"ctx", "db", "rows", "row", "err", "result", "zero", "r"},
	} {
		for _, name := range group {
			m[name] = true
		}
	}
	return m
}()
