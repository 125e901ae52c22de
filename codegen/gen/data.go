package gen

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pollux-storage/pollux/codegen/desc"
)

// data is what the templates see: the description with every name, type and SQL text
// already worked out, so that templates only lay them out.
type data struct {
	Source         string
	Imports        imports
	Enums          []enumData
	HasTransitions bool
	PlainEnums     []string // the enums without transitions
	ErrorKinds     []errorKindData
	Errors         []errorData
	Tables         []tableData
	Functions      []funcData
	// Generated are the logic functions codegen writes (LogicFunctions lists them too).
	Generated []desc.Signature
	Guards    []guardData
	Histories []historyData
	// The session settings a history reads (desc.Setting*).
	SettingDaemon, SettingInstance, SettingHost, SettingReason string
	// InvalidTransition is the SQLSTATE the guards raise.
	InvalidTransition string
	TransitionsFile   string
	NamesFile         string
	// FamilyEnum is the Go type of the enum the families partition (RequestType).
	FamilyEnum   string
	FamilyEnumPG string
	Families     []familyData
	Channels     []channelData
	// Roles are the database roles and who may call what; nil without database_roles.
	Roles      *rolesData
	GrantsFile string
}

type rolesData struct {
	Doc           string
	PrefixSetting string
	DefaultPrefix string
	Owner         string
	Readable      []string
	Daemons       []roleData
	// Functions are every logic function, described and generated: each is owned by the
	// owner role and runs as it (SECURITY DEFINER).
	Functions []string
}

type roleData struct {
	Name      string
	Doc       string
	Functions []string // what it may EXECUTE, in declaration order
}

type familyData struct {
	Name       string
	Const      string
	Doc        string
	Types      []string // enum values
	TypeConsts []string
}

type channelData struct {
	Name        string // the declared name; per family, the names' common stem
	Doc         string
	GoName      string // Channel<GoName>: the constant, or per family the function
	SQLFunction string
	PerFamily   bool
	// Names are the channel's names with their Go constants; one unless per family.
	Names []channelName
}

type channelName struct {
	Name   string
	Const  string
	Family familyData // per family only
}

// guardData is one state machine enforced on one column (desc.Guard), with its SQL
// worked out.
type guardData struct {
	desc.Guard
	EnumName string
	Initial  string
	// HasID says the table has an id column, which the refusal names.
	HasID bool
	// Allowed is the check's CASE arms, one per value that may change at all, e.g.
	// "WHEN 'START' THEN NEW.status IN ('WAITSCHED', 'FAILED')".
	Allowed []string
	// Next is, per value, what it may become in words, for the refusal's DETAIL.
	Next []nextData
}

// historyData is one state machine's log (desc.HistoryLog), with its SQL worked out.
type historyData struct {
	desc.HistoryLog
	// Columns and Values are the INSERT's column list and VALUES expressions, in order.
	Columns string
	Values  []string
}

type nextData struct {
	From string
	To   string // "WAITSCHED, FAILED", or "" for a final value
}

// imports are a Go file's imports: the standard library's, then the others.
type imports struct {
	Std   []string
	Third []string
}

type enumData struct {
	Name         string
	GoName       string
	Doc          string
	Values       []valueData
	ValueList    string // for error messages: "PUT, GET, RM"
	Initial      string
	InitialConst string
	Transitions  []desc.Transition
	From         []fromData // Transitions grouped by From, in value order
	Finals       []string   // consts of the values no transition leaves
	Guarded      []string   // "table.column" of the columns whose guard enforces it
	Diagram      string     // the state machine as plain text (see diagram)
}

type valueData struct {
	Name  string
	Const string
	Doc   string
	// Final says that no transition leaves the value (only with transitions).
	Final bool
}

type fromData struct {
	Const string
	To    []string
}

type errorKindData struct {
	Name  string
	Const string
	HTTP  int
	Exit  int
	Doc   string
	// Errors are the errors of this kind, e.g. "`PX002` invalid_argument".
	Errors []string
}

