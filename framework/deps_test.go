package framework_test

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/pollux-storage/pollux"

// TestDependencyRules states the layering as a test over `go list -deps`: the framework is
// reusable (it never imports Pollux's schema, model, daemons or commands), daemons reach
// the database only through framework/pg and the generated model, never pgx itself, and
// nothing a client links (the client commands, rhd's API, model/wire) depends on pgx.
func TestDependencyRules(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("go", "list", "-deps=false", "-json", module+"/...")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	type pkg struct {
		ImportPath string
		Imports    []string
	}
	var pkgs []pkg
	dec := json.NewDecoder(out)
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else {
			require.NoError(t, err)
		}
		pkgs = append(pkgs, p)
	}
	require.NoError(t, cmd.Wait())
	require.NotEmpty(t, pkgs)

	deps := func(p string) []string {
		out, err := exec.Command("go", "list", "-deps", p).Output()
		require.NoError(t, err)
		return strings.Fields(string(out))
	}
	for _, p := range pkgs {
		rel := strings.TrimPrefix(p.ImportPath, module+"/")
		switch {
		case strings.HasPrefix(rel, "framework/"):
			for _, d := range deps(p.ImportPath) {
				for _, banned := range []string{"/schema", "/model", "/daemons", "/cmd", "/codegen", "/testsuites"} {
					require.False(t, strings.HasPrefix(d, module+banned), "%s imports %s: the framework must stay Pollux-agnostic", rel, d)
				}
			}
		case strings.HasPrefix(rel, "daemons/"):
			for _, imp := range p.Imports {
				require.False(t, strings.HasPrefix(imp, "github.com/jackc/pgx"), "%s imports %s directly: go through framework/pg and model", rel, imp)
			}
		case rel == "model":
			for _, imp := range p.Imports {
				require.False(t, strings.HasPrefix(imp, module+"/") && imp != module+"/model/wire",
					"model is generated from the description alone; it imports %s", imp)
			}
		case rel == "model/wire":
			for _, imp := range p.Imports {
				require.NotContains(t, strings.SplitN(imp, "/", 2)[0], ".", "model/wire is for clients and imports only the standard library; it imports %s", imp)
			}
		}
		if clientFacing(rel) {
			for _, d := range deps(p.ImportPath) {
				require.False(t, strings.HasPrefix(d, "github.com/jackc/pgx"),
					"%s depends on %s: clients and rhd's API must not link the database driver; use model/wire, not model", rel, d)
			}
		}
	}
	for _, want := range []string{"cmd/client", "cmd/stager_put", "cmd/pollux", "daemons/rhd/api", "model/wire"} {
		found := false
		for _, p := range pkgs {
			found = found || p.ImportPath == module+"/"+want
		}
		require.True(t, found, "%s is gone: update clientFacing", want)
	}
}

// clientFacing are the packages a user's machine runs or that define what it reads: the
// client commands, their shared package, rhd's wire contract and the generated wire types.
func clientFacing(rel string) bool {
	switch {
	case rel == "cmd/client", rel == "cmd/pollux", strings.HasPrefix(rel, "cmd/stager_"):
		return true
	case rel == "daemons/rhd/api", rel == "model/wire":
		return true
	}
	return false
}
