package certify

import (
	"fmt"
	"strings"
)

// Bad paths: every request type and stager_qry refuse them with exit 1 and the reason,
// and create nothing.
func init() {
	bad := []struct {
		id, path, says string
	}{
		{"relative", "pollux/certify/relative", "relative"},
		{"outside-namespace", "/etc/certify", "outside the namespace"},
		{"dot-dot", "/pollux/certify/../escape", `"." or ".."`},
		{"dot", "/pollux/certify/./here", `"." or ".."`},
		{"empty-component", "/pollux/certify//double", "empty component"},
		{"trailing-slash", "/pollux/certify/dir/", "trailing slash"},
		{"control-character", "/pollux/certify/bell\x07", "control character U+0007"},
		{"invisible-character", "/pollux/certify/zero\u200bwidth", "invisible formatting character U+200B"},
		{"too-long", "/pollux/certify/" + strings.Repeat("x", 1100), "at most 1023"},
	}
	cmds := []string{"stager_put", "stager_get", "stager_prepareToGet", "stager_putdone", "stager_rm", "stager_qry"}
	for _, b := range bad {
		for _, name := range cmds {
			args := []string{"-M", b.path}
			if name == "stager_put" || name == "stager_get" {
				args = append([]string{"--no-wait"}, args...)
			}
			register(Case{
				ID:      fmt.Sprintf("paths/%s/%s", b.id, strings.ToLower(strings.ReplaceAll(name, "_", "-"))),
				Purpose: fmt.Sprintf("%s of a path with %s exits 1 saying %q", name, strings.ReplaceAll(b.id, "-", " "), b.says),
				Run:     func(t *T) { t.Fails(t.Cmd(name, args...), 1, b.says) },
			})
		}
	}
	register(
		Case{ID: "paths/named-twice", Purpose: "a request naming one file twice is refused whole with exit 1",
			Run: func(t *T) {
				p := t.Unused("twice")
				t.Fails(t.Cmd("stager_put", "--no-wait", "-M", p, "-M", p), 1, "more than once")
				t.CheckMissing(p)
			}},
		Case{ID: "paths/too-many-files", Purpose: "a request of 1001 files is refused whole with exit 1 stating the limit",
			Run: func(t *T) {
				var args []string
				for i := range 1001 {
					args = append(args, "-M", t.Unused(fmt.Sprintf("f%04d", i)))
				}
				t.Fails(t.Cmd("stager_prepareToGet", args...), 1, "1000")
			}},
		Case{ID: "paths/nfd-normalised", Purpose: "a name written decomposed (NFD) is stored as its NFC form: both spellings find the one file",
			Run: func(t *T) {
				nfc, nfd := "caf\u00e9.txt", "cafe\u0301.txt"
				local, data := t.File("cafe", 321)
				p := t.Path(nfc)
				t.OK(t.Cmd("pollux", "cp", local, t.Dir()+"/"+nfd))
				t.CheckStaged(p, data)
				o := t.OK(t.Cmd("stager_qry", "-M", t.Dir()+"/"+nfd))
				t.Check(strings.Contains(o.Stdout, nfc), "stager_qry of the NFD spelling answers %q, want the NFC name", o.Stdout)
				t.Evidence("stager_qry of the NFD spelling answers the NFC name")
			}},
	)
}