type errorData struct {
	Name      string
	Const     string
	SQLState  string
	Kind      string
	KindConst string
	Doc       string
}

type tableData struct {
	Name    string
	GoName  string
	Plural  string
	Doc     string
	Columns []columnData
}

type columnData struct {
	Name     string
	GoName   string
	GoType   string
	MDType   string // Markdown, with enums linked to their section
	Nullable bool
	Doc      string
	goImport string
}

type rowData struct {
	GoName  string
	Columns []columnData
}

type funcData struct {
	Callers      []string // the roles that may EXECUTE it
	Name         string
	GoName       string
	File         string
	Doc          string
	Args         []argData
	NullableArgs []string // SQL names, for the reference
	Form         string   // void, scalar or setof
	SQL          string
	Results      string // the wrapper's result list
	ReturnType   string // scalar only
	Zero         string // scalar only
	TablePlural  string // setof table only
	Row          *rowData
	IdentityArgs string
	Result       string
	MDResult     string
	goImports    []string
}

type argData struct {
	GoName string
	GoType string
}

func newData(s *desc.Schema, source string) *data {
	d := &data{Source: source, TransitionsFile: desc.TransitionsFile, NamesFile: desc.NamesFile,
		SettingDaemon: desc.SettingDaemon, SettingInstance: desc.SettingInstance, SettingHost: desc.SettingHost, SettingReason: desc.SettingReason,
		FamilyEnum: desc.GoName(desc.FamilyEnum), FamilyEnumPG: desc.FamilyEnum}
	for i := range s.Enums {
		e := &s.Enums[i]
		d.Enums = append(d.Enums, newEnum(e))
		if len(e.Transitions) == 0 {
			d.PlainEnums = append(d.PlainEnums, e.Name)
		}
		d.HasTransitions = d.HasTransitions || len(e.Transitions) > 0
	}
	kindConst := map[string]string{}
	for _, k := range s.ErrorKinds {
		c := "ErrorKind" + desc.GoName(k.Name)
		kindConst[k.Name] = c
		d.ErrorKinds = append(d.ErrorKinds, errorKindData{Name: k.Name, Const: c, HTTP: k.HTTP, Exit: k.Exit, Doc: k.Doc})
	}
	for _, e := range s.Errors {
		for i := range d.ErrorKinds {
			if d.ErrorKinds[i].Name == e.Kind {
				d.ErrorKinds[i].Errors = append(d.ErrorKinds[i].Errors, "`"+e.SQLState+"` "+e.Name)
			}
		}
		d.Errors = append(d.Errors, errorData{
			Name: e.Name, Const: "SQLState" + desc.GoName(e.Name), SQLState: e.SQLState,
			Kind: e.Kind, KindConst: kindConst[e.Kind], Doc: e.Doc,
		})
	}
	for _, t := range s.Tables {
		d.Tables = append(d.Tables, tableData{
			Name: t.Name, GoName: t.GoName(), Plural: desc.GoPlural(t.GoName()), Doc: t.Doc,
			Columns: newColumns(t.Columns),
		})
	}
	for _, f := range s.Functions {
		d.Functions = append(d.Functions, newFunc(s, f))
	}
	d.Generated = s.GeneratedSignatures()
	d.GrantsFile = desc.GrantsFile
	if r := s.Roles; r != nil {
		rd := &rolesData{Doc: r.Doc, PrefixSetting: r.PrefixSetting, DefaultPrefix: r.DefaultPrefix, Owner: r.Owner, Readable: r.Readable}
		callable := s.Callable()
		for _, role := range r.Daemons {
			rd.Daemons = append(rd.Daemons, roleData{Name: role.Name, Doc: role.Doc, Functions: callable[role.Name]})
		}
		for _, sig := range s.Signatures() {
			rd.Functions = append(rd.Functions, sig.Name)
		}
		d.Roles = rd
	}
	for _, e := range s.Errors {
		if e.Name == desc.InvalidTransitionError {
			d.InvalidTransition = e.SQLState
		}
	}
	newNames(s, d)
	for _, g := range s.Guards() {
		d.Guards = append(d.Guards, newGuard(s, g))
		for i := range d.Enums {
			if d.Enums[i].Name == g.Enum.Name {
				d.Enums[i].Guarded = append(d.Enums[i].Guarded, g.Table+"."+g.Column)
			}
		}
	}
	for _, h := range s.Histories() {
		d.Histories = append(d.Histories, newHistory(h))
	}
	return d
}

