package desc

// Signature is a logic function as the catalogue prints it: what a test compares with
// pg_proc, and what a daemon checks at readiness.
type Signature struct {
	Name string
	// File is the logic file (in schema/logic) that defines the function.
	File string
	// IdentityArgs is pg_get_function_identity_arguments(), Result
	// pg_get_function_result().
	IdentityArgs string
	Result       string
	// Generated is true for a function codegen writes from the description (the state
	// machines' trigger functions, the shared names), false for one described under
	// functions.
	Generated bool
}

// Signatures returns every logic function: the described ones in declaration order, then
// the generated ones.
func (s *Schema) Signatures() []Signature {
	var out []Signature
	for _, f := range s.Functions {
		out = append(out, Signature{Name: f.Name, File: f.File, IdentityArgs: f.IdentityArgs(), Result: f.Result()})
	}
	return append(out, s.GeneratedSignatures()...)
}

// GeneratedSignatures returns the functions codegen writes into schema/logic: the state
// machines' trigger functions, then the shared names.
func (s *Schema) GeneratedSignatures() []Signature {
	var out []Signature
	for _, g := range s.Guards() {
		out = append(out, Signature{Name: g.Function, File: TransitionsFile, Result: "trigger", Generated: true})
	}
	for _, h := range s.Histories() {
		out = append(out, Signature{Name: h.Function, File: TransitionsFile, Result: "trigger", Generated: true})
	}
	return append(out, s.nameSignatures()...)
}
