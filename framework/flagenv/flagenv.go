// Package flagenv parses a command line whose every flag can also come from the
// environment: --drain-timeout from POLLUX_DRAIN_TIMEOUT. The mapping is mechanical, a flag
// on the command line wins, and POLLUX_* variables that match no flag are returned so that
// the caller reports them (a typo in a variable name must not pass silently), as etcd's
// pkg/flags does.
package flagenv

import (
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Name is the environment variable that stands in for a flag: --drain-timeout becomes
// POLLUX_DRAIN_TIMEOUT. The mapping is mechanical so that nobody has to look it up.
func Name(flagName string) string {
	return "POLLUX_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse parses args, then fills every flag not given on the command line from its
// environment variable. It returns the POLLUX_* variables that match neither a flag nor
// ignore.
func Parse(fs *flag.FlagSet, args []string, environ []string, ignore map[string]bool) ([]string, error) {
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags start with --)", fs.Arg(0))
	}
	return ApplyEnv(fs, environ, ignore)
}

// ApplyEnv sets every flag of the already parsed fs that the command line did not give
// from its environment variable, and returns the unknown POLLUX_* variables.
func ApplyEnv(fs *flag.FlagSet, environ []string, ignore map[string]bool) ([]string, error) {
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
		name := Name(f.Name)
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

// PrintHelp explains a command and every flag with its environment variable and default.
func PrintHelp(w io.Writer, name, summary, usage, description string, fs *flag.FlagSet) {
	fmt.Fprintf(w, "%s — %s\n\nUsage: %s\n\n", name, summary, usage)
	if description != "" {
		fmt.Fprintf(w, "%s\n\n", strings.TrimSpace(description))
	}
	fmt.Fprintf(w, "Every flag can also be given as the environment variable shown beside it;\na flag on the command line wins.\n\nFlags:\n")
	fs.VisitAll(func(f *flag.Flag) {
		typ, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  --%s", f.Name)
		if typ != "" {
			fmt.Fprintf(w, " %s", typ)
		}
		fmt.Fprintf(w, "    (%s)\n        %s", Name(f.Name), usage)
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" {
			fmt.Fprintf(w, " (default %q)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}