// newHistory works out the INSERT of one history: the key, the change, the copies, and
// who made it and why from the session (desc.Setting*), each setting read with
// missing_ok so that a connection without them (psql, a test) still records the change.
func newHistory(h desc.HistoryLog) historyData {
	setting := func(name string) string {
		return fmt.Sprintf("NULLIF(current_setting('%s', true), '')", name)
	}
	cols := []string{h.KeyColumn, "from_" + h.Column, "to_" + h.Column}
	vals := []string{"NEW.id", fmt.Sprintf("CASE WHEN TG_OP = 'UPDATE' THEN OLD.%s END", h.Column), "NEW." + h.Column}
	for _, c := range h.Copy {
		cols = append(cols, c)
		vals = append(vals, "NEW."+c)
	}
	reason := []string{setting(desc.SettingReason)}
	for _, c := range h.Reason {
		reason = append(reason, fmt.Sprintf("NULLIF(NEW.%s, '')", c))
	}
	reason = append(reason, "''")
	cols = append(cols, "daemon", "instance_id", "host", "reason")
	vals = append(vals,
		// Without the framework's setting, the session's application_name (psql, pollux-admin).
		fmt.Sprintf("COALESCE(%s, current_setting('application_name'), '')", setting(desc.SettingDaemon)),
		// Checked before the cast: a malformed setting must never fail the change it records.
		fmt.Sprintf("CASE WHEN %s ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN current_setting('%s')::uuid END",
			setting(desc.SettingInstance), desc.SettingInstance),
		fmt.Sprintf("COALESCE(%s, '')", setting(desc.SettingHost)),
		"COALESCE("+strings.Join(reason, ", ")+")")
	return historyData{HistoryLog: h, Columns: strings.Join(cols, ", "), Values: vals}
}

func newNames(s *desc.Schema, d *data) {
	for _, f := range s.Families {
		fd := familyData{Name: f.Name, Const: "Family" + desc.GoName(f.Name), Doc: f.Doc, Types: f.Types}
		for _, t := range f.Types {
			fd.TypeConsts = append(fd.TypeConsts, d.FamilyEnum+desc.GoEnumValueName(t))
		}
		d.Families = append(d.Families, fd)
	}
	for _, c := range s.Channels {
		cd := channelData{Name: c.Name, Doc: c.Doc, GoName: "Channel" + c.GoName(), SQLFunction: c.SQLFunction(), PerFamily: c.PerFamily}
		if !c.PerFamily {
			cd.Names = []channelName{{Name: c.Name, Const: cd.GoName}}
		}
		for i, n := range c.Names(s.Families) {
			if c.PerFamily {
				f := d.Families[i]
				cd.Names = append(cd.Names, channelName{Name: n, Const: cd.GoName + desc.GoName(f.Name), Family: f})
			}
		}
		d.Channels = append(d.Channels, cd)
	}
}

func newGuard(s *desc.Schema, g desc.Guard) guardData {
	gd := guardData{Guard: g, EnumName: g.Enum.Name, Initial: g.Enum.Initial}
	t, _ := s.Table(g.Table)
	for _, c := range t.Columns {
		gd.HasID = gd.HasID || c.Name == "id"
	}
	for _, v := range g.Enum.Values {
		next := g.Enum.Next(v.Name)
		gd.Next = append(gd.Next, nextData{From: v.Name, To: strings.Join(next, ", ")})
		if len(next) == 0 {
			continue
		}
		quoted := make([]string, len(next))
		for i, n := range next {
			quoted[i] = "'" + n + "'" // UPPER_SNAKE_CASE, checked by Validate: nothing to escape
		}
		gd.Allowed = append(gd.Allowed, fmt.Sprintf("WHEN '%s' THEN NEW.%s IN (%s)",
			v.Name, g.Column, strings.Join(quoted, ", ")))
	}
	return gd
}

