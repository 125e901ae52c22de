package desc

import (
	"fmt"
	"regexp"
	"strings"
)

// NamesFile is the logic file, in schema/logic, that holds the generated name functions.
const NamesFile = "names_gen.sql"

// FamilyEnum is the enum whose values the families partition.
const FamilyEnum = "request_type"

// ChannelPrefix starts every NOTIFY channel of Pollux, named pollux_<entity>_<event>.
const ChannelPrefix = "pollux_"

// Family is a request family: the stager pool that claims and decides the subrequests of
// its request types, woken by its own channel. Both Go (the pool's name) and SQL (the
// claim's argument, the channel a submission notifies) spell it.
type Family struct {
	Name  string   `yaml:"name"`
	Doc   string   `yaml:"doc"`
	Types []string `yaml:"types"`
}

// Channel is a NOTIFY channel that SQL notifies and Go listens on. A per-family channel is
// one channel per family, named <name>_<family>.
type Channel struct {
	Name      string `yaml:"name"`
	Doc       string `yaml:"doc"`
	PerFamily bool   `yaml:"per_family"`
}

// GoName is the channel's name without the prefix every channel has, as Go names it
// after "Channel": pollux_request_changed → RequestChanged.
func (c Channel) GoName() string { return GoName(strings.TrimPrefix(c.Name, ChannelPrefix)) }

// SQLFunction is the name of the generated SQL function returning the channel's name:
// pollux_channel_<name without pollux_>(), taking p_type request_type for a per-family
// channel.
func (c Channel) SQLFunction() string {
	return "pollux_channel_" + strings.TrimPrefix(c.Name, ChannelPrefix)
}

// Names returns the channel's names: one, or one per family.
func (c Channel) Names(families []Family) []string {
	if !c.PerFamily {
		return []string{c.Name}
	}
	out := make([]string, len(families))
	for i, f := range families {
		out[i] = c.Name + "_" + f.Name
	}
	return out
}

// FamilyOf returns the family of a value of FamilyEnum.
func (s *Schema) FamilyOf(requestType string) (Family, bool) {
	for _, f := range s.Families {
		for _, t := range f.Types {
			if t == requestType {
				return f, true
			}
		}
	}
	return Family{}, false
}

// Generated SQL functions of the names file, besides one per channel.
const (
	// FamilyFunction is pollux_family(p_type request_type) → text.
	FamilyFunction = "pollux_family"
	// FamiliesFunction is pollux_families() → text[], in declaration order.
	FamiliesFunction = "pollux_families"
)

// nameSignatures are the functions of NamesFile.
func (s *Schema) nameSignatures() []Signature {
	var out []Signature
	if len(s.Families) > 0 {
		out = append(out,
			Signature{Name: FamilyFunction, File: NamesFile, IdentityArgs: "p_type " + FamilyEnum, Result: "text", Generated: true},
			Signature{Name: FamiliesFunction, File: NamesFile, Result: "text[]", Generated: true})
	}
	for _, c := range s.Channels {
		sig := Signature{Name: c.SQLFunction(), File: NamesFile, Result: "text", Generated: true}
		if c.PerFamily {
			sig.IdentityArgs = "p_type " + FamilyEnum
		}
		out = append(out, sig)
	}
	return out
}

var channelRE = regexp.MustCompile(`^pollux(_[a-z0-9]+)+$`)

func (v *validator) names() {
	names := map[string]string{}
	var typeNames map[string]bool
	if e, ok := v.enums[FamilyEnum]; ok {
		typeNames = map[string]bool{}
		for _, val := range e.Values {
			typeNames[val.Name] = true
		}
	} else if len(v.s.Families) > 0 {
		v.errorf("families", "", "the enum %s they partition is not declared", FamilyEnum)
	}
	familyOf := map[string]string{}
	for i, f := range v.s.Families {
		place := fmt.Sprintf("families[%d]", i)
		if !snakeRE.MatchString(f.Name) || strings.Contains(f.Name, "_") {
			// A family is the last word of its channels' names and a pool's name: one
			// lowercase word keeps both unambiguous.
			v.errorf(place, f.Name, "name is not one lowercase word")
		}
		v.unique(names, place, f.Name, f.Name, "name")
		v.doc(place, f.Name, f.Doc)
		if len(f.Types) == 0 {
			v.errorf(place, f.Name, "no types")
		}
		for j, t := range f.Types {
			tplace := fmt.Sprintf("%s.types[%d]", place, j)
			if typeNames != nil && !typeNames[t] {
				v.errorf(tplace, t, "not a value of %s", FamilyEnum)
			}
			if first, ok := familyOf[t]; ok {
				v.errorf(tplace, t, "already in %s: a type belongs to one family", first)
			} else {
				familyOf[t] = place
			}
		}
	}
	if len(v.s.Families) > 0 && typeNames != nil {
		for _, val := range v.enums[FamilyEnum].Values {
			if _, ok := familyOf[val.Name]; !ok {
				v.errorf("families", "", "%s %s is in no family: no stager pool would decide it", FamilyEnum, val.Name)
			}
		}
	}

	channels, goNames := map[string]string{}, map[string]string{}
	for i, c := range v.s.Channels {
		place := fmt.Sprintf("channels[%d]", i)
		if !channelRE.MatchString(c.Name) {
			v.errorf(place, c.Name, "name is not pollux_ then lowercase snake_case")
		}
		v.doc(place, c.Name, c.Doc)
		v.unique(goNames, place, c.Name, c.GoName(), "Go name "+c.GoName())
		if c.PerFamily && len(v.s.Families) == 0 {
			v.errorf(place, c.Name, "per_family without families")
		}
		// A channel is an identifier to LISTEN: a longer name would be truncated, and the
		// listener would wait on another channel than the one notified.
		for _, n := range c.Names(v.s.Families) {
			v.unique(channels, place, c.Name, n, "channel "+n)
			if len(n) > maxIdentLen {
				v.errorf(place, c.Name, "channel %s is longer than %d bytes", n, maxIdentLen)
			}
		}
		if len(c.SQLFunction()) > maxIdentLen {
			v.errorf(place, c.Name, "function %s is longer than %d bytes", c.SQLFunction(), maxIdentLen)
		}
	}

	// The generated functions share the described functions' namespace.
	described := map[string]bool{}
	for _, f := range v.s.Functions {
		described[f.Name] = true
	}
	for _, sig := range v.s.nameSignatures() {
		if described[sig.Name] {
			v.errorf("functions", sig.Name, "a described function has the name of a generated one (%s)", NamesFile)
		}
	}
}
