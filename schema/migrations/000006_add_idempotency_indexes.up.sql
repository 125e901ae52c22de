-- Indexes for reports that are safe to repeat (docs/architecture.md, "Every report is safe
-- to repeat").

-- A copy found by where its bytes lie: a mover whose report was refused asks whether the
-- catalogue still has a copy at its path (disk_copy_discardable) before it unlinks
-- anything. The location index leads with the file system, so it also serves every read
-- of a file system's copies that the index it replaces served, and costs no more writes.
CREATE INDEX disk_copy_location_idx ON disk_copy (file_system_id, disk_path);
DROP INDEX disk_copy_file_system_id_idx;

-- A claim run again after its commit's reply was lost finds the transfers it made READY by
-- its tokens (transfer_claim); every claim looks, so the look reads the server's READY
-- transfers with those tokens, not every transfer in flight.
CREATE INDEX subrequest_ready_token_idx ON subrequest (disk_server_id, token) WHERE status = 'READY';
