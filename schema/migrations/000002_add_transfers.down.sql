DROP INDEX IF EXISTS disk_copy_file_system_id_idx;
DELETE FROM disk_copy WHERE file_id IS NULL;
ALTER TABLE disk_copy DROP CONSTRAINT disk_copy_file_id_fkey;
ALTER TABLE disk_copy ADD CONSTRAINT disk_copy_file_id_fkey FOREIGN KEY (file_id) REFERENCES file (id) ON DELETE CASCADE;
ALTER TABLE disk_copy ALTER COLUMN file_id SET NOT NULL;
ALTER TABLE disk_copy DROP COLUMN disk_path;

DROP INDEX IF EXISTS subrequest_transfer_idx;
DROP INDEX IF EXISTS subrequest_active_file_idx;
DROP INDEX IF EXISTS subrequest_new_idx;
CREATE INDEX subrequest_new_idx ON subrequest (id) WHERE status IN ('START', 'RESTART', 'RETRY');
ALTER TABLE subrequest
    DROP COLUMN type, DROP COLUMN disk_server_id, DROP COLUMN file_system_id, DROP COLUMN mover_url,
    DROP COLUMN token, DROP COLUMN size_bytes, DROP COLUMN checksum_adler32, DROP COLUMN info,
    DROP COLUMN next_attempt_at;
ALTER TABLE request DROP COLUMN auto_close;
