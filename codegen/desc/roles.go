package desc

import (
	"fmt"
	"regexp"
	"strings"
)

// GrantsFile is the logic file, in schema/logic, that holds the generated roles and
// grants. It must run after every other logic file of an apply (hotpatch.Final), because
// CREATE OR REPLACE FUNCTION resets SECURITY DEFINER and a function dropped and created
// anew loses its grants.
const GrantsFile = "grants_gen.sql"

// Roles are the database roles of the description: one owner that owns every logic
// function (they run SECURITY DEFINER as it), and one role per daemon kind that may only
// EXECUTE the functions naming it among their callers.
type Roles struct {
	Doc string `yaml:"doc"`
	// PrefixSetting is the custom setting (e.g. pollux.role_prefix) that, when set on the
	// session that first installs the grants, prefixes every role name; role names are
	// cluster-wide, so two instances sharing a server need two prefixes.
	PrefixSetting string `yaml:"prefix_setting"`
	// DefaultPrefix is the prefix when the setting is not set.
	DefaultPrefix string `yaml:"default_prefix"`
	// Owner is the owner role's name after the prefix; it logs in nowhere.
	Owner string `yaml:"owner"`
	// Readable are tables every daemon role may SELECT (bookkeeping its readiness check
	// reads); they need not exist yet (a later migration step may create them).
	Readable []string `yaml:"readable"`
	// Daemons are the daemon roles, named after the prefix.
	Daemons []Role `yaml:"daemons"`
}

// Role is one daemon role.
type Role struct {
	Name string `yaml:"name"`
	Doc  string `yaml:"doc"`
}

// DaemonNames returns the daemon roles' names, in declaration order.
func (r *Roles) DaemonNames() []string {
	out := make([]string, len(r.Daemons))
	for i, d := range r.Daemons {
		out[i] = d.Name
	}
	return out
}

// Callable returns, per daemon role, the functions it may call, in declaration order.
func (s *Schema) Callable() map[string][]string {
	out := map[string][]string{}
	for _, f := range s.Functions {
		for _, c := range f.Callers {
			if s.Roles != nil && c != s.Roles.Owner {
				out[c] = append(out[c], f.Name)
			}
		}
	}
	return out
}

var settingRE = regexp.MustCompile(`^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$`)

// maxPrefixLen leaves room for the longest role name after a prefix within maxIdentLen.
const maxPrefixLen = 40

func (v *validator) roles() {
	r := v.s.Roles
	if r == nil {
		for i, f := range v.s.Functions {
			if len(f.Callers) > 0 {
				v.errorf(fmt.Sprintf("functions[%d]", i), f.Name, "callers without database_roles")
			}
		}
		return
	}
	v.doc("database_roles", "", r.Doc)
	if !settingRE.MatchString(r.PrefixSetting) {
		v.errorf("database_roles.prefix_setting", r.PrefixSetting, "not a custom setting name (e.g. pollux.role_prefix)")
	}
	if !snakeRE.MatchString(strings.TrimSuffix(r.DefaultPrefix, "_")) || len(r.DefaultPrefix) > maxPrefixLen {
		v.errorf("database_roles.default_prefix", r.DefaultPrefix, "not lowercase snake_case of at most %d bytes", maxPrefixLen)
	}
	known := map[string]bool{}
	seen := map[string]string{}
	check := func(place, name string) {
		v.ident(place, name)
		v.unique(seen, place, name, name, "name")
		if maxPrefixLen+len(name) > maxIdentLen {
			v.errorf(place, name, "name is too long for a role name after a prefix of up to %d bytes", maxPrefixLen)
		}
		known[name] = true
	}
	check("database_roles.owner", r.Owner)
	if len(r.Daemons) == 0 {
		v.errorf("database_roles.daemons", "", "missing")
	}
	for i, d := range r.Daemons {
		place := fmt.Sprintf("database_roles.daemons[%d]", i)
		check(place, d.Name)
		v.doc(place, d.Name, d.Doc)
	}
	for i, t := range r.Readable {
		v.ident(fmt.Sprintf("database_roles.readable[%d]", i), t)
	}
	daemons := strings.Join(r.DaemonNames(), ", ")
	for i, f := range v.s.Functions {
		place := fmt.Sprintf("functions[%d]", i)
		if len(f.Callers) == 0 {
			// Other work adds functions in parallel: say exactly what to write.
			v.errorf(place, f.Name, "no callers: add `callers: [ROLE, ...]` to this function, naming each daemon role whose daemon calls it (%s), or `callers: [%s]` when only pollux-admin or other logic functions call it", daemons, r.Owner)
			continue
		}
		dup := map[string]string{}
		for j, c := range f.Callers {
			cplace := fmt.Sprintf("%s.callers[%d]", place, j)
			v.unique(dup, cplace, c, c, "caller")
			switch {
			case !known[c]:
				v.errorf(cplace, c, "unknown role: say one of %s, or %s", daemons, r.Owner)
			case c == r.Owner && len(f.Callers) > 1:
				v.errorf(cplace, c, "%s may call every function: list it alone, meaning no daemon calls this one", r.Owner)
			}
		}
	}
}