func newEnum(e *desc.Enum) enumData {
	ed := enumData{Name: e.Name, GoName: e.GoName(), Doc: e.Doc, Transitions: e.Transitions, Initial: e.Initial}
	constOf := map[string]string{}
	names := make([]string, len(e.Values))
	for i, v := range e.Values {
		c := ed.GoName + v.GoName()
		constOf[v.Name] = c
		names[i] = v.Name
		final := len(e.Transitions) > 0 && e.Final(v.Name)
		ed.Values = append(ed.Values, valueData{Name: v.Name, Const: c, Doc: v.Doc, Final: final})
		if final {
			ed.Finals = append(ed.Finals, c)
		}
	}
	ed.ValueList = strings.Join(names, ", ")
	if e.Initial != "" {
		ed.InitialConst = constOf[e.Initial]
		ed.Diagram = diagram(e)
	}
	for _, v := range e.Values {
		var to []string
		for _, t := range e.Transitions {
			if t.From == v.Name {
				to = append(to, constOf[t.To])
			}
		}
		if len(to) > 0 {
			ed.From = append(ed.From, fromData{Const: constOf[v.Name], To: to})
		}
	}
	return ed
}

// diagram draws a state machine in plain text, one block per value in declaration order
// with its way out, each arrow labelled with who takes it:
//
//	new row ===> QUEUED
//	QUEUED  --- worker -----------> RUNNING
//	RUNNING +-- worker -----------> DONE
//	        `-- worker or reaper -> GAVE_UP
//	DONE    (final)
//
// A graph layout would draw fewer lines but needs a layout algorithm and reads worse as
// plain text once values have several ways out; this one is exact and diffs well.
func diagram(e *desc.Enum) string {
	const newRow = "new row"
	width := len(newRow)
	by := 0
	for _, v := range e.Values {
		width = max(width, len(v.Name))
	}
	for _, t := range e.Transitions {
		by = max(by, len(t.By))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-*s ===> %s\n", width, newRow, e.Initial)
	for _, v := range e.Values {
		var out []desc.Transition
		for _, t := range e.Transitions {
			if t.From == v.Name {
				out = append(out, t)
			}
		}
		if len(out) == 0 {
			fmt.Fprintf(&b, "%-*s (final)\n", width, v.Name)
			continue
		}
		for i, t := range out {
			from, branch := v.Name, "|--"
			switch {
			case len(out) == 1:
				branch = "---"
			case i == 0:
				branch = "+--"
			case i == len(out)-1:
				branch = "`--"
			}
			if i > 0 {
				from = ""
			}
			fmt.Fprintf(&b, "%-*s %s %s %s> %s\n", width, from, branch, t.By, strings.Repeat("-", by-len(t.By)+1), t.To)
		}
	}
	return b.String()
}

func newColumns(cols []desc.Column) []columnData {
	out := make([]columnData, len(cols))
	for i, c := range cols {
		out[i] = columnData{
			Name: c.Name, GoName: c.GoName(), GoType: c.GoType(), MDType: mdType(c.Type),
			Nullable: c.Nullable, Doc: c.Doc, goImport: c.Type.GoImport(),
		}
	}
	return out
}

func newFunc(s *desc.Schema, f desc.Function) funcData {
	fd := funcData{
		Name: f.Name, GoName: f.GoName(), File: f.File, Doc: f.Doc,
		IdentityArgs: f.IdentityArgs(), Result: f.Result(), Callers: f.Callers,
	}
	casts := make([]string, len(f.Args))
	for i, a := range f.Args {
		fd.Args = append(fd.Args, argData{GoName: a.GoName(), GoType: a.GoType()})
		fd.goImports = append(fd.goImports, a.Type.GoImport())
		if a.Nullable {
			fd.NullableArgs = append(fd.NullableArgs, a.Name)
		}
		// The description's spelling of the type is valid SQL, enums included.
		casts[i] = fmt.Sprintf("$%d::%s", i+1, a.Type)
	}
	call := f.Name + "(" + strings.Join(casts, ", ") + ")"
	r := f.Returns
	switch r.Form() {
	case desc.ReturnsVoid:
		fd.Form, fd.SQL, fd.Results = "void", "SELECT "+call, "error"
		fd.MDResult = "`void`"
	case desc.ReturnsScalar:
		fd.Form, fd.SQL = "scalar", "SELECT "+call
		fd.ReturnType = r.Type.Go(r.Nullable)
		fd.Zero = zeroValue(r.Type)
		if strings.HasPrefix(fd.ReturnType, "*") {
			fd.Zero = "nil"
		}
		fd.Results = "(" + fd.ReturnType + ", error)"
		fd.MDResult = mdType(r.Type)
		if r.Nullable {
			fd.MDResult += " or NULL"
		}
		fd.goImports = append(fd.goImports, r.Type.GoImport())
	case desc.ReturnsSetOfTable:
		t, _ := s.Table(r.Table)
		fd.Form = "setof"
		fd.SQL = "SELECT " + columnList(t.Columns) + " FROM " + call
		fd.TablePlural = desc.GoPlural(t.GoName())
		fd.Results = "([]" + t.GoName() + ", error)"
		fd.MDResult = "`SETOF` [`" + t.Name + "`](#" + t.Name + ")"
	case desc.ReturnsSetOfColumns:
		fd.Form = "setof"
		fd.SQL = "SELECT " + columnList(r.Columns) + " FROM " + call
		fd.Row = &rowData{GoName: fd.GoName + "Row", Columns: newColumns(r.Columns)}
		fd.Results = "([]" + fd.Row.GoName + ", error)"
		fd.MDResult = "`" + fd.Result + "`"
		for _, c := range fd.Row.Columns {
			fd.goImports = append(fd.goImports, c.goImport)
		}
	}
	return fd
}

func columnList(cols []desc.Column) string {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.Name
	}
	return strings.Join(names, ", ")
}

