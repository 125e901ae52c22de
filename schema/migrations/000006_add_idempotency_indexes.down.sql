DROP INDEX IF EXISTS subrequest_ready_token_idx;
CREATE INDEX disk_copy_file_system_id_idx ON disk_copy (file_system_id);
DROP INDEX IF EXISTS disk_copy_location_idx;
