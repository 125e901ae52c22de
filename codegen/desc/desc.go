// Package desc reads the Pollux schema description (schema/pollux.yaml): it decodes it
// strictly, validates it, and answers the questions code generation and the catalogue
// check ask of it (PostgreSQL spellings, Go names and Go types).
package desc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"
)

// Schema is the whole description: everything Go relies on in the database.
type Schema struct {
	Enums      []Enum      `yaml:"enums"`
	ErrorKinds []ErrorKind `yaml:"error_kinds"`
	Errors     []Error     `yaml:"errors"`
	Tables     []Table     `yaml:"tables"`
	Functions  []Function  `yaml:"functions"`
	// Families and Channels are names SQL and Go must spell alike, declared once here.
	Families []Family  `yaml:"families"`
	Channels []Channel `yaml:"channels"`
	// Roles are the database roles the functions' callers connect as; with them, every
	// function says who may call it (Function.Callers) and codegen writes the grants.
	Roles *Roles `yaml:"database_roles"`
}

// Enum is a PostgreSQL enum type, with an optional state machine over its values.
type Enum struct {
	Name   string      `yaml:"name"`
	Doc    string      `yaml:"doc"`
	Values []EnumValue `yaml:"values"`
	// Initial is the value a new row must have; required with Transitions, and only
	// with them.
	Initial string `yaml:"initial"`
	// Transitions are the changes of value the database allows (see Guards); a value
	// may always stay what it is.
	Transitions []Transition `yaml:"transitions"`
}

// EnumValue is one label of an enum.
type EnumValue struct {
	Name string `yaml:"name"`
	Doc  string `yaml:"doc"`
}

// Transition is one allowed change of state between two values of an enum.
type Transition struct {
	From string `yaml:"from"`
	To   string `yaml:"to"`
	By   string `yaml:"by"`
	Doc  string `yaml:"doc"`
}

// ErrorKind is how a failure is shown to a user: an HTTP status and a client exit code.
type ErrorKind struct {
	Name string `yaml:"name"`
	HTTP int    `yaml:"http"`
	Exit int    `yaml:"exit"`
	Doc  string `yaml:"doc"`
}

// Error is a user-facing failure that the logic raises with its own SQLSTATE.
type Error struct {
	Name     string `yaml:"name"`
	SQLState string `yaml:"sqlstate"`
	Kind     string `yaml:"kind"`
	Doc      string `yaml:"doc"`
}

// Table is a table whose rows Go reads.
type Table struct {
	Name    string   `yaml:"name"`
	Doc     string   `yaml:"doc"`
	Columns []Column `yaml:"columns"`
	// History, when set, has the database log every change of one guarded column of this
	// table into another table (see Histories).
	History *History `yaml:"history"`
}

// History declares the log of a state machine: one row per change of Column (and one for
// each new row), written by a generated trigger into Table, which must have the columns
// <Column's table>_id, from_<Column> (nullable: NULL for a new row), to_<Column>, at,
// daemon, instance_id, host and reason, plus every column named in Copy.
type History struct {
	// Table is the log table; its own enum columns are records, so it is never guarded.
	Table string `yaml:"table"`
	// Column is the guarded column whose changes are logged.
	Column string `yaml:"column"`
	// Copy are columns of the row copied into the log under the same name (e.g.
	// request_id, so that one request's story is read by one index).
	Copy []string `yaml:"copy"`
	// Reason are text columns of the row; the first that is not empty is the change's
	// reason unless the transaction set pollux.reason (SET LOCAL or set_config).
	Reason []string `yaml:"reason"`
}

// Column is a column of a table or of a function's result.
type Column struct {
	Name     string `yaml:"name"`
	Type     Type   `yaml:"type"`
	Nullable bool   `yaml:"nullable"`
	Doc      string `yaml:"doc"`
}

