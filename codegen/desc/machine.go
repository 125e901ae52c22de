package desc

import "fmt"

// InvalidTransitionError is the error (of the errors table) that the state machines'
// triggers raise; a description that declares transitions must declare it, so that the
// SQLSTATE maps to a Go error kind like every other.
const InvalidTransitionError = "invalid_transition"

// TransitionsFile is the logic file, in schema/logic, that holds the generated triggers.
const TransitionsFile = "transitions_gen.sql"

// Guard is the database's enforcement of one enum's state machine on one column: a
// trigger refusing an INSERT whose value is not the enum's initial one, a trigger
// refusing an UPDATE that changes the value along an undeclared transition, and the
// trigger function both call. Their names are derived from the table and column, so
// that they stay the same as long as the description does.
type Guard struct {
	Table  string
	Column string
	Enum   *Enum
	// Function is the trigger function: it checks a change against the transitions and
	// raises invalid_transition for one they do not declare, and for a new row that
	// is not Enum.Initial.
	Function string
	// InsertTrigger fires BEFORE INSERT when the value is not Enum.Initial.
	InsertTrigger string
	// UpdateTrigger fires BEFORE UPDATE OF Column whenever the value changes: the
	// allowed transitions are the function's, not the trigger's WHEN condition, which
	// PostgreSQL parses and compiles anew for every statement (see the generated file).
	UpdateTrigger string
}

// Guards returns a Guard for every non-nullable column whose enum declares transitions, in
// table and column order. A nullable column of such an enum is left alone: NULL is no
// state, and such a column records a value (e.g. the one before the last change) rather
// than holding the state itself.
func (s *Schema) Guards() []Guard {
	var out []Guard
	logs := map[string]bool{}
	for _, t := range s.Tables {
		if t.History != nil {
			logs[t.History.Table] = true
		}
	}
	for _, t := range s.Tables {
		if logs[t.Name] {
			// A history records values that were, not the state of a row: its rows are
			// written once and never change, whatever value they carry.
			continue
		}
		for _, c := range t.Columns {
			e, ok := s.Enum(string(c.Type))
			if !ok || len(e.Transitions) == 0 || c.Nullable {
				continue
			}
			base := t.Name + "_" + c.Name
			out = append(out, Guard{
				Table: t.Name, Column: c.Name, Enum: e,
				Function:      base + "_transition_check",
				InsertTrigger: base + "_initial",
				UpdateTrigger: base + "_transition",
			})
		}
	}
	return out
}

// HistoryLog is the database's log of one guarded column's changes (a table's History):
// a trigger function, run AFTER a new row and BEFORE an UPDATE that changes the column,
// that INSERTs one row into the log table. Names derive from the table and column.
type HistoryLog struct {
	History
	// Source is the table whose column is logged; KeyColumn is the log's column that
	// holds its id (<Source>_id).
	Source    string
	KeyColumn string
	// Function is the trigger function; InsertTrigger and UpdateTrigger call it.
	Function      string
	InsertTrigger string
	UpdateTrigger string
}

// Session settings a history reads from the connection that made the change: the
// framework sets the first three on each connection of a daemon (framework/pg Config
// Settings), and the logic may set the reason for one transaction (set_config(..., true)).
const (
	SettingDaemon   = "pollux.daemon"
	SettingInstance = "pollux.instance_id"
	SettingHost     = "pollux.host"
	SettingReason   = "pollux.reason"
)

// Histories returns a HistoryLog for every table that declares a History, in table order.
func (s *Schema) Histories() []HistoryLog {
	var out []HistoryLog
	for _, t := range s.Tables {
		if t.History == nil {
			continue
		}
		base := t.Name + "_" + t.History.Column + "_history"
		out = append(out, HistoryLog{History: *t.History, Source: t.Name, KeyColumn: t.Name + "_id",
			Function: base + "_record", InsertTrigger: base + "_insert", UpdateTrigger: base + "_update"})
	}
	return out
}

// historyColumns are the columns every log table has beside its key and copies.
var historyColumns = []string{"at", "daemon", "instance_id", "host", "reason"}

