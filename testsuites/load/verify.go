package load

import (
	"context"
	"fmt"
	"hash/adler32"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pollux-storage/pollux/framework/pg"
)

// Report is the judge's verdict.
type Report struct {
	Issued, Acked, Failed int
	// FailedBy counts the operations not acknowledged, by the last line of what the
	// client said (its error).
	FailedBy map[string]int
	// Lost lists what was acknowledged and is not so: a stored file missing or with other
	// bytes, an rm that did not remove, a request the service recorded as failed.
	Lost []string
	// Corrupt lists files whose put was not acknowledged yet that read back wrong (a file
	// is either absent or right, whatever its put's fate).
	Corrupt []string
	// Stuck lists requests still not in a final state when the judge gave up waiting.
	Stuck []string
	// FilesVerified counts files read back with the right bytes.
	FilesVerified int
	// Requests counts the requests found for the operations' tags; RequestsBy counts them
	// by the status the service recorded (FINISHED, FAILED).
	Requests   int
	RequestsBy map[string]int
}

// OK reports whether nothing was lost, corrupt or stuck.
func (r Report) OK() bool { return len(r.Lost) == 0 && len(r.Corrupt) == 0 && len(r.Stuck) == 0 }

// String prints the figures the failure suite reports.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "requests issued %d, acknowledged %d, not acknowledged %d, lost %d, corrupt %d, stuck %d; files verified %d; "+
		"service requests %d (finished %d, failed %d)\n",
		r.Issued, r.Acked, r.Failed, len(r.Lost), len(r.Corrupt), len(r.Stuck), r.FilesVerified, r.Requests,
		r.RequestsBy["FINISHED"], r.RequestsBy["FAILED"])
	reasons := make([]string, 0, len(r.FailedBy))
	for k := range r.FailedBy {
		reasons = append(reasons, k)
	}
	sort.Slice(reasons, func(i, j int) bool { return r.FailedBy[reasons[i]] > r.FailedBy[reasons[j]] })
	for _, k := range reasons {
		fmt.Fprintf(&b, "  not acknowledged ×%d: %s\n", r.FailedBy[k], k)
	}
	for _, list := range []struct {
		name  string
		items []string
	}{{"LOST", r.Lost}, {"CORRUPT", r.Corrupt}, {"STUCK", r.Stuck}} {
		for _, s := range list.items {
			fmt.Fprintf(&b, "  %s: %s\n", list.name, s)
		}
	}
	return b.String()
}

