package desc_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/codegen/desc"
)

func TestGoName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"admin_url":      "AdminURL",
		"disk_server_id": "DiskServerID",
		"id":             "ID",
		"request_type":   "RequestType",
		"owner_uuid":     "OwnerUUID",
		"http_json_sql":  "HTTPJSONSQL",
		"identity":       "Identity", // an initialism only as a whole word
		"a1_b2":          "A1B2",
	} {
		require.Equal(t, want, desc.GoName(in), in)
	}
}

func TestGoEnumValueName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"WAITSCHED":      "Waitsched",
		"PREPARE_TO_GET": "PrepareToGet",
		"HTTP_PUSH":      "HTTPPush",
		"RM":             "Rm",
	} {
		require.Equal(t, want, desc.GoEnumValueName(in), in)
	}
}

func TestGoArgName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"p_window_seconds": "windowSeconds",
		"p_id":             "id",
		"p_admin_url":      "adminURL",
		"p_instance_id":    "instanceID",
		"url_id":           "urlID", // no prefix to strip
		"p_2":              "p2",    // stripping would leave no identifier
		"p_type":           "typeArg",
		"p_error":          "errorArg",
		"p_db":             "dbArg",
		"p_time":           "timeArg",
	} {
		require.Equal(t, want, desc.GoArgName(in), in)
	}
}

func TestGoPlural(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"Subrequest":   "Subrequests",
		"DiskCopy":     "DiskCopies",
		"ServiceClass": "ServiceClasses",
		"Key":          "Keys",
		"Box":          "Boxes",
		"Batch":        "Batches",
	} {
		require.Equal(t, want, desc.GoPlural(in), in)
	}
}

func TestTypes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		typ                  desc.Type
		pg, goType, nullable string
		goImport             string
	}{
		{"bigint", "bigint", "int64", "*int64", ""},
		{"integer", "integer", "int32", "*int32", ""},
		{"text", "text", "string", "*string", ""},
		{"boolean", "boolean", "bool", "*bool", ""},
		{"timestamptz", "timestamp with time zone", "time.Time", "*time.Time", "time"},
		{"uuid", "uuid", "string", "*string", ""},
		{"jsonb", "jsonb", "json.RawMessage", "json.RawMessage", "encoding/json"},
		{"double precision", "double precision", "float64", "*float64", ""},
		{"bytea", "bytea", "[]byte", "[]byte", ""},
		{"text[]", "text[]", "[]string", "[]string", ""},
		{"bigint[]", "bigint[]", "[]int64", "[]int64", ""},
		{"subrequest_status", "subrequest_status", "SubrequestStatus", "*SubrequestStatus", ""},
	}
	for _, tt := range tests {
		t.Run(string(tt.typ), func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.pg, tt.typ.PG())
			require.Equal(t, tt.goType, tt.typ.Go(false))
			require.Equal(t, tt.nullable, tt.typ.Go(true))
			require.Equal(t, tt.goImport, tt.typ.GoImport())
			require.Equal(t, tt.pg, desc.Column{Type: tt.typ}.PGType())
			require.Equal(t, tt.nullable, desc.Arg{Type: tt.typ, Nullable: true}.GoType())
		})
	}
}

func TestFunctionSignature(t *testing.T) {
	t.Parallel()
	args := []desc.Arg{{Name: "p_id", Type: "uuid"}, {Name: "p_role", Type: "text"}}
	tests := []struct {
		name         string
		fn           desc.Function
		identityArgs string
		result       string
	}{
		{
			name:         "void",
			fn:           desc.Function{Args: args, Returns: &desc.Returns{Type: "void"}},
			identityArgs: "p_id uuid, p_role text",
			result:       "void",
		},
		{
			name:   "scalar",
			fn:     desc.Function{Args: []desc.Arg{{Name: "p_at", Type: "timestamptz", Nullable: true}}, Returns: &desc.Returns{Type: "bigint"}},
			result: "bigint", identityArgs: "p_at timestamp with time zone",
		},
		{
			name:   "setof table",
			fn:     desc.Function{Returns: &desc.Returns{SetOf: true, Table: "system_event"}},
			result: "SETOF system_event",
		},
		{
			name: "setof columns",
			fn: desc.Function{Args: args[:1], Returns: &desc.Returns{SetOf: true, Columns: []desc.Column{
				{Name: "id", Type: "uuid"}, {Name: "role", Type: "text"},
				{Name: "heartbeat_age_seconds", Type: "double precision"},
				{Name: "stopped_at", Type: "timestamptz", Nullable: true},
			}}},
			identityArgs: "p_id uuid",
			result:       "TABLE(id uuid, role text, heartbeat_age_seconds double precision, stopped_at timestamp with time zone)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.identityArgs, tt.fn.IdentityArgs())
			require.Equal(t, tt.result, tt.fn.Result())
		})
	}
}

