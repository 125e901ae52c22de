-- What the request life cycle needs beyond the core tables: the request family on each
-- subrequest (so each stager pool claims from its own partial index), the transfer's
-- placement, endpoint and one-time token, and where a disk copy lives on its file system.

ALTER TABLE request ADD COLUMN auto_close boolean NOT NULL DEFAULT false;

ALTER TABLE subrequest
    ADD COLUMN type request_type,
    ADD COLUMN disk_server_id bigint REFERENCES disk_server (id) ON DELETE SET NULL,
    ADD COLUMN file_system_id bigint REFERENCES file_system (id) ON DELETE SET NULL,
    ADD COLUMN mover_url text,
    ADD COLUMN token text,
    ADD COLUMN size_bytes bigint CHECK (size_bytes >= 0),
    ADD COLUMN checksum_adler32 text CHECK (checksum_adler32 ~ '^[0-9a-f]{8}$'),
    ADD COLUMN info text NOT NULL DEFAULT '',
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now();
UPDATE subrequest s SET type = r.type FROM request r WHERE r.id = s.request_id;
ALTER TABLE subrequest ALTER COLUMN type SET NOT NULL;

DROP INDEX subrequest_new_idx;
CREATE INDEX subrequest_new_idx ON subrequest (type, id) WHERE status IN ('START', 'RESTART', 'RETRY');
CREATE INDEX subrequest_active_file_idx ON subrequest (file_id) WHERE status NOT IN ('FINISHED', 'FAILED');
CREATE INDEX subrequest_transfer_idx ON subrequest (disk_server_id) WHERE status IN ('SCHEDULED', 'READY');

-- A removed file's copies outlive its namespace entry until their disk server deletes them,
-- so a copy names its file on disk itself and keeps no hard link to the entry.
ALTER TABLE disk_copy ADD COLUMN disk_path text NOT NULL DEFAULT '';
ALTER TABLE disk_copy ALTER COLUMN file_id DROP NOT NULL;
ALTER TABLE disk_copy DROP CONSTRAINT disk_copy_file_id_fkey;
ALTER TABLE disk_copy ADD CONSTRAINT disk_copy_file_id_fkey FOREIGN KEY (file_id) REFERENCES file (id) ON DELETE SET NULL;
CREATE INDEX disk_copy_file_system_id_idx ON disk_copy (file_system_id);
