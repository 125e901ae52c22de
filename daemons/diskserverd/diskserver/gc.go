package diskserver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/pollux-storage/pollux/framework/pg"
	"github.com/pollux-storage/pollux/model"
)

// collector deletes the copies the stager invalidated on this server's file systems.
type collector struct {
	db     *pg.DB
	server *server
	log    *zap.Logger
}

// step claims a batch of invalid copies, unlinks them and forgets them, all in one
// transaction: a process that dies half-way rolls the claim back, and the next step
// unlinks again (a missing file is fine). The bytes go before the commit because the
// catalogue's answer came first: an INVALID copy is dead for good (it only ever becomes
// BEINGDELETED), so unlinking needs no commit of this claim. A copy that cannot be
// unlinked stays BEINGDELETED, logged, rather than blocking the rest;
// disk_copy_claim_gc hands it out again ten minutes later. A re-run after a lost commit
// reply claims what is left.
func (c *collector) step(ctx context.Context) (int, error) {
	var deleted []model.DiskCopyClaimGcRow
	n := 0
	err := c.db.TxIdempotent(ctx, "collect garbage", func(q pg.Querier) error {
		deleted = deleted[:0]
		rows, err := model.DiskCopyClaimGc(ctx, q, c.server.id(), gcBatch)
		if err != nil {
			return err
		}
		n = len(rows)
		for _, r := range rows {
			path, err := c.location(r)
			if err == nil {
				err = os.Remove(path)
			}
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				c.log.Error("copy not deleted", zap.Int64("disk_copy", r.ID), zap.Error(err))
				continue
			}
			if err := model.DiskCopyDeleted(ctx, q, r.ID); err != nil {
				return err
			}
			deleted = append(deleted, r)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, r := range deleted {
		c.log.Info("copy deleted", zap.Int64("disk_copy", r.ID), zap.String("mount_point", r.MountPoint),
			zap.String("disk_path", r.DiskPath))
	}
	return n, nil
}

// location is the copy's file, which must lie inside one of this server's data
// directories.
func (c *collector) location(r model.DiskCopyClaimGcRow) (string, error) {
	mount := filepath.Clean(r.MountPoint)
	if !slices.Contains(c.server.mounts, mount) {
		return "", fmt.Errorf("file system %s is not a data directory of this disk server", r.MountPoint)
	}
	rel := filepath.FromSlash(r.DiskPath)
	if !filepath.IsLocal(rel) {
		return "", fmt.Errorf("disk path %q is not inside its file system", r.DiskPath)
	}
	return filepath.Join(mount, rel), nil
}

// sweepParts removes the partial uploads (*.part) a previous process of this server left
// when it died: their transfers were taken back at start, so nobody will finish them.
// Files from after this process started belong to its own transfers and are left alone.
func sweepParts(ctx context.Context, mounts []string, before time.Time, log *zap.Logger) {
	removed := 0
	for _, m := range mounts {
		err := filepath.WalkDir(m, func(path string, d fs.DirEntry, err error) error {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil || d.IsDir() || !strings.HasSuffix(d.Name(), ".part") {
				return nil
			}
			info, err := d.Info()
			if err != nil || !info.ModTime().Before(before) {
				return nil
			}
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				log.Warn("partial upload not removed", zap.String("file", path), zap.Error(err))
				return nil
			}
			removed++
			return nil
		})
		if err != nil && ctx.Err() == nil {
			log.Warn("sweeping partial uploads", zap.String("mount_point", m), zap.Error(err))
		}
	}
	if removed > 0 {
		log.Info("removed partial uploads left by a previous process", zap.Int("files", removed))
	}
}
