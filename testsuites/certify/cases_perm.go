package certify

import (
	"strings"
)

// Permission denials between two users (docs/decisions.md, "Who may do what"): the first
// user's file, mode 0644 by the default umask, is readable by the second and nothing else;
// each refusal exits 1, names path, owner, mode and user, and changes nothing.
func init() {
	// denied runs a command as the second user and expects a refusal naming them.
	denied := func(t *T, o Out) {
		want := []string{"permission denied"}
		if u := t.user(User2); u != "" {
			want = append(want, "you are "+u)
		}
		t.Fails(o, 1, want...)
	}
	perm := func(id, purpose string, run func(t *T, p string, data []byte)) Case {
		return Case{ID: "perm/" + id, Purpose: purpose, Needs: []Need{NeedUser2}, Run: func(t *T) {
			p, data := t.Store("f", 2000)
			run(t, p, data)
			// Nothing the second user tried changed the first user's file.
			t.CheckStaged(p, data)
		}}
	}
	register(
		perm("other-may-read", "a second user may query and read a file of mode 0644",
			func(t *T, p string, data []byte) {
				o := t.OK(t.CmdAs(User2, "stager_qry", "-M", p))
				t.Check(strings.HasPrefix(o.Stdout, p+" STAGED"), "stager_qry as the second user: %s", o)
				got := t.ReadBackAs(User2, p)
				t.Check(string(got) == string(data), "the second user read other bytes")
				t.Evidence("the second user queried and read the file byte for byte")
			}),
		perm("overwrite-denied", "a second user's put over the first user's file is refused",
			func(t *T, p string, _ []byte) {
				local, _ := t.File("evil", 10)
				denied(t, t.CmdAs(User2, "pollux", "cp", local, p))
			}),
		perm("putdone-denied", "a second user's putdone of the first user's file is refused",
			func(t *T, p string, _ []byte) { denied(t, t.CmdAs(User2, "stager_putdone", "-M", p)) }),
		perm("rm-denied", "a second user's rm of the first user's file is refused",
			func(t *T, p string, _ []byte) { denied(t, t.CmdAs(User2, "stager_rm", "-M", p)) }),
		perm("create-in-other-directory-denied", "a second user may not create a file in the first user's directory",
			func(t *T, p string, _ []byte) {
				local, _ := t.File("evil", 10)
				other := t.Unused("intruder")
				denied(t, t.CmdAs(User2, "stager_put", "-M", other, "--file", local))
				t.CheckMissing(other)
			}),
		Case{ID: "perm/rm-during-other-write-denied", Purpose: "a second user may not remove the first user's file while it is being rewritten; the write goes on",
			Needs: []Need{NeedUser2},
			Run: func(t *T) {
				p, _ := t.Store("f", 2000)
				cl := t.Client(User1)
				putID, s := t.Ready(cl, "PUT", p)
				denied(t, t.CmdAs(User2, "stager_rm", "-M", p))
				local, data := t.File("new", 3000)
				if _, err := cl.Upload(t.Ctx, s.MoverURL, s.Token, local, nil); err != nil {
					t.Fatalf("the rewrite's upload after the refused rm: %v", err)
				}
				t.OK(t.Cmd("stager_putdone", "-M", p))
				t.FinalOne(cl, putID)
				t.CheckStaged(p, data)
			}},
	)
	register(Case{ID: "perm/private-file-hidden", Purpose: "after the owner's admin makes a file 0600, the second user can neither query nor read it", Needs: []Need{NeedUser2, NeedAdmin},
		Run: func(t *T) {
			p, data := t.Store("f", 2000)
			t.OK(t.Admin("ns", "chmod", p, "0600"))
			t.Evidence("pollux-admin ns chmod %s 0600", p)
			denied(t, t.CmdAs(User2, "stager_qry", "-M", p))
			denied(t, t.CmdAs(User2, "stager_get", "-M", p))
			denied(t, t.CmdAs(User2, "stager_prepareToGet", "-M", p))
			t.CheckStaged(p, data)
		}})
}
