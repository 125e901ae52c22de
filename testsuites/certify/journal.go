package certify

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/pollux-storage/pollux/cmd/client"
	"github.com/pollux-storage/pollux/daemons/rhd/api"
	"github.com/pollux-storage/pollux/model/wire"
)

// journal is the list of paths a run may have created, kept in a file so that a run that
// was interrupted (killed, its machine rebooted) is cleaned up by the next one: the
// instance has no listing a client could use to find them. A path is written, and
// synced, before the request that creates it is sent. The file is locked while a run uses
// it, so two runs against one instance from one account do not clean up each other's
// files while they run.
type journal struct {
	mu   sync.Mutex
	f    *os.File
	list []entry
}

type entry struct {
	user int
	path string
}

func openJournal(path string) (*journal, []entry, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, nil, fmt.Errorf("journal directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open journal: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("journal %s is in use by another pollux-certify run against this instance: wait for it to end, or give this run --journal FILE of its own", path)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("read journal %s: %w", path, err)
	}
	lines := strings.Split(string(b), "\n")
	// The last element follows the last newline: empty, or a line the interruption cut
	// short, which names no path that was created (a path is journaled before its request).
	lines = lines[:len(lines)-1]
	var left []entry
	for _, line := range lines {
		u, p, ok := strings.Cut(line, "\t")
		n, err := strconv.Atoi(u)
		if !ok || err != nil || (n != User1 && n != User2) || !strings.HasPrefix(p, "/pollux/") {
			continue
		}
		left = append(left, entry{n, p})
	}
	j := &journal{f: f, list: slices.Clone(left)}
	return j, left, nil
}

func (j *journal) add(user int, path string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if slices.Contains(j.list, entry{user, path}) {
		return nil
	}
	if _, err := j.f.Seek(0, 2); err != nil {
		return err
	}
	if _, err := fmt.Fprintf(j.f, "%d\t%s\n", user, path); err != nil {
		return err
	}
	j.list = append(j.list, entry{user, path})
	return j.f.Sync()
}

func (j *journal) entries() []entry {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.list)
}

// keep rewrites the journal with what the cleanup could not remove.
func (j *journal) keep(left []entry) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.f.Truncate(0); err != nil {
		return err
	}
	if _, err := j.f.Seek(0, 0); err != nil {
		return err
	}
	for _, e := range left {
		if _, err := fmt.Fprintf(j.f, "%d\t%s\n", e.user, e.path); err != nil {
			return err
		}
	}
	j.list = slices.Clone(left)
	return j.f.Sync()
}

func (j *journal) close() {
	name := j.f.Name()
	empty := len(j.entries()) == 0
	j.f.Close()
	if empty {
		_ = os.Remove(name)
	}
}

// cleanup removes the journal's paths (stager_rm through the client library, a thousand
// at a time, as the user who created each) and keeps in the journal what it could not
// remove; a path already gone counts as removed. It says what it did.
func (s *suite) cleanup(ctx context.Context, list []entry, whose string) []string {
	var said []string
	var left []entry
	removed, gone := 0, 0
	for _, user := range []int{User1, User2} {
		var paths []string
		for _, e := range list {
			if e.user == user {
				paths = append(paths, e.path)
			}
		}
		if len(paths) == 0 {
			continue
		}
		if user == User2 && s.cfg.Token2 == "" {
			said = append(said, fmt.Sprintf("%d files of %s belong to the second user, whose token this run lacks: kept in the journal", len(paths), whose))
			for _, p := range paths {
				left = append(left, entry{user, p})
			}
			continue
		}
		cfg, err := client.ConfigFromEnv(s.getenv(user))
		if err != nil {
			said = append(said, fmt.Sprintf("cleanup of %s: %v", whose, err))
			continue
		}
		cl := client.New(cfg)
		cl.ServiceTimeout = s.cfg.ServiceTimeout
		for len(paths) > 0 {
			n := min(len(paths), 1000)
			batch := paths[:n]
			paths = paths[n:]
			r, g, failed, err := rmBatch(ctx, cl, batch)
			removed, gone = removed+r, gone+g
			if err != nil {
				said = append(said, fmt.Sprintf("cleanup of %s: %v", whose, err))
				failed = batch
			}
			for _, p := range failed {
				left = append(left, entry{user, p})
			}
		}
		cl.Close()
	}
	said = append(said, fmt.Sprintf("cleanup of %s: removed %d files, %d were already gone, %d could not be removed", whose, removed, gone, len(left)))
	// What is gone leaves the journal; what could not be removed stays, beside the paths
	// that were not part of this cleanup.
	rest := left
	for _, e := range s.journal.entries() {
		if !slices.Contains(list, e) {
			rest = append(rest, e)
		}
	}
	if err := s.journal.keep(rest); err != nil {
		said = append(said, "rewrite journal: "+err.Error())
	}
	return said
}

func rmBatch(ctx context.Context, cl *client.Client, paths []string) (removed, gone int, failed []string, err error) {
	sub, err := cl.Submit(ctx, api.SubmitRequest{ID: client.NewRequestID(), Type: string(wire.RequestTypeRm), Paths: paths}, 0)
	if err != nil {
		return 0, 0, nil, err
	}
	req, err := cl.Wait(ctx, sub.ID, sub.Request, client.Over, nil, nil)
	if err != nil {
		return 0, 0, nil, err
	}
	for _, s := range req.Subrequests {
		switch {
		case s.Status == string(wire.SubrequestStatusFinished):
			removed++
		case s.ErrorCode == "PX001":
			gone++
		default:
			failed = append(failed, s.Path)
		}
	}
	return removed, gone, failed, nil
}
