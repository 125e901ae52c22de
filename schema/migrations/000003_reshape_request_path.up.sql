-- The request path with one owner per status (issue 12): the stager decides and places in
-- one transaction, the scheduler places only what waits for a resource, each disk server
-- claims its own placed transfers. What that needs beyond 000002:
--   * policy: the operator's settings that the logic reads (liveness, retries, timeouts,
--     retention), one row each, changed with UPDATE and no rebuild or patch;
--   * capacity_epoch: a counter bumped in the transaction that adds capacity, so a
--     subrequest waiting for a resource is tried again only when something changed;
--   * request_archive: finished requests leave the hot tables after the retention and are
--     still answered from here while they are kept;
--   * indexes so that no claim or sweep walks the history of finished subrequests.

CREATE TABLE policy (
    name  text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]*$'),
    value bigint NOT NULL CHECK (value >= 0),
    doc   text NOT NULL DEFAULT ''
);
INSERT INTO policy (name, value, doc) VALUES
    ('disk_server_live_seconds', 30, 'A disk server whose last heartbeat is older takes no new transfers and loses those it holds.'),
    ('transfer_max_retries', 3, 'How often a transfer taken back from a dead or restarted disk server is decided again before it fails.'),
    ('transfer_open_seconds', 300, 'How long a READY transfer waits for its client to connect to the mover before it fails.'),
    ('transfer_seconds', 3600, 'Longest a transfer may take once its client connected.'),
    ('request_retention_seconds', 3600, 'How long a finished request stays in the hot tables before it is archived.'),
    ('request_archive_seconds', 604800, 'How long an archived request is kept (stager_qry and request look-ups still answer) before it is deleted.');

CREATE TABLE capacity_epoch (
    id    integer PRIMARY KEY CHECK (id = 1),
    epoch bigint NOT NULL
);
INSERT INTO capacity_epoch VALUES (1, 1);

CREATE TABLE request_archive (
    id          uuid PRIMARY KEY,
    user_name   text NOT NULL,
    status      text NOT NULL, -- as the request ended: a record, not a state machine
    finished_at timestamptz NOT NULL,
    archived_at timestamptz NOT NULL DEFAULT now(),
    view        jsonb NOT NULL
);
CREATE INDEX request_archive_archived_at_idx ON request_archive (archived_at);

-- The capacity epoch a subrequest waiting for a resource was last tried at.
ALTER TABLE subrequest ADD COLUMN placement_epoch bigint NOT NULL DEFAULT 0;
-- Replaced by placement_epoch: a waiting subrequest is tried again when capacity changes,
-- not every two seconds.
ALTER TABLE subrequest DROP COLUMN next_attempt_at;

-- Claims: each is an equality on the leading column and an order on the next, inside a
-- partial index that holds only its queue, never the history.
DROP INDEX subrequest_waitsched_idx;
CREATE INDEX subrequest_waitsched_idx ON subrequest (placement_epoch, id) WHERE status = 'WAITSCHED';
CREATE INDEX subrequest_scheduled_idx ON subrequest (disk_server_id, id) WHERE status = 'SCHEDULED';
CREATE INDEX subrequest_placed_fs_idx ON subrequest (file_system_id) WHERE status IN ('SCHEDULED', 'READY');
CREATE INDEX subrequest_ready_idx ON subrequest (updated_at) WHERE status = 'READY';
CREATE INDEX subrequest_disk_copy_id_idx ON subrequest (disk_copy_id);
CREATE INDEX request_finished_idx ON request (updated_at) WHERE status IN ('FINISHED', 'FAILED');
-- The foreign keys' own look-ups: removing a file (stager_rm) clears subrequest.file_id and
-- archiving a request clears the parent_id of its waiters; without these each would read
-- the whole table. Only waiters have a parent, so that index stays as small as they are.
CREATE INDEX subrequest_file_id_idx ON subrequest (file_id);
CREATE INDEX subrequest_parent_id_idx ON subrequest (parent_id) WHERE parent_id IS NOT NULL;
