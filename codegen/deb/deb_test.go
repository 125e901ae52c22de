package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/framework/pgcluster"
)

func TestParseHelp(t *testing.T) {
	t.Parallel()
	h, err := parseHelp(`stagerd — decide new subrequests

Usage: stagerd [flags]

Claims new subrequests.

  an indented listing
  of two lines

Flags:
  --admin-addr string    (POLLUX_ADMIN_ADDR)
        Address of the admin listener. (default "127.0.0.1:0")
  -M PATH
        the PATH of a file,
        repeatable

Environment:
  STAGE_HOST      the request handlers

Exit codes: 0 success,
1 a user error.
`)
	require.NoError(t, err)
	require.Equal(t, "stagerd", h.Name)
	require.Equal(t, "decide new subrequests", h.Summary)
	require.Equal(t, []string{"stagerd [flags]"}, h.Usage)
	require.Equal(t, [][]string{{"Claims new subrequests."}}, h.Description[:1])
	require.Equal(t, []string{"Flags", "Environment"}, []string{h.Sections[0].Title, h.Sections[1].Title})
	require.Equal(t, []string{"Exit codes: 0 success,", "1 a user error."}, h.Exit)
	fl := h.flags()
	require.Len(t, fl, 2)
	require.Equal(t, "POLLUX_ADMIN_ADDR", fl[0].env())
	def, text, ok := fl[0].def()
	require.True(t, ok)
	require.Equal(t, []string{"127.0.0.1:0", "Address of the admin listener."}, []string{def, text})
	require.Equal(t, flagEntry{Head: "-M PATH", Text: "the PATH of a file, repeatable"}, fl[1])

	_, err = parseHelp("no dash line\n")
	require.ErrorContains(t, err, "name — summary")
}

// TestPackageInstallsAndRuns builds the package from the programs as `make build` builds
// them, installs it with dpkg into a scratch root, and runs what an operator would:
// pollux --help, man -l on a page, systemd-analyze verify on every unit. It checks that
// every daemon flag --help shows is in the daemon's page and settings file.
func TestPackageInstallsAndRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every program and a package of ~100 MB; -short leaves it out")
	}
	t.Parallel()
	for _, tool := range []string{"dpkg", "dpkg-deb", "man"} {
		_, err := exec.LookPath(tool)
		require.NoError(t, err, "%s is needed (make test/deps installs dpkg and man-db)", tool)
	}
	root, err := pgcluster.RepoRoot()
	require.NoError(t, err)
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "./cmd/...", "./daemons/...")
	build.Dir = root
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)

	work := t.TempDir()
	deb, err := Build(Options{Bin: bin, Out: work, Version: "0.0.0+test", Root: root})
	require.NoError(t, err)

	// A scratch root with an empty dpkg database; the maintainer script runs outside it
	// (there is no shell inside) and, seeing DPKG_ROOT, leaves the machine's accounts alone.
	inst := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates"} {
		require.NoError(t, os.MkdirAll(filepath.Join(inst, d), 0o755))
	}
	require.NoError(t, os.WriteFile(filepath.Join(inst, "var/lib/dpkg/status"), nil, 0o644))
	out, err = exec.Command("dpkg", "--root="+inst, "--force-script-chrootless", "--log=/dev/null", "-i", deb).CombinedOutput()
	require.NoError(t, err, "dpkg -i: %s", out)
	out, err = exec.Command("dpkg", "--root="+inst, "-s", "pollux").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "Status: install ok installed")

	out, err = exec.Command(filepath.Join(inst, "usr/bin/pollux"), "--help").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "pollux — copy files in and out of Pollux")

	man := func(page string) string {
		t.Helper()
		cmd := exec.Command("man", "-l", filepath.Join(inst, "usr/share/man", page))
		cmd.Env = append(os.Environ(), "MANWIDTH=100", "MANPAGER=cat", "PAGER=cat")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "man -l %s: %s", page, out)
		return string(out)
	}
	page := man("man1/pollux.1.gz")
	require.Contains(t, page, "pollux - copy files in and out of Pollux")
	require.Contains(t, page, "ENVIRONMENT")
	require.Contains(t, page, "STAGE_HOST")

	for d := range daemons {
		h, err := helpOf(filepath.Join(bin, d))
		require.NoError(t, err)
		page := man("man8/" + d + ".8.gz")
		env, err := os.ReadFile(filepath.Join(inst, "etc/pollux", d+".env"))
		require.NoError(t, err)
		for _, f := range h.flags() {
			name := strings.Fields(f.Head)[0]
			require.Contains(t, page, name, "%s(8) lacks a flag its --help shows", d)
			if v := f.env(); v != "" {
				require.Contains(t, string(env), v+"=", "/etc/pollux/%s.env lacks %s", d, v)
			}
		}
		unit, err := os.ReadFile(filepath.Join(inst, "lib/systemd/system/pollux-"+d+".service"))
		require.NoError(t, err)
		require.Contains(t, string(unit), "EnvironmentFile=/etc/pollux/"+d+".env")
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not found: the units are not verified (install systemd to verify them)")
		return
	}
	// The units name /usr/bin/<daemon>, which is in the scratch root, not on this machine:
	// verify copies that point into it, with the pages of the root for Documentation=.
	units := t.TempDir()
	var files []string
	for d := range daemons {
		b, err := os.ReadFile(filepath.Join(inst, "lib/systemd/system/pollux-"+d+".service"))
		require.NoError(t, err)
		u := strings.Replace(string(b), "ExecStart=/usr/bin/", "ExecStart="+filepath.Join(inst, "usr/bin")+"/", 1)
		p := filepath.Join(units, "pollux-"+d+".service")
		require.NoError(t, os.WriteFile(p, []byte(u), 0o644))
		files = append(files, p)
	}
	verify := func(files ...string) ([]byte, error) {
		cmd := exec.Command(analyze, append([]string{"verify"}, files...)...)
		cmd.Env = append(os.Environ(), "MANPATH="+filepath.Join(inst, "usr/share/man"))
		return cmd.CombinedOutput()
	}
	out, err = verify(files...)
	require.NoError(t, err, "systemd-analyze verify: %s", out)
	require.Empty(t, strings.TrimSpace(string(out)), "systemd-analyze verify has complaints")
	// The check is a real one: a unit with a mistake fails it.
	bad := filepath.Join(units, "pollux-bad.service")
	require.NoError(t, os.WriteFile(bad, []byte("[Service]\nExecStart=/nonexistent/rhd\n"), 0o644))
	_, err = verify(bad)
	require.Error(t, err, "systemd-analyze verify accepted a unit whose program does not exist")
}
