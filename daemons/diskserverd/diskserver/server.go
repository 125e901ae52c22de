package diskserver

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
)

// server is this disk server as the database knows it.
type server struct {
	db           *pg.DB
	log          *zap.Logger
	name         string
	url          string
	serviceClass string
	mounts       []string

	// ID may change when the server registers again after its row was deleted; the
	// claim reads it at every step, so it follows at once.
	idValue atomic.Int64

	mu    sync.Mutex
	fsIDs map[string]int64 // mount point → file system id
}

func (s *server) id() int64 { return s.idValue.Load() }

// register records the server and every data directory (disk_server_register,
// file_system_register); both refresh what is there already.
func (s *server) register(ctx context.Context) error {
	var id int64
	// Registrations, recovery and heartbeats are idempotent (schema/logic/diskserver.sql).
	err := s.db.TxIdempotent(ctx, "register disk server", func(q pg.Querier) (err error) {
		id, err = model.DiskServerRegister(ctx, q, s.name, s.url, loadAverage())
		return err
	})
	if err != nil {
		return fmt.Errorf("register disk server %s: %w", s.name, err)
	}
	if old := s.idValue.Swap(id); old != 0 && old != id {
		s.log.Warn("the disk server was registered anew under another id", zap.Int64("disk_server_id", id), zap.Int64("old_id", old))
	}
	for _, m := range s.mounts {
		if err := s.registerFileSystem(ctx, m); err != nil {
			return err
		}
	}
	s.log.Info("disk server registered", zap.Int64("disk_server_id", id), zap.String("name", s.name), zap.String("url", s.url))
	return nil
}

func (s *server) registerFileSystem(ctx context.Context, mount string) error {
	capacity, free, err := space(mount)
	if err != nil {
		return fmt.Errorf("file system %s: %w", mount, err)
	}
	var id int64
	err = s.db.TxIdempotent(ctx, "register file system", func(q pg.Querier) (err error) {
		id, err = model.FileSystemRegister(ctx, q, s.id(), mount, s.serviceClass, capacity, free)
		return err
	})
	if err != nil {
		return fmt.Errorf("register file system %s: %w", mount, err)
	}
	s.mu.Lock()
	s.fsIDs[mount] = id
	s.mu.Unlock()
	s.log.Info("file system registered", zap.Int64("file_system_id", id), zap.String("mount_point", mount),
		zap.String("service_class", s.serviceClass), zap.Int64("capacity_bytes", capacity), zap.Int64("free_bytes", free))
	return nil
}

// recover takes back the transfers READY on this server: their movers belonged to a
// process that is gone (at start) or stopping (at the end).
func (s *server) recover(ctx context.Context) error {
	var n int32
	err := s.db.TxIdempotent(ctx, "recover transfers", func(q pg.Querier) (err error) {
		n, err = model.DiskServerRecover(ctx, q, s.id())
		return err
	})
	if err != nil {
		return fmt.Errorf("take back transfers of disk server %s: %w", s.name, err)
	}
	if n > 0 {
		s.log.Warn("took back transfers whose movers are gone", zap.Int32("transfers", n))
	}
	return nil
}

// heartbeatLoop reports liveness, load and space at the pace the database sets (a quarter
// of policy disk_server_live_seconds: see disk_server_heartbeat). Each round is bounded:
// a heartbeat stuck on a connection that leads nowhere (a cut link, a database that went
// away) gives up and the next one opens another, so that the server is heard again within
// a round of its network coming back rather than after TCP's retransmission backoff.
func (s *server) heartbeatLoop(ctx context.Context) {
	pace := firstPace
	t := time.NewTimer(0) // at once: the database says the pace
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		round, cancel := context.WithTimeout(ctx, max(2*pace, minHeartbeatTimeout))
		next, err := s.heartbeat(round)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			s.log.Error("heartbeat", zap.Error(err), zap.Duration("retry_in", pace))
		default:
			pace = next
		}
		t.Reset(pace)
	}
}

const (
	// firstPace is the heartbeat period until the database has said its own.
	firstPace = 1500 * time.Millisecond
	// minHeartbeatTimeout bounds a heartbeat round from below: a round is two periods.
	minHeartbeatTimeout = 2 * time.Second
)

// heartbeat reports load and space and returns when the next heartbeat is due; a row that
// vanished is registered again.
func (s *server) heartbeat(ctx context.Context) (time.Duration, error) {
	var rows []model.DiskServerHeartbeatRow
	err := s.db.DoIdempotent(ctx, "disk server heartbeat", func(q pg.Querier) (err error) {
		rows, err = model.DiskServerHeartbeat(ctx, q, s.id(), loadAverage())
		return err
	})
	if pg.SQLState(err) == model.SQLStateNotFound {
		s.log.Warn("disk server not registered: registering again", zap.String("reason", pg.ServerMessage(err)))
		return firstPace, s.register(ctx)
	}
	if err != nil {
		return 0, err
	}
	if len(rows) != 1 {
		return 0, fmt.Errorf("disk server heartbeat: %d rows, want 1", len(rows))
	}
	if rows[0].Returned {
		s.log.Info("disk server back in placement: the database hears it again")
	}
	for _, m := range s.mounts {
		capacity, free, serr := space(m)
		if serr != nil {
			// Free space 0 keeps the scheduler from placing writes here until it recovers.
			s.log.Error("file system unreadable: reporting it full", zap.String("mount_point", m), zap.Error(serr))
		}
		s.mu.Lock()
		id := s.fsIDs[m]
		s.mu.Unlock()
		err := s.db.DoIdempotent(ctx, "file system heartbeat", func(q pg.Querier) error {
			return model.FileSystemHeartbeat(ctx, q, id, capacity, free)
		})
		if pg.SQLState(err) == model.SQLStateNotFound {
			s.log.Warn("file system not registered: registering again", zap.String("mount_point", m))
			err = s.registerFileSystem(ctx, m)
		}
		if err != nil {
			return 0, err
		}
	}
	return time.Duration(rows[0].IntervalSeconds * float64(time.Second)), nil
}

// leave takes the server out of placement as the daemon starts to stop: STOPPED, and what
// was only placed here placed again elsewhere (disk_server_stop). It returns the disk
// servers those went to, for wake-up hints.
func (s *server) leave(ctx context.Context) ([]string, error) {
	var rows []model.DiskServerStopRow
	err := s.db.TxIdempotent(ctx, "leave placement", func(q pg.Querier) (err error) {
		rows, err = model.DiskServerStop(ctx, q, s.id())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("take disk server %s out of placement: %w", s.name, err)
	}
	var urls []string
	for _, r := range rows {
		if r.WakeURL != nil {
			urls = append(urls, *r.WakeURL)
		}
	}
	s.log.Info("disk server out of placement: stopping", zap.Int("placed_again", len(rows)))
	return urls, nil
}

// space is a file system's size and the bytes an unprivileged writer may still use.
func space(dir string) (capacity, free int64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	unit := st.Frsize
	if unit <= 0 {
		unit = st.Bsize
	}
	return int64(st.Blocks) * unit, int64(st.Bavail) * unit, nil
}

// loadAverage is the one-minute load average, or 0 where /proc does not tell it.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return 0
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return 0
	}
	return v
}
