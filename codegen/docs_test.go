package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestDocsLinkInsideTheRepository keeps docs/ self-contained, generated pages and
// hand-written ones alike: every Markdown link is relative and names a file that exists in
// the checkout, so the docs read the same offline, in any viewer, at any commit.
func TestDocsLinkInsideTheRepository(t *testing.T) {
	t.Parallel()
	root := ".."
	pages, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	require.NoError(t, err)
	require.NotEmpty(t, pages)
	for _, page := range pages {
		b, err := os.ReadFile(page)
		require.NoError(t, err)
		for _, m := range mdLink.FindAllStringSubmatch(string(b), -1) {
			target := m[1]
			require.NotRegexp(t, `^[a-z][a-z0-9+.-]*:|^//|^/`, target, "%s links outside the repository: %s", page, target)
			file, _, _ := strings.Cut(target, "#")
			if file == "" {
				continue // an anchor of the page itself
			}
			full := filepath.Join(filepath.Dir(page), filepath.FromSlash(file))
			rel, err := filepath.Rel(root, full)
			require.NoError(t, err)
			require.False(t, strings.HasPrefix(rel, ".."), "%s links outside the repository: %s", page, target)
			require.FileExists(t, full, "%s links to %s", page, target)
		}
	}
}
