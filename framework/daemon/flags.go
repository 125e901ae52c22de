package daemon

import (
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// EnvName is the environment variable that stands in for a flag: --drain-timeout becomes
// POLLUX_DRAIN_TIMEOUT. The mapping is mechanical so that nobody has to look it up.
func EnvName(flagName string) string {
	return "POLLUX_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags parses args, then fills every flag not given on the command line from its
// environment variable. It returns the POLLUX_* variables that match no flag, which the
// caller reports (a typo in a variable name must not pass silently).
func parseFlags(fs *flag.FlagSet, args []string, environ []string, ignore map[string]bool) ([]string, error) {
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags start with --)", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "POLLUX_") {
			env[k] = v
		}
	}
	known := map[string]bool{}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		name := EnvName(f.Name)
		known[name] = true
		v, ok := env[name]
		if !ok || given[f.Name] || err != nil {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = fmt.Errorf("environment %s=%q: %w", name, v, e)
		}
	})
	if err != nil {
		return nil, err
	}
	var unknown []string
	for k := range env {
		if !known[k] && !ignore[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	return unknown, nil
}

// printHelp explains the daemon and every flag with its environment variable and default.
func printHelp(w io.Writer, spec *Spec, fs *flag.FlagSet) {
	fmt.Fprintf(w, "%s — %s\n\nUsage: %s [flags]\n\n", spec.Name, spec.Summary, spec.Name)
	if spec.Description != "" {
		fmt.Fprintf(w, "%s\n\n", strings.TrimSpace(spec.Description))
	}
	fmt.Fprintf(w, "Every flag can also be given as the environment variable shown beside it;\na flag on the command line wins.\n\nFlags:\n")
	fs.VisitAll(func(f *flag.Flag) {
		typ, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  --%s", f.Name)
		if typ != "" {
			fmt.Fprintf(w, " %s", typ)
		}
		fmt.Fprintf(w, "    (%s)\n        %s", EnvName(f.Name), usage)
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" {
			fmt.Fprintf(w, " (default %q)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}