func TestLoadFileSample(t *testing.T) {
	t.Parallel()
	s, err := desc.LoadFile(filepath.Join("..", "testdata", "sample", "schema.yaml"))
	require.NoError(t, err)
	require.Len(t, s.Enums, 3)
	require.Len(t, s.Families, 2)
	require.Len(t, s.Channels, 2)
	require.Len(t, s.Tables, 3)
	require.Len(t, s.Functions, 4)
	job, ok := s.Table("job")
	require.True(t, ok)
	require.Equal(t, "One unit of work.\nJobs are never deleted, only archived.\n", job.Doc)
	_, ok = s.Enum("job_state")
	require.True(t, ok)
	forms := make([]desc.ReturnForm, len(s.Functions))
	for i, f := range s.Functions {
		forms[i] = f.Returns.Form()
	}
	require.Equal(t, []desc.ReturnForm{desc.ReturnsVoid, desc.ReturnsScalar, desc.ReturnsSetOfTable, desc.ReturnsSetOfColumns}, forms)
}

func TestLoadFileMissing(t *testing.T) {
	t.Parallel()
	_, err := desc.LoadFile(filepath.Join(t.TempDir(), "none.yaml"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

// valid is the smallest description with one of everything; each case of TestLoadErrors
// breaks one thing in it.
const valid = `
enums:
  - name: state
    doc: A state.
    values:
      - {name: NEW, doc: "New."}
      - {name: OLD, doc: "Old."}
    initial: NEW
    transitions:
      - {from: NEW, to: OLD, by: someone, doc: "it aged"}
error_kinds:
  - {name: not_found, http: 404, exit: 1, doc: "Not found."}
errors:
  - {name: no_thing, sqlstate: PX001, kind: not_found, doc: "No such thing."}
  - {name: invalid_transition, sqlstate: PX008, kind: not_found, doc: "Not allowed."}
tables:
  - name: thing
    doc: A thing.
    columns:
      - {name: id, type: bigint}
      - {name: state, type: state, nullable: true}
      - {name: phase, type: state}
      - {name: note, type: text}
    history: {table: thing_change, column: phase, copy: [note], reason: [note]}
  - name: thing_change
    doc: A change of a thing's phase.
    columns:
      - {name: id, type: bigint}
      - {name: thing_id, type: bigint}
      - {name: from_phase, type: state, nullable: true}
      - {name: to_phase, type: state}
      - {name: note, type: text}
      - {name: at, type: timestamptz}
      - {name: daemon, type: text}
      - {name: instance_id, type: uuid, nullable: true}
      - {name: host, type: text}
      - {name: reason, type: text}
functions:
  - name: thing_list
    file: thing.sql
    doc: Lists things.
    args:
      - {name: p_limit, type: integer}
    returns: {setof: true, table: thing}
`

func TestLoadValid(t *testing.T) {
	t.Parallel()
	s, err := desc.Load([]byte(valid))
	require.NoError(t, err)
	require.Equal(t, "SETOF thing", s.Functions[0].Result())
}

func TestGuards(t *testing.T) {
	t.Parallel()
	s, err := desc.Load([]byte(valid))
	require.NoError(t, err)
	guards := s.Guards()
	require.Len(t, guards, 1, "the nullable column of the same enum is not guarded")
	g := guards[0]
	require.Equal(t, "thing", g.Table)
	require.Equal(t, "phase", g.Column)
	require.Equal(t, "state", g.Enum.Name)
	require.Equal(t, "thing_phase_transition_check", g.Function)
	require.Equal(t, "thing_phase_initial", g.InsertTrigger)
	require.Equal(t, "thing_phase_transition", g.UpdateTrigger)
	require.Equal(t, []string{"OLD"}, g.Enum.Next("NEW"))
	require.True(t, g.Enum.Final("OLD"))
}

func TestHistories(t *testing.T) {
	t.Parallel()
	s, err := desc.Load([]byte(valid))
	require.NoError(t, err)
	for _, g := range s.Guards() {
		require.NotEqual(t, "thing_change", g.Table, "a log table is never guarded")
	}
	hs := s.Histories()
	require.Len(t, hs, 1)
	h := hs[0]
	require.Equal(t, "thing", h.Source)
	require.Equal(t, "thing_change", h.Table)
	require.Equal(t, "thing_id", h.KeyColumn)
	require.Equal(t, "thing_phase_history_record", h.Function)
	require.Equal(t, "thing_phase_history_insert", h.InsertTrigger)
	require.Equal(t, "thing_phase_history_update", h.UpdateTrigger)
	var generated []string
	for _, sig := range s.GeneratedSignatures() {
		generated = append(generated, sig.Name)
	}
	require.Contains(t, generated, "thing_phase_history_record")
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		old, new string // replaced once in valid
		want     string
	}{
		{"unknown key", "{name: id, type: bigint}", "{name: id, type: bigint, colour: red}", "field colour not found"},
		{"unknown top-level key", "error_kinds:", "views: []\nerror_kinds:", "field views not found"},
		{"unknown type", "{name: id, type: bigint}", "{name: id, type: strin}", `tables[0].columns[0] "id": unknown type "strin"`},
		{"missing type", "{name: id, type: bigint}", "{name: id}", `tables[0].columns[0] "id": type is empty`},
		{"duplicate column", "{name: state, type: state, nullable: true}", "{name: id, type: state}", `tables[0].columns[1] "id": name is already used by tables[0].columns[0]`},
		{"duplicate Go name", "{name: state, type: state, nullable: true}", "{name: i_d, type: bigint}", `tables[0].columns[1] "i_d": Go name ID is already used by tables[0].columns[0]`},
		{"enum and table share a name", "  - name: thing\n", "  - name: state\n", `tables[0] "state": name is already used by enums[0]`},
		{"not snake_case", "name: thing_list", "name: thingList", `functions[0] "thingList": name is not lowercase snake_case`},
		{"keyword", "{name: id, type: bigint}", "{name: user, type: bigint}", `tables[0].columns[0] "user": name is a PostgreSQL keyword`},
		{"too long", "name: thing_list", "name: " + strings.Repeat("x", 64), "name is longer than 63 bytes"},
		{"enum value case", `{name: OLD, doc: "Old."}`, `{name: old, doc: "Old."}`, `enums[0].values[1] "old": value is not UPPER_SNAKE_CASE`},
		{"duplicate enum value", `{name: OLD, doc: "Old."}`, `{name: NEW, doc: "Old."}`, `enums[0].values[1] "NEW": value is already used by enums[0].values[0]`},
		{"transition from", "{from: NEW,", "{from: NEWER,", `enums[0].transitions[0]: from "NEWER" is not a value of state`},
		{"transition to", "to: OLD,", "to: GONE,", `enums[0].transitions[0]: to "GONE" is not a value of state`},
		{"transition without by", "by: someone, ", "", `enums[0].transitions[0]: by is empty`},
		{"transition to itself", "to: OLD,", "to: NEW,", `enums[0].transitions[0]: NEW -> NEW changes nothing`},
		{"transitions without initial", "    initial: NEW\n", "", `enums[0] "state": transitions without initial`},
		{"unknown initial", "initial: NEW", "initial: NEWER", `enums[0] "state": initial "NEWER" is not a value of state`},
		{"initial without transitions", "    transitions:\n      - {from: NEW, to: OLD, by: someone, doc: \"it aged\"}\n", "", `enums[0] "state": initial "NEW" without transitions`},
		{"unreachable value", "initial: NEW", "initial: OLD", `enums[0].values[0] "NEW": value is unreachable`},
		{"no invalid_transition error", "{name: invalid_transition,", "{name: refused,", `enums[0] "state": transitions need the error invalid_transition`},
		{"generated name too long", "{name: phase, type: state}", "{name: " + strings.Repeat("p", 50) + ", type: state}", "generated name is longer than 63 bytes"},
		{"function named like a guard", "name: thing_list", "name: thing_phase_transition_check", `guard of thing.phase "thing_phase_transition_check": a described function has the name`},
		{"missing doc", "    doc: A thing.\n", "", `tables[0] "thing": doc is empty`},
		{"history of no table", "history: {table: thing_change,", "history: {table: thing_log,", `tables "thing" history "thing_log": no such table`},
		{"history of an unguarded column", "column: phase,", "column: state,", `tables "thing" history "state": is not a non-nullable column of an enum with transitions`},
		{"history without a column", "      - {name: to_phase, type: state}\n", "", "log table lacks column to_phase"},
		{"history copy", "copy: [note]", "copy: [colour]", `tables "thing" history "colour": copy names no column of thing`},
		{"history reason", "reason: [note]", "reason: [id]", `tables "thing" history "id": reason names no text column of thing`},
		{"function named like a history", "name: thing_list", "name: thing_phase_history_record", `a described function has the name of the generated trigger function`},
		{"unknown error kind", "kind: not_found", "kind: missing", `errors[0] "no_thing": unknown error kind "missing"`},
		{"bad sqlstate", "sqlstate: PX001", "sqlstate: px01", `errors[0] "no_thing": sqlstate "px01" is not 5 characters of [0-9A-Z]`},
		{"duplicate sqlstate", `doc: "No such thing."}`, `doc: "No such thing."}` + "\n  - {name: no_other, sqlstate: PX001, kind: not_found, doc: \"Other.\"}", `errors[1] "no_other": sqlstate PX001 is already used by errors[0]`},
		{"http status", "http: 404", "http: 200", `error_kinds[0] "not_found": http 200 is not an HTTP error status`},
		{"exit code", "exit: 1", "exit: 0", `error_kinds[0] "not_found": exit 0 is not a failure exit code`},
		{"unknown table", "table: thing}", "table: thingy}", `functions[0].returns: unknown table "thingy"`},
		{"table is an enum", "table: thing}", "table: state}", `functions[0].returns: table "state" is an enum`},
		{"two forms", "{setof: true, table: thing}", "{setof: true, table: thing, type: bigint}", "functions[0].returns: must be exactly one of"},
		{"setof without table", "{setof: true, table: thing}", "{setof: true}", "functions[0].returns: must be exactly one of"},
		{"table without setof", "{setof: true, table: thing}", "{table: thing}", "functions[0].returns: must be exactly one of"},
		{"nullable rows", "{setof: true, table: thing}", "{setof: true, table: thing, nullable: true}", "functions[0].returns: must be exactly one of"},
		{"missing returns", "    returns: {setof: true, table: thing}\n", "", "functions[0].returns: missing"},
		{"scalar of unknown type", "{setof: true, table: thing}", "{type: numeric}", `functions[0].returns: unknown type "numeric"`},
		{"result column type", "{setof: true, table: thing}", "{setof: true, columns: [{name: n, type: int}]}", `functions[0].returns.columns[0] "n": unknown type "int"`},
		{"arg type", "{name: p_limit, type: integer}", "{name: p_limit, type: int4}", `functions[0].args[0] "p_limit": unknown type "int4"`},
		{"duplicate arg Go name", "{name: p_limit, type: integer}", "{name: p_limit, type: integer}\n      - {name: limit, type: integer}", `functions[0].args[1] "limit": Go name limit is already used by functions[0].args[0]`},
		{"doc on an arg", "{name: p_limit, type: integer}", "{name: p_limit, type: integer, doc: x}", "field doc not found"},
		{"file", "file: thing.sql", "file: ../thing.sql", `functions[0] "thing_list": file "../thing.sql" is not a file name ending in .sql`},
		{"second document", "functions:", "---\nfunctions:", "more than one YAML document"},
		{"duplicate key", "    doc: A thing.\n", "    doc: A thing.\n    doc: Again.\n", `mapping key "doc" already defined`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Contains(t, valid, tt.old)
			_, err := desc.Load([]byte(strings.Replace(valid, tt.old, tt.new, 1)))
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestLoadEmpty(t *testing.T) {
	t.Parallel()
	_, err := desc.Load(nil)
	require.ErrorContains(t, err, "empty document")
}

func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	s, err := desc.Load([]byte(valid))
	require.NoError(t, err)
	s.Tables[0].Columns[0].Type = "strin"
	s.Errors[0].Kind = "missing"
	err = s.Validate()
	require.ErrorContains(t, err, `tables[0].columns[0] "id": unknown type "strin"`)
	require.ErrorContains(t, err, `errors[0] "no_thing": unknown error kind "missing"`)
}

// With database_roles, every function names its callers: one without says exactly what
// to add, and a caller must be a declared role, the owner alone.
func TestValidateCallers(t *testing.T) {
	t.Parallel()
	s, err := desc.Load([]byte(valid))
	require.NoError(t, err)
	require.NotEmpty(t, s.Functions)
	s.Roles = &desc.Roles{Doc: "roles", PrefixSetting: "app.role_prefix", DefaultPrefix: "app_", Owner: "owner",
		Daemons: []desc.Role{{Name: "worker", Doc: "works"}, {Name: "web", Doc: "serves"}}}
	for i := range s.Functions {
		s.Functions[i].Callers = []string{"worker"}
	}
	require.NoError(t, s.Validate())

	name := s.Functions[0].Name
	s.Functions[0].Callers = nil
	require.ErrorContains(t, s.Validate(), fmt.Sprintf("functions[0] %q: no callers: add `callers: [ROLE, ...]` to this function, naming each daemon role whose daemon calls it (worker, web), or `callers: [owner]` when only pollux-admin or other logic functions call it", name))
	s.Functions[0].Callers = []string{"wrker"}
	require.ErrorContains(t, s.Validate(), `functions[0].callers[0] "wrker": unknown role: say one of worker, web, or owner`)
	s.Functions[0].Callers = []string{"worker", "owner"}
	require.ErrorContains(t, s.Validate(), `functions[0].callers[1] "owner": owner may call every function: list it alone`)
	s.Functions[0].Callers = []string{"owner"}
	require.NoError(t, s.Validate())

	s.Roles = nil
	require.ErrorContains(t, s.Validate(), "callers without database_roles")
}
