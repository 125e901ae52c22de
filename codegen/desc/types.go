package desc

import "strings"

// Type is a PostgreSQL type as the description spells it: one of the builtin names
// (bigint, integer, text, boolean, timestamptz, uuid, jsonb, double precision, bytea,
// text[], bigint[]) or the name of an enum of the description.
type Type string

// builtin is what Pollux knows of a builtin type.
type builtin struct {
	pg     string // format_type() spelling
	goType string
	// nilable Go types already have a NULL (nil), so a nullable column keeps the type
	// instead of becoming a pointer to it.
	nilable  bool
	goImport string
}

var builtins = map[Type]builtin{
	"bigint":           {pg: "bigint", goType: "int64"},
	"integer":          {pg: "integer", goType: "int32"},
	"text":             {pg: "text", goType: "string"},
	"boolean":          {pg: "boolean", goType: "bool"},
	"timestamptz":      {pg: "timestamp with time zone", goType: "time.Time", goImport: "time"},
	"uuid":             {pg: "uuid", goType: "string"},
	"jsonb":            {pg: "jsonb", goType: "json.RawMessage", nilable: true, goImport: "encoding/json"},
	"double precision": {pg: "double precision", goType: "float64"},
	"bytea":            {pg: "bytea", goType: "[]byte", nilable: true},
	"text[]":           {pg: "text[]", goType: "[]string", nilable: true},
	"bigint[]":         {pg: "bigint[]", goType: "[]int64", nilable: true},
}

// Builtin reports whether t is a builtin type rather than an enum.
func (t Type) Builtin() bool {
	_, ok := builtins[t]
	return ok
}

// PG is t as PostgreSQL's format_type() prints it, so that it compares equal with the
// catalogue. Enum names print unchanged: Validate rejects names that would need quoting.
func (t Type) PG() string {
	if b, ok := builtins[t]; ok {
		return b.pg
	}
	return string(t)
}

// Go is the Go type that holds a value of t; a nullable value becomes a pointer unless
// the Go type has its own nil.
func (t Type) Go(nullable bool) string {
	b, ok := builtins[t]
	if !ok {
		b = builtin{goType: GoName(string(t))}
	}
	if nullable && !b.nilable {
		return "*" + b.goType
	}
	return b.goType
}

// GoImport is the import path the Go type of t needs, or "" when it needs none.
func (t Type) GoImport() string {
	return builtins[t].goImport
}

// PGType is the column's type as format_type() prints it.
func (c Column) PGType() string { return c.Type.PG() }

// GoType is the Go type of the column's struct field.
func (c Column) GoType() string { return c.Type.Go(c.Nullable) }

// GoName is the column's struct field name.
func (c Column) GoName() string { return GoName(c.Name) }

// PGType is the argument's type as format_type() prints it.
func (a Arg) PGType() string { return a.Type.PG() }

// GoType is the Go type of the argument's parameter.
func (a Arg) GoType() string { return a.Type.Go(a.Nullable) }

// GoName is the argument's Go parameter name.
func (a Arg) GoName() string { return GoArgName(a.Name) }

// GoName is the Go name of the enum's type.
func (e Enum) GoName() string { return GoName(e.Name) }

// GoName is the Go name of the table's row struct.
func (t Table) GoName() string { return GoName(t.Name) }

// GoName is the Go name of the function's wrapper.
func (f Function) GoName() string { return GoName(f.Name) }

// GoName is the value's name without its enum's prefix, e.g. PrepareToGet.
func (v EnumValue) GoName() string { return GoEnumValueName(v.Name) }

// IdentityArgs is the function's argument list as pg_get_function_identity_arguments()
// prints it, e.g. "p_id uuid, p_role text".
func (f Function) IdentityArgs() string {
	parts := make([]string, len(f.Args))
	for i, a := range f.Args {
		parts[i] = a.Name + " " + a.PGType()
	}
	return strings.Join(parts, ", ")
}

// Result is the function's result type as pg_get_function_result() prints it: "void",
// "bigint", "SETOF system_event" or "TABLE(id uuid, ...)".
func (f Function) Result() string {
	r := f.Returns
	switch r.Form() {
	case ReturnsVoid, ReturnsScalar:
		return r.Type.PG()
	case ReturnsSetOfTable:
		return "SETOF " + r.Table
	case ReturnsSetOfColumns:
		parts := make([]string, len(r.Columns))
		for i, c := range r.Columns {
			parts[i] = c.Name + " " + c.PGType()
		}
		return "TABLE(" + strings.Join(parts, ", ") + ")"
	}
	return ""
}
