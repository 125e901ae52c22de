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

	// ID may change when the server registers again after its row was deleted.
	idValue atomic.Int64

	mu sync.Mutex
	// queue is the River queue this process works; wanted is its id's, which the process
	// follows when a new registration changes it (see follow).
	queue, wanted string
	// queues is the River client working queue, set once it is built.
	queues  queueSet
	workers int
	fsIDs   map[string]int64 // mount point → file system id
}

// queueSet starts and stops the work of River queues; *queue.Client is one.
type queueSet interface {
	AddQueue(name string, workers int) error
	RemoveQueue(ctx context.Context, name string) error
}

// queueRemoveTimeout bounds how long removing a queue left behind waits for its running
// jobs (River holds its start/stop lock meanwhile). Once it passes, the queue fetches no
// more and its jobs end as the database refuses their old server id.
const queueRemoveTimeout = 5 * time.Second

func (s *server) currentQueue() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queue
}

func (s *server) id() int64 { return s.idValue.Load() }

// register records the server and every data directory (disk_server_register,
// file_system_register); both refresh what is there already.
func (s *server) register(ctx context.Context) error {
	var reg []model.DiskServerRegisterRow
	err := s.db.Tx(ctx, "register disk server", func(q pg.Querier) (err error) {
		reg, err = model.DiskServerRegister(ctx, q, s.name, s.url, loadAverage())
		return err
	})
	if err != nil {
		return fmt.Errorf("register disk server %s: %w", s.name, err)
	}
	if len(reg) != 1 {
		return fmt.Errorf("register disk server %s: got %d rows", s.name, len(reg))
	}
	s.idValue.Store(reg[0].ID)
	s.mu.Lock()
	s.wanted = reg[0].Queue
	s.mu.Unlock()
	for _, m := range s.mounts {
		if err := s.registerFileSystem(ctx, m); err != nil {
			return err
		}
	}
	s.follow(ctx)
	s.log.Info("disk server registered", zap.Int64("disk_server_id", reg[0].ID), zap.String("name", s.name),
		zap.String("url", s.url), zap.String("queue", reg[0].Queue))
	return nil
}

// follow makes the process work the queue of the id it registered under. Only a deleted
// and recreated row gets a new id (and queue): the scheduler queues new transfers there.
// A failure is logged and retried at the next heartbeat, which goes on meanwhile. Called
// from the registration and the heartbeat loop only, never concurrently.
func (s *server) follow(ctx context.Context) {
	s.mu.Lock()
	old, queue, queues, workers := s.queue, s.wanted, s.queues, s.workers
	if old == "" {
		s.queue = queue // the first registration: the River client is built on it
	}
	s.mu.Unlock()
	if old == "" || old == queue || queues == nil {
		return
	}
	if err := queues.AddQueue(queue, workers); err != nil {
		s.log.Error("work the queue of the new registration: retrying at the next heartbeat",
			zap.String("queue", queue), zap.Error(err))
		return
	}
	s.mu.Lock()
	s.queue = queue
	s.mu.Unlock()
	s.log.Warn("the disk server was registered anew under another id: working its new queue",
		zap.String("queue", queue), zap.String("old_queue", old))
	go func() {
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), queueRemoveTimeout)
		defer cancel()
		if err := queues.RemoveQueue(c, old); err != nil {
			s.log.Warn("stop working the old queue", zap.String("queue", old), zap.Error(err))
		}
	}()
}

func (s *server) registerFileSystem(ctx context.Context, mount string) error {
	capacity, free, err := space(mount)
	if err != nil {
		return fmt.Errorf("file system %s: %w", mount, err)
	}
	var id int64
	err = s.db.Tx(ctx, "register file system", func(q pg.Querier) (err error) {
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
	err := s.db.Tx(ctx, "recover transfers", func(q pg.Querier) (err error) {
		n, err = model.DiskServerRecover(ctx, q, s.id(), maxRetries)
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
	s.follow(ctx)
	err := s.db.Do(ctx, "disk server heartbeat", func(q pg.Querier) error {
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
		err := s.db.Do(ctx, "file system heartbeat", func(q pg.Querier) error {
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
