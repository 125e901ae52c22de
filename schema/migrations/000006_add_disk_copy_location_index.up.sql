-- A copy found by where its bytes lie: a mover whose report was refused asks whether the
-- catalogue still has a copy at its path (disk_copy_discardable) before it unlinks
-- anything. The location index leads with the file system, so it also serves every read
-- of a file system's copies that the index it replaces served, and costs no more writes.
CREATE INDEX disk_copy_location_idx ON disk_copy (file_system_id, disk_path);
DROP INDEX disk_copy_file_system_id_idx;