// Arg is an argument of a logic function.
type Arg struct {
	Name     string `yaml:"name"`
	Type     Type   `yaml:"type"`
	Nullable bool   `yaml:"nullable"`
}

// Function is a SQL logic function that Go calls.
type Function struct {
	Name    string   `yaml:"name"`
	File    string   `yaml:"file"`
	Doc     string   `yaml:"doc"`
	Args    []Arg    `yaml:"args"`
	Returns *Returns `yaml:"returns"`
	// Callers are the roles (Roles.Daemons, or Roles.Owner alone) that may EXECUTE it.
	Callers []string `yaml:"callers"`
}

// Returns is what a function returns; Validate checks that exactly one of its forms is used.
type Returns struct {
	// Type is set for a function returning void or a single scalar.
	Type Type `yaml:"type"`
	// Nullable says that a scalar may be NULL (a pointer in Go unless the type has nil).
	Nullable bool `yaml:"nullable"`
	// SetOf is set for a function returning rows, described by Table or Columns.
	SetOf   bool     `yaml:"setof"`
	Table   string   `yaml:"table"`
	Columns []Column `yaml:"columns"`
}

// ReturnForm tells apart the shapes a function's result may take.
type ReturnForm int

const (
	// ReturnsInvalid is a Returns that matches none of the forms below.
	ReturnsInvalid ReturnForm = iota
	// ReturnsVoid is `{type: void}`.
	ReturnsVoid
	// ReturnsScalar is `{type: <scalar>}`.
	ReturnsScalar
	// ReturnsSetOfTable is `{setof: true, table: <table>}`.
	ReturnsSetOfTable
	// ReturnsSetOfColumns is `{setof: true, columns: [...]}`, a RETURNS TABLE(...) function.
	ReturnsSetOfColumns
)

// Form classifies r by its fields alone; Validate reports the forms it rejects.
func (r *Returns) Form() ReturnForm {
	switch {
	case r == nil:
		return ReturnsInvalid
	case !r.SetOf && r.Table == "" && r.Columns == nil && r.Type == "void" && !r.Nullable:
		return ReturnsVoid
	case !r.SetOf && r.Table == "" && r.Columns == nil && r.Type != "":
		return ReturnsScalar
	case r.SetOf && r.Type == "" && r.Table != "" && r.Columns == nil && !r.Nullable:
		return ReturnsSetOfTable
	case r.SetOf && r.Type == "" && r.Table == "" && len(r.Columns) > 0 && !r.Nullable:
		return ReturnsSetOfColumns
	}
	return ReturnsInvalid
}

// Load decodes a description strictly (unknown keys, a second document and an empty
// input are errors) and validates it.
func Load(data []byte) (*Schema, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var s Schema
	if err := dec.Decode(&s); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("decode schema: empty document")
		}
		return nil, fmt.Errorf("decode schema: %w", err)
	}
	// A stray second document would otherwise be ignored without a word.
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("decode schema: more than one YAML document")
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("validate schema: %w", err)
	}
	return &s, nil
}

// LoadFile reads and loads the description at path.
func LoadFile(path string) (*Schema, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load schema: %w", err)
	}
	s, err := Load(data)
	if err != nil {
		return nil, fmt.Errorf("load schema %s: %w", path, err)
	}
	return s, nil
}

// Enum returns the enum called name.
func (s *Schema) Enum(name string) (*Enum, bool) {
	for i := range s.Enums {
		if s.Enums[i].Name == name {
			return &s.Enums[i], true
		}
	}
	return nil, false
}

// Table returns the table called name.
func (s *Schema) Table(name string) (*Table, bool) {
	for i := range s.Tables {
		if s.Tables[i].Name == name {
			return &s.Tables[i], true
		}
	}
	return nil, false
}

// Column returns the column of t called name.
func (t *Table) Column(name string) (*Column, bool) {
	for i := range t.Columns {
		if t.Columns[i].Name == name {
			return &t.Columns[i], true
		}
	}
	return nil, false
}
