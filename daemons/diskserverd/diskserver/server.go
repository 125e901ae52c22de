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

func (s *server) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(heartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.heartbeat(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("heartbeat", zap.Error(err))
		}
	}
}

// heartbeat reports load and space; a row that vanished is registered again.
func (s *server) heartbeat(ctx context.Context) error {
	err := s.db.DoIdempotent(ctx, "disk server heartbeat", func(q pg.Querier) error {
		return model.DiskServerHeartbeat(ctx, q, s.id(), loadAverage())
	})
	if pg.SQLState(err) == model.SQLStateNotFound {
		s.log.Warn("disk server not registered: registering again", zap.String("reason", pg.ServerMessage(err)))
		return s.register(ctx)
	}
	if err != nil {
		return err
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
			return err
		}
	}
	return nil
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
