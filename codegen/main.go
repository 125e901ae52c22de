// Command codegen generates the packages model and model/wire, the generated logic files
// of schema/logic and the generated docs from the schema description (`go run ./codegen`,
// which `make generate` runs). With -check it writes nothing and exits 1 when the files on
// disk are not what it would generate.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pollux-storage/pollux/codegen/desc"
	"github.com/pollux-storage/pollux/codegen/gen"
)

// owned are the files that belong to this generator wherever they are found, so that one
// it no longer produces (after a rename of an output) is removed rather than left to
// compile or to be installed: the *_gen files of model/, model/wire/ and schema/logic/. A
// hand-written file must not take such a name.
var owned = []string{"model/*_gen.go", "model/wire/*_gen.go", "schema/logic/*_gen.sql"}

func main() {
	schema := flag.String("schema", "schema/pollux.yaml", "schema description to generate from")
	root := flag.String("root", ".", "repository root the generated paths are relative to")
	check := flag.Bool("check", false, "write nothing; report files that differ from what would be generated and exit 1")
	flag.Parse()

	code, err := run(*schema, *root, *check, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "codegen: %v\n", err)
		os.Exit(2)
	}
	os.Exit(code)
}

// run generates (or with check compares) and returns the exit code.
func run(schema, root string, check bool, stdout io.Writer) (int, error) {
	files, err := render(schema, root)
	if err != nil {
		return 0, err
	}
	if check {
		reports, err := compare(root, files)
		if err != nil {
			return 0, err
		}
		for _, r := range reports {
			fmt.Fprint(stdout, r)
		}
		if len(reports) > 0 {
			return 1, nil
		}
		return 0, nil
	}
	return 0, write(root, files)
}

// render loads the description and renders it, naming it in the headers by its path
// relative to root so that the output does not depend on where the checkout is.
func render(schema, root string) (map[string][]byte, error) {
	s, err := desc.LoadFile(schema)
	if err != nil {
		return nil, err
	}
	source := schema
	if rel, err := relPath(root, schema); err == nil {
		source = rel
	}
	return gen.Render(s, filepath.ToSlash(source))
}

func relPath(root, p string) (string, error) {
	absRoot, err := filepath.Abs(root)
	if err != nil {
		return "", err
	}
	absP, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	rel, err := filepath.Rel(absRoot, absP)
	if err != nil || strings.HasPrefix(rel, "..") {
		return "", errors.New("outside root")
	}
	return rel, nil
}

func sortedPaths(files map[string][]byte) []string {
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	return paths
}

// write writes every file that changed and removes owned files that are no longer
// produced (e.g. after a rename of an output), so that they cannot linger and still
// compile or be installed.
func write(root string, files map[string][]byte) error {
	for _, p := range sortedPaths(files) {
		full := filepath.Join(root, filepath.FromSlash(p))
		if old, err := os.ReadFile(full); err == nil && bytes.Equal(old, files[p]) {
			continue // keep the modification time, so that make sees nothing new
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
		if err := os.WriteFile(full, files[p], 0o644); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	stale, err := staleFiles(root, files)
	if err != nil {
		return err
	}
	for _, p := range stale {
		if err := os.Remove(filepath.Join(root, filepath.FromSlash(p))); err != nil {
			return fmt.Errorf("remove stale %s: %w", p, err)
		}
	}
	return nil
}

// staleFiles lists the owned files on disk that files does not contain.
func staleFiles(root string, files map[string][]byte) ([]string, error) {
	var stale []string
	for _, pattern := range owned {
		matches, err := filepath.Glob(filepath.Join(root, filepath.FromSlash(pattern)))
		if err != nil {
			return nil, fmt.Errorf("list generated files: %w", err)
		}
		for _, m := range matches {
			p := path.Join(path.Dir(pattern), filepath.Base(m))
			if _, ok := files[p]; !ok {
				stale = append(stale, p)
			}
		}
	}
	slices.Sort(stale)
	return stale, nil
}

// compare returns one report per file on disk that differs from files, is missing, or
// is a generated file no longer produced; none when everything is up to date.
func compare(root string, files map[string][]byte) ([]string, error) {
	var reports []string
	for _, p := range sortedPaths(files) {
		old, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(p)))
		switch {
		case errors.Is(err, os.ErrNotExist):
			reports = append(reports, fmt.Sprintf("missing: %s\n", p))
		case err != nil:
			return nil, fmt.Errorf("compare %s: %w", p, err)
		case !bytes.Equal(old, files[p]):
			reports = append(reports, fmt.Sprintf("stale: %s\n%s", p, diff(p, old, files[p])))
		}
	}
	stale, err := staleFiles(root, files)
	if err != nil {
		return nil, err
	}
	for _, p := range stale {
		reports = append(reports, fmt.Sprintf("no longer generated: %s\n", p))
	}
	return reports, nil
}

// maxDiffLines caps each side of a diff: the point is to show where the files part, and
// regenerating is the fix whatever the size of the change.
const maxDiffLines = 20

// diff shows, in unified-diff form, the one hunk between the first and the last line
// that differ. It is coarser than a real diff but needs no algorithm worth testing.
func diff(name string, old, new []byte) string {
	a, b := lines(old), lines(new)
	prefix := 0
	for prefix < len(a) && prefix < len(b) && a[prefix] == b[prefix] {
		prefix++
	}
	suffix := 0
	for suffix < len(a)-prefix && suffix < len(b)-prefix && a[len(a)-1-suffix] == b[len(b)-1-suffix] {
		suffix++
	}
	const context = 3
	start := max(prefix-context, 0)
	endA, endB := min(len(a)-suffix+context, len(a)), min(len(b)-suffix+context, len(b))

	var sb strings.Builder
	fmt.Fprintf(&sb, "--- %s (on disk)\n+++ %s (generated)\n", name, name)
	fmt.Fprintf(&sb, "@@ -%d,%d +%d,%d @@\n", start+1, endA-start, start+1, endB-start)
	for _, l := range a[start:prefix] {
		sb.WriteString(" " + l + "\n")
	}
	writeSide(&sb, "-", a[prefix:len(a)-suffix])
	writeSide(&sb, "+", b[prefix:len(b)-suffix])
	for _, l := range a[len(a)-suffix : endA] {
		sb.WriteString(" " + l + "\n")
	}
	return sb.String()
}

func writeSide(sb *strings.Builder, mark string, ls []string) {
	for i, l := range ls {
		if i == maxDiffLines {
			fmt.Fprintf(sb, "%s... (%d more lines)\n", mark, len(ls)-i)
			return
		}
		sb.WriteString(mark + l + "\n")
	}
}

func lines(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}