// zeroValue is the Go literal of the zero value of a non-nullable t.
func zeroValue(t desc.Type) string {
	switch goType := t.Go(false); goType {
	case "int64", "int32", "float64":
		return "0"
	case "bool":
		return "false"
	case "time.Time":
		return "time.Time{}"
	default:
		if strings.HasPrefix(goType, "[]") || goType == "json.RawMessage" {
			return "nil"
		}
		return `""` // string, and enums, whose underlying type is string
	}
}

// mdType is t in Markdown, linking an enum to its section.
func mdType(t desc.Type) string {
	if t.Builtin() {
		return "`" + string(t) + "`"
	}
	return "[`" + string(t) + "`](#" + string(t) + ")"
}

const (
	pgx     = "github.com/jackc/pgx/v5"
	pgconn  = "github.com/jackc/pgx/v5/pgconn"
	pgtype  = "github.com/jackc/pgx/v5/pgtype"
	pgxpool = "github.com/jackc/pgx/v5/pgxpool"
)

// newImports sorts paths into the standard library's and the others, dropping blanks and
// duplicates: go/format does not add or remove imports, so each file lists exactly what
// its code uses.
func newImports(paths ...string) imports {
	var im imports
	for _, p := range paths {
		switch {
		case p == "":
		case strings.Contains(strings.SplitN(p, "/", 2)[0], "."):
			im.Third = append(im.Third, p)
		default:
			im.Std = append(im.Std, p)
		}
	}
	slices.Sort(im.Std)
	slices.Sort(im.Third)
	im.Std = slices.Compact(im.Std)
	im.Third = slices.Compact(im.Third)
	return im
}

