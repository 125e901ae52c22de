DROP INDEX IF EXISTS disk_copy_corrupt_idx;
ALTER TABLE disk_copy DROP COLUMN corrupt_at;