// histories checks each declared History against the tables it names.
func (v *validator) histories() {
	functions := map[string]bool{}
	for _, f := range v.s.Functions {
		functions[f.Name] = true
	}
	for _, h := range v.s.Histories() {
		place := fmt.Sprintf("tables %q history", h.Source)
		src, _ := v.s.Table(h.Source)
		log, ok := v.s.Table(h.Table)
		if !ok {
			v.errorf(place, h.Table, "no such table: describe the log table")
			continue
		}
		if h.Table == h.Source {
			v.errorf(place, h.Table, "a table cannot be its own history")
		}
		col, ok := src.Column(h.Column)
		if !ok {
			v.errorf(place, h.Column, "no such column in %s", h.Source)
			continue
		}
		if e, ok := v.s.Enum(string(col.Type)); !ok || len(e.Transitions) == 0 || col.Nullable {
			v.errorf(place, h.Column, "is not a non-nullable column of an enum with transitions: only a state machine has a history")
		}
		if _, ok := src.Column("id"); !ok {
			v.errorf(place, h.Source, "has no id column for the log to name its rows by")
		}
		need := append([]string{h.KeyColumn, "from_" + h.Column, "to_" + h.Column}, historyColumns...)
		need = append(need, h.Copy...)
		for _, name := range need {
			if _, ok := log.Column(name); !ok {
				v.errorf(place, h.Table, "log table lacks column %s", name)
			}
		}
		for _, name := range h.Copy {
			if _, ok := src.Column(name); !ok {
				v.errorf(place, name, "copy names no column of %s", h.Source)
			}
		}
		for _, name := range h.Reason {
			if c, ok := src.Column(name); !ok || c.Type != "text" {
				v.errorf(place, name, "reason names no text column of %s", h.Source)
			}
		}
		for _, name := range []string{h.Function, h.InsertTrigger, h.UpdateTrigger} {
			if len(name) > maxIdentLen {
				v.errorf(place, name, "generated name is longer than %d bytes: shorten the table or column name", maxIdentLen)
			}
		}
		if functions[h.Function] {
			v.errorf(place, h.Function, "a described function has the name of the generated trigger function")
		}
	}
}

// Next returns the values e may change to from value, in declaration order of the
// transitions.
func (e *Enum) Next(value string) []string {
	var out []string
	for _, t := range e.Transitions {
		if t.From == value {
			out = append(out, t.To)
		}
	}
	return out
}

// Final reports whether no transition leaves value.
func (e *Enum) Final(value string) bool { return len(e.Next(value)) == 0 }

// transitions validates the state machine of e, whose values are values.
func (v *validator) transitions(place string, e *Enum, values map[string]bool) {
	if len(e.Transitions) == 0 {
		if e.Initial != "" {
			v.errorf(place, e.Name, "initial %q without transitions: declare the transitions, or drop initial", e.Initial)
		}
		return
	}
	switch {
	case e.Initial == "":
		v.errorf(place, e.Name, "transitions without initial: name the value a new row must have")
	case !values[e.Initial]:
		v.errorf(place, e.Name, "initial %q is not a value of %s", e.Initial, e.Name)
	}
	pairs := map[[2]string]string{}
	reached := map[string]bool{e.Initial: true}
	for j, t := range e.Transitions {
		tplace := fmt.Sprintf("%s.transitions[%d]", place, j)
		if !values[t.From] {
			v.errorf(tplace, "", "from %q is not a value of %s", t.From, e.Name)
		}
		if !values[t.To] {
			v.errorf(tplace, "", "to %q is not a value of %s", t.To, e.Name)
		}
		if t.From == t.To {
			// An UPDATE that keeps the value is always allowed; declaring it would suggest
			// that leaving it out forbids it.
			v.errorf(tplace, "", "%s -> %s changes nothing: an unchanged value is always allowed", t.From, t.To)
		}
		if t.By == "" {
			v.errorf(tplace, "", "by is empty")
		}
		pair := [2]string{t.From, t.To}
		if first, ok := pairs[pair]; ok {
			v.errorf(tplace, "", "%s -> %s is already declared by %s", t.From, t.To, first)
		} else {
			pairs[pair] = tplace
		}
		reached[t.To] = true
	}
	for j, val := range e.Values {
		if values[e.Initial] && !reached[val.Name] {
			// The trigger would refuse every way into it: a value nothing can reach is a
			// forgotten transition or a value to remove.
			v.errorf(fmt.Sprintf("%s.values[%d]", place, j), val.Name, "value is unreachable: it is not initial and no transition leads to it")
		}
	}
	if _, ok := v.errorNames[InvalidTransitionError]; !ok {
		v.errorf(place, e.Name, "transitions need the error %s in errors: the SQLSTATE the triggers raise", InvalidTransitionError)
	}
}

// guards checks the names Guards derives: they are PostgreSQL identifiers, and no
// described function takes a trigger function's name.
func (v *validator) guards() {
	functions := map[string]bool{}
	for _, f := range v.s.Functions {
		functions[f.Name] = true
	}
	for _, g := range v.s.Guards() {
		place := fmt.Sprintf("guard of %s.%s", g.Table, g.Column)
		for _, name := range []string{g.Function, g.InsertTrigger, g.UpdateTrigger} {
			if len(name) > maxIdentLen {
				v.errorf(place, name, "generated name is longer than %d bytes: shorten the table or column name", maxIdentLen)
			}
		}
		if functions[g.Function] {
			v.errorf(place, g.Function, "a described function has the name of the generated trigger function")
		}
	}
}