// wireImport is the package that the generated model imports for its pgx-free part.
const wireImport = "github.com/pollux-storage/pollux/model/wire"

func dbImports(*data) imports { return newImports("context", pgx, pgconn, pgxpool) }

func enumImports(d *data) imports {
	if len(d.Enums) == 0 {
		return imports{}
	}
	if d.HasTransitions {
		return newImports("fmt", pgtype, wireImport)
	}
	return newImports("fmt", pgtype)
}

func wireEnumImports(d *data) imports {
	if len(d.Enums) == 0 {
		return imports{}
	}
	return newImports("fmt")
}

// errorImports: model's error kinds are wire's, which it always names (the type alias).
func errorImports(*data) imports { return newImports(wireImport) }

func tableImports(d *data) imports {
	if len(d.Tables) == 0 {
		return imports{}
	}
	paths := []string{"fmt", pgx}
	for _, t := range d.Tables {
		for _, c := range t.Columns {
			paths = append(paths, c.goImport)
		}
	}
	return newImports(paths...)
}

func namesImports(d *data) imports {
	if len(d.Families) == 0 {
		return imports{}
	}
	return newImports("fmt")
}

func logicImports(d *data) imports {
	if len(d.Functions) == 0 {
		return imports{}
	}
	paths := []string{"context", "fmt"}
	for _, f := range d.Functions {
		paths = append(paths, f.goImports...)
		if f.Row != nil {
			paths = append(paths, pgx)
		}
	}
	return newImports(paths...)
}

// checkGoNames reports two generated declarations of package model with the same name,
// e.g. a table error_kind whose struct would clash with ErrorKind: the description is
// valid SQL, but the Go would not compile.
func (d *data) checkGoNames() error {
	seen := map[string]string{}
	var errs []error
	declare := func(name, what string) {
		if first, ok := seen[name]; ok {
			errs = append(errs, fmt.Errorf("Go name %s of %s is already used by %s", name, what, first))
			return
		}
		seen[name] = what
	}
	for _, name := range []string{"DBTX", "Transition", "ErrorKind", "KindOfSQLState", "LogicFunction", "LogicFunctions"} {
		declare(name, "the generated code")
	}
	for _, e := range d.Enums {
		what := "enum " + e.Name
		declare(e.GoName, what)
		declare(e.GoName+"Values", what)
		declare("Parse"+e.GoName, what)
		if len(e.Transitions) > 0 {
			declare(e.GoName+"Transitions", what)
			declare(e.GoName+"Initial", what)
		}
		for _, v := range e.Values {
			declare(v.Const, what+" value "+v.Name)
		}
	}
	for _, k := range d.ErrorKinds {
		declare(k.Const, "error kind "+k.Name)
	}
	for _, e := range d.Errors {
		declare(e.Const, "error "+e.Name)
	}
	if len(d.Families) > 0 {
		for _, name := range []string{"Family", "Families", "ParseFamily"} {
			declare(name, "the families")
		}
	}
	for _, f := range d.Families {
		declare(f.Const, "family "+f.Name)
	}
	if len(d.Channels) > 0 {
		declare("Channels", "the channels")
	}
	for _, c := range d.Channels {
		if c.PerFamily {
			declare(c.GoName, "channel "+c.Name)
		}
		for _, n := range c.Names {
			declare(n.Const, "channel "+n.Name)
		}
	}
	for _, t := range d.Tables {
		what := "table " + t.Name
		for _, name := range []string{t.GoName, t.GoName + "Table", t.GoName + "Columns", "Scan" + t.GoName, "Collect" + t.Plural} {
			declare(name, what)
		}
	}
	for _, f := range d.Functions {
		what := "function " + f.Name
		declare(f.GoName, what)
		declare(f.GoName+"SQL", what)
		if f.Row != nil {
			declare(f.Row.GoName, what)
		}
	}
	return errors.Join(errs...)
}
