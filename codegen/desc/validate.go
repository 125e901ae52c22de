package desc

import (
	"errors"
	"fmt"
	"regexp"
)

var (
	snakeRE    = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	upperRE    = regexp.MustCompile(`^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$`)
	sqlStateRE = regexp.MustCompile(`^[0-9A-Z]{5}$`)
	fileRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*\.sql$`)
)

// maxIdentLen is PostgreSQL's NAMEDATALEN-1: longer names are silently truncated, and
// the catalogue would then disagree with the description.
const maxIdentLen = 63

// Validate checks everything code generation relies on and returns one error per
// problem, each naming its place, e.g. `tables[3].columns[2] "foo": unknown type "strin"`.
func (s *Schema) Validate() error {
	v := &validator{s: s, enums: map[string]*Enum{}, tables: map[string]bool{}, errorNames: map[string]bool{}}
	for _, e := range s.Errors {
		v.errorNames[e.Name] = true // checked where errors are; wanted by the state machines
	}
	v.enumsAndTables()
	v.errorKinds()
	v.functions()
	v.guards()
	v.histories()
	v.names()
	v.roles()
	return errors.Join(v.errs...)
}

type validator struct {
	s          *Schema
	enums      map[string]*Enum
	tables     map[string]bool
	errorNames map[string]bool
	errs       []error
}

// errorf records a problem at place; name, when not empty, is the name of the element
// there, so that the message still says which one after the file has been edited.
func (v *validator) errorf(place, name, format string, args ...any) {
	if name != "" {
		place += fmt.Sprintf(" %q", name)
	}
	v.errs = append(v.errs, fmt.Errorf("%s: %s", place, fmt.Sprintf(format, args...)))
}

// ident checks a name that PostgreSQL sees as an identifier.
func (v *validator) ident(place, name string) {
	switch {
	case !snakeRE.MatchString(name):
		v.errorf(place, name, "name is not lowercase snake_case")
	case len(name) > maxIdentLen:
		v.errorf(place, name, "name is longer than %d bytes", maxIdentLen)
	case quotedKeywords[name]:
		// format_type() and friends would print it quoted, and every generated query
		// would need to quote it too.
		v.errorf(place, name, "name is a PostgreSQL keyword that needs quoting")
	}
}

func (v *validator) doc(place, name, doc string) {
	if doc == "" {
		v.errorf(place, name, "doc is empty")
	}
}

// unique records key (what, of the element name at place) in seen and reports a second
// use of it.
func (v *validator) unique(seen map[string]string, place, name, key, what string) {
	if first, ok := seen[key]; ok {
		v.errorf(place, name, "%s is already used by %s", what, first)
		return
	}
	seen[key] = place
}

func (v *validator) enumsAndTables() {
	// Tables and enums share PostgreSQL's namespace of types: every table has a row type.
	typeNames := map[string]string{}
	for i := range v.s.Enums {
		e := &v.s.Enums[i]
		place := fmt.Sprintf("enums[%d]", i)
		v.ident(place, e.Name)
		v.unique(typeNames, place, e.Name, e.Name, "name")
		v.doc(place, e.Name, e.Doc)
		v.enumValues(place, e)
		v.enums[e.Name] = e
	}
	for i := range v.s.Tables {
		t := &v.s.Tables[i]
		place := fmt.Sprintf("tables[%d]", i)
		v.ident(place, t.Name)
		v.unique(typeNames, place, t.Name, t.Name, "name")
		v.doc(place, t.Name, t.Doc)
		if len(t.Columns) == 0 {
			v.errorf(place, t.Name, "no columns")
		}
		v.columns(place, t.Columns)
		v.tables[t.Name] = true
	}
}

func (v *validator) enumValues(place string, e *Enum) {
	if len(e.Values) == 0 {
		v.errorf(place, e.Name, "no values")
	}
	values := map[string]bool{}
	names, goNames := map[string]string{}, map[string]string{}
	for j, val := range e.Values {
		vplace := fmt.Sprintf("%s.values[%d]", place, j)
		switch {
		case !upperRE.MatchString(val.Name):
			v.errorf(vplace, val.Name, "value is not UPPER_SNAKE_CASE")
		case len(val.Name) > maxIdentLen:
			v.errorf(vplace, val.Name, "value is longer than %d bytes", maxIdentLen)
		}
		v.unique(names, vplace, val.Name, val.Name, "value")
		v.unique(goNames, vplace, val.Name, val.GoName(), "Go name "+val.GoName())
		v.doc(vplace, val.Name, val.Doc)
		values[val.Name] = true
	}
	v.transitions(place, e, values)
}

func (v *validator) columns(place string, cols []Column) {
	names, goNames := map[string]string{}, map[string]string{}
	for j, c := range cols {
		cplace := fmt.Sprintf("%s.columns[%d]", place, j)
		v.ident(cplace, c.Name)
		v.unique(names, cplace, c.Name, c.Name, "name")
		v.unique(goNames, cplace, c.Name, c.GoName(), "Go name "+c.GoName())
		v.typ(cplace, c.Name, c.Type)
	}
}

func (v *validator) typ(place, name string, t Type) {
	if t.Builtin() {
		return
	}
	if _, ok := v.enums[string(t)]; ok {
		return
	}
	if t == "" {
		v.errorf(place, name, "type is empty")
		return
	}
	v.errorf(place, name, "unknown type %q", string(t))
}

func (v *validator) errorKinds() {
	kinds := map[string]string{}
	for i, k := range v.s.ErrorKinds {
		place := fmt.Sprintf("error_kinds[%d]", i)
		if !snakeRE.MatchString(k.Name) {
			v.errorf(place, k.Name, "name is not lowercase snake_case")
		}
		v.unique(kinds, place, k.Name, k.Name, "name")
		v.doc(place, k.Name, k.Doc)
		if k.HTTP < 400 || k.HTTP > 599 {
			v.errorf(place, k.Name, "http %d is not an HTTP error status (400-599)", k.HTTP)
		}
		// 0 is success, and shells reserve codes above 125.
		if k.Exit < 1 || k.Exit > 125 {
			v.errorf(place, k.Name, "exit %d is not a failure exit code (1-125)", k.Exit)
		}
	}
	names, states := map[string]string{}, map[string]string{}
	for i, e := range v.s.Errors {
		place := fmt.Sprintf("errors[%d]", i)
		if !snakeRE.MatchString(e.Name) {
			v.errorf(place, e.Name, "name is not lowercase snake_case")
		}
		v.unique(names, place, e.Name, e.Name, "name")
		v.doc(place, e.Name, e.Doc)
		if !sqlStateRE.MatchString(e.SQLState) {
			v.errorf(place, e.Name, "sqlstate %q is not 5 characters of [0-9A-Z]", e.SQLState)
		} else {
			v.unique(states, place, e.Name, e.SQLState, "sqlstate "+e.SQLState)
		}
		if _, ok := kinds[e.Kind]; !ok {
			v.errorf(place, e.Name, "unknown error kind %q", e.Kind)
		}
	}
}

func (v *validator) functions() {
	names := map[string]string{}
	for i := range v.s.Functions {
		f := &v.s.Functions[i]
		place := fmt.Sprintf("functions[%d]", i)
		v.ident(place, f.Name)
		v.unique(names, place, f.Name, f.Name, "name")
		v.doc(place, f.Name, f.Doc)
		if !fileRE.MatchString(f.File) {
			v.errorf(place, f.Name, "file %q is not a file name ending in .sql", f.File)
		}
		argNames, goNames := map[string]string{}, map[string]string{}
		for j, a := range f.Args {
			aplace := fmt.Sprintf("%s.args[%d]", place, j)
			v.ident(aplace, a.Name)
			v.unique(argNames, aplace, a.Name, a.Name, "name")
			v.unique(goNames, aplace, a.Name, a.GoName(), "Go name "+a.GoName())
			v.typ(aplace, a.Name, a.Type)
		}
		v.returns(place+".returns", f.Returns)
	}
}

func (v *validator) returns(place string, r *Returns) {
	switch r.Form() {
	case ReturnsVoid:
	case ReturnsScalar:
		v.typ(place, "", r.Type)
	case ReturnsSetOfTable:
		switch {
		case v.tables[r.Table]:
		case v.enums[r.Table] != nil:
			v.errorf(place, "", "table %q is an enum", r.Table)
		default:
			v.errorf(place, "", "unknown table %q", r.Table)
		}
	case ReturnsSetOfColumns:
		v.columns(place, r.Columns)
	default:
		if r == nil {
			v.errorf(place, "", "missing")
			return
		}
		v.errorf(place, "", "must be exactly one of {type: void}, {type: <scalar>}, "+
			"{setof: true, table: <table>} or {setof: true, columns: [...]}")
	}
}
