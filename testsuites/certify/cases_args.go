package certify

import (
	"os"
	"strings"
)

// Bad command lines: each command refuses them with exit 1 and says what was wrong,
// before anything is asked of the service.
func init() {
	requestCommands := []string{"stager_put", "stager_get", "stager_putdone", "stager_prepareToGet", "stager_rm"}
	for _, name := range append(requestCommands, "stager_qry") {
		id := "args/" + strings.ToLower(strings.ReplaceAll(name, "_", "-"))
		register(
			Case{ID: id + "/no-file", Purpose: name + " without -M exits 1 saying a file must be named",
				Run: func(t *T) { t.Fails(t.Cmd(name), 1, "no file given") }},
			Case{ID: id + "/positional-argument", Purpose: name + " with a bare argument exits 1 naming it and telling to use -M",
				Run: func(t *T) {
					t.Fails(t.Cmd(name, t.Unused("bare")), 1, "unexpected argument", "name files with -M")
				}},
			Case{ID: id + "/unknown-flag", Purpose: name + " with an unknown flag exits 1 and names it",
				Run: func(t *T) { t.Fails(t.Cmd(name, "--no-such-flag", "-M", t.Unused("f")), 1, "no-such-flag") }},
			Case{ID: id + "/bad-service-timeout", Purpose: name + " refuses a --service-timeout that is not a positive duration",
				Run: func(t *T) {
					t.Fails(t.Cmd(name, "--service-timeout", "-5s", "-M", t.Unused("f")), 1, "service-timeout", "positive duration")
				}},
			Case{ID: id + "/help", Purpose: name + " --help exits 0 and documents -M and the exit codes",
				Run: func(t *T) {
					o := t.Cmd(name, "--help")
					t.Check(o.Code == 0 && strings.Contains(o.Stderr, "-M") && strings.Contains(o.Stderr, "Exit codes"), "help: %s", o)
					t.Evidence("%s --help exited 0 and documents -M and the exit codes", name)
				}},
		)
	}
	for _, name := range []string{"stager_put", "stager_get"} {
		id := "args/" + strings.ReplaceAll(name, "_", "-")
		register(
			Case{ID: id + "/file-with-two-paths", Purpose: name + " --file with two -M exits 1: one local file goes with one Pollux file",
				Run: func(t *T) {
					t.Fails(t.Cmd(name, "--file", t.Local("x"), "-M", t.Unused("a"), "-M", t.Unused("b")), 1, "--file goes with exactly one -M")
				}},
			Case{ID: id + "/file-without-wait", Purpose: name + " --file with --no-wait exits 1: the transfer needs the wait",
				Run: func(t *T) {
					t.Fails(t.Cmd(name, "--no-wait", "--file", t.Local("x"), "-M", t.Unused("a")), 1, "drop --no-wait")
				}},
		)
	}
	register(
		Case{ID: "args/stager-put/missing-local-file", Purpose: "stager_put --file of a missing local file exits 1 and creates nothing in Pollux",
			Run: func(t *T) {
				p := t.Unused("never")
				t.Fails(t.Cmd("stager_put", "--file", t.Local("missing"), "-M", p), 1, "the file to upload", "no such file")
				t.CheckMissing(p)
			}},
		Case{ID: "args/stager-put/local-directory", Purpose: "stager_put --file of a directory exits 1: only regular files are uploaded",
			Run: func(t *T) {
				p := t.Unused("never")
				t.Fails(t.Cmd("stager_put", "--file", t.dir, "-M", p), 1, "is not a regular file")
				t.CheckMissing(p)
			}},
		Case{ID: "args/stager-get/missing-local-directory", Purpose: "stager_get --file into a missing local directory exits 1 before any request is made",
			Run: func(t *T) {
				t.Fails(t.Cmd("stager_get", "--file", t.Local("no/such/dir/f"), "-M", t.Unused("f")), 1, "the directory to download into")
			}},
		Case{ID: "args/pollux/no-command", Purpose: "pollux without a command exits 1 with its usage",
			Run: func(t *T) { t.Fails(t.Cmd("pollux"), 1, "pollux cp") }},
		Case{ID: "args/pollux/unknown-command", Purpose: "pollux with an unknown command exits 1 naming it",
			Run: func(t *T) { t.Fails(t.Cmd("pollux", "mv", "a", "b"), 1, `unknown command "mv"`) }},
		Case{ID: "args/pollux/cp-one-argument", Purpose: "pollux cp with one argument exits 1 asking for a source and a destination",
			Run: func(t *T) { t.Fails(t.Cmd("pollux", "cp", t.Unused("f")), 1, "give a source and a destination") }},
		Case{ID: "args/pollux/cp-both-local", Purpose: "pollux cp between two local files exits 1: one side must be in Pollux",
			Run: func(t *T) {
				t.Fails(t.Cmd("pollux", "cp", t.Local("a"), t.Local("b")), 1, "one of SRC and DST must be a Pollux path")
			}},
		Case{ID: "args/pollux/cp-both-remote", Purpose: "pollux cp between two Pollux files exits 1: one side must be local",
			Run: func(t *T) {
				t.Fails(t.Cmd("pollux", "cp", t.Unused("a"), t.Unused("b")), 1, "one of SRC and DST must be a Pollux path")
			}},
		Case{ID: "args/pollux/cp-missing-source", Purpose: "pollux cp of a missing local file exits 1 and creates nothing in Pollux",
			Run: func(t *T) {
				p := t.Unused("never")
				t.Fails(t.Cmd("pollux", "cp", t.Local("missing"), p), 1, "no such file")
				t.CheckMissing(p)
			}},
		Case{ID: "args/env/no-stage-host", Purpose: "a command without STAGE_HOST exits 1 and says how to set it",
			Run: func(t *T) {
				t.Fails(t.CmdEnv(map[string]string{"STAGE_HOST": ""}, "stager_qry", "-M", t.Unused("f")), 1, "STAGE_HOST is not set", "export STAGE_HOST")
			}},
		Case{ID: "args/env/bad-stage-port", Purpose: "a STAGE_PORT that is not a port number is refused with exit 1",
			Run: func(t *T) {
				t.Fails(t.CmdEnv(map[string]string{"STAGE_PORT": "ninety"}, "stager_qry", "-M", t.Unused("f")), 1, "STAGE_PORT", "not a port number")
			}},
		Case{ID: "args/env/bad-service-timeout", Purpose: "a POLLUX_SERVICE_TIMEOUT that is not a duration is refused with exit 1 naming the variable",
			Run: func(t *T) {
				t.Fails(t.CmdEnv(map[string]string{"POLLUX_SERVICE_TIMEOUT": "soon"}, "stager_qry", "-M", t.Unused("f")), 1, "POLLUX_SERVICE_TIMEOUT")
			}},
		Case{ID: "args/env/bad-ca-file", Purpose: "a POLLUX_CA_FILE that cannot be read is refused with exit 1 naming the variable",
			Run: func(t *T) {
				bad := t.Local("ca.pem")
				if err := os.WriteFile(bad, []byte("not a certificate"), 0o644); err != nil {
					t.Fatalf("write %s: %v", bad, err)
				}
				t.Fails(t.CmdEnv(map[string]string{"POLLUX_CA_FILE": bad}, "stager_qry", "-M", t.Unused("f")), 1, "POLLUX_CA_FILE")
			}},
	)
}