// Verify judges a load's log once the load has stopped. It waits up to settle for every
// request of the load to reach a final state, then reads every file back. db is the
// instance's database (read only); without it (a client's view of an instance, as
// pollux-stress has) the requests are not looked at and only the files are judged. run
// and dir are as in the load's Config.
func Verify(ctx context.Context, db *pg.DB, run Runner, dir string, ops []Op, settle time.Duration) (Report, error) {
	rep := Report{Issued: len(ops), FailedBy: map[string]int{}, RequestsBy: map[string]int{}}
	tags := make([]string, 0, len(ops))
	for _, o := range ops {
		tags = append(tags, o.Tag)
		if o.Acked() {
			rep.Acked++
		} else {
			rep.Failed++
			rep.FailedBy[o.Kind+": "+reason(o.Stderr)]++
		}
	}

	// 1. Every request reaches a final state; a request still pending after settle is stuck.
	var reqs map[string][]request
	deadline := time.Now().Add(settle)
	for db != nil {
		var err error
		if reqs, err = requests(ctx, db, tags); err != nil {
			return rep, err
		}
		pending := 0
		for _, rs := range reqs {
			for _, r := range rs {
				if r.status == "PENDING" {
					pending++
				}
			}
		}
		if pending == 0 || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	for _, rs := range reqs {
		rep.Requests += len(rs)
		for _, r := range rs {
			rep.RequestsBy[r.status]++
		}
	}

	// 2. Each acknowledged operation's requests all FINISHED: an acknowledged request the
	// service recorded as failed, or never recorded, is lost.
	byPath := map[string][]Op{}
	for _, o := range ops {
		byPath[o.Path] = append(byPath[o.Path], o)
		for _, r := range reqs[o.Tag] {
			if r.status == "PENDING" {
				rep.Stuck = append(rep.Stuck, fmt.Sprintf("%s %s (op %d, %s, acknowledged %v): still %s: %s", r.id, o.Path, o.N, o.Kind, o.Acked(), r.status, r.detail))
			}
		}
		if !o.Acked() || db == nil {
			continue
		}
		if len(reqs[o.Tag]) == 0 {
			rep.Lost = append(rep.Lost, fmt.Sprintf("op %d %s %s: acknowledged, but the service has no request tagged %s", o.N, o.Kind, o.Path, o.Tag))
		}
		for _, r := range reqs[o.Tag] {
			if r.status != "FINISHED" && r.status != "PENDING" {
				rep.Lost = append(rep.Lost, fmt.Sprintf("op %d %s %s: acknowledged, but request %s ended %s: %s", o.N, o.Kind, o.Path, r.id, r.status, r.detail))
			}
		}
	}

	// 3. The files themselves.
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	type check struct {
		path     string
		put      Op
		rmAcked  bool
		mustRead bool // an acknowledged put and no rm issued
	}
	var checks []check
	for _, p := range paths {
		var c check
		c.path = p
		rm := false
		for _, o := range byPath[p] {
			switch o.Kind {
			case "put":
				c.put = o
			case "rm":
				rm = true
				c.rmAcked = c.rmAcked || o.Acked()
			}
		}
		c.mustRead = c.put.Acked() && !rm
		if c.mustRead || c.rmAcked || (!rm && !c.put.Acked()) {
			checks = append(checks, c)
		}
	}
	var mu sync.Mutex
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			local := filepath.Join(dir, fmt.Sprintf("verify-%06d", i))
			r := run(ctx, "pollux", "cp", "-U", "verify", c.path, local)
			b, readErr := os.ReadFile(local)
			os.Remove(local)
			right := r.Code == 0 && readErr == nil && len(b) == c.put.Size && adler32.Checksum(b) == c.put.Adler32
			// "no such file", or the entry of a write that never completed.
			absent := r.Code == 1 && (strings.Contains(r.Stderr, "no such file") || strings.Contains(r.Stderr, "has no valid copy"))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case c.rmAcked && !absent:
				rep.Lost = append(rep.Lost, fmt.Sprintf("%s: removed (acknowledged), but a read answered exit %d: %s", c.path, r.Code, reason(r.Stderr)))
			case c.rmAcked:
			case c.mustRead && right:
				rep.FilesVerified++
			case c.mustRead && r.Code == 0:
				rep.Lost = append(rep.Lost, fmt.Sprintf("%s: stored (acknowledged) %d bytes adler32 %08x, read back %d bytes adler32 %08x",
					c.path, c.put.Size, c.put.Adler32, len(b), adler32.Checksum(b)))
			case c.mustRead:
				rep.Lost = append(rep.Lost, fmt.Sprintf("%s: stored (acknowledged), but a read answered exit %d: %s", c.path, r.Code, reason(r.Stderr)))
			case right:
				rep.FilesVerified++ // its put was not acknowledged, yet it was stored whole
			case absent:
			case r.Code == 0:
				rep.Corrupt = append(rep.Corrupt, fmt.Sprintf("%s: its put was not acknowledged, and it reads back %d bytes adler32 %08x, not %d bytes %08x",
					c.path, len(b), adler32.Checksum(b), c.put.Size, c.put.Adler32))
			default:
				// Neither absent nor readable: a file left half-written must say why it
				// cannot be read, and it must not be stuck (step 1 saw to that).
			}
		}()
	}
	wg.Wait()
	slices.Sort(rep.Lost)
	slices.Sort(rep.Corrupt)
	return rep, nil
}

type request struct {
	id, status, detail string
}

// requests finds the requests of the given tags, in the hot table and in the archive.
func requests(ctx context.Context, db *pg.DB, tags []string) (map[string][]request, error) {
	out := map[string][]request{}
	err := db.DoIdempotent(ctx, "load: requests by tag", func(q pg.Querier) error {
		rows, err := q.Query(ctx, `
			select r.user_tag, r.id::text, r.status::text,
			       coalesce((select string_agg(s.path || ' ' || s.status || coalesce(': ' || nullif(s.error_message, ''), coalesce(' (' || nullif(s.info, '') || ')', '')), '; ')
			                 from subrequest s where s.request_id = r.id), '')
			from request r where r.user_tag = any($1)
			union all
			select a.view->>'user_tag', a.id::text, a.status, coalesce(a.view::text, '')
			from request_archive a where a.view->>'user_tag' = any($1)`, tags)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var tag string
			var r request
			if err := rows.Scan(&tag, &r.id, &r.status, &r.detail); err != nil {
				return err
			}
			out[tag] = append(out[tag], r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("find the load's requests: %w", err)
	}
	return out, nil
}
