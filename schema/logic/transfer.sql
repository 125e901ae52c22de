-- Transfers as the disk servers' movers report them. A transfer job starts a mover, which
-- publishes its endpoint and a one-time token (the client's long poll returns with them),
-- checks the token itself on the client's first call (no round trip here: the mover holds
-- what it published), and reports the end, which clears the token.

-- transfer_location says what a transfer moves and where its copy lives: the one place that
-- derives a copy's location and the service class's size limit. Reads only.
CREATE OR REPLACE FUNCTION transfer_location(p_subrequest_id bigint)
RETURNS TABLE (request_id uuid, type request_type, path text, mount_point text, disk_path text, size_bytes bigint, max_size_bytes bigint)
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT s.request_id, s.type, s.path, fs.mount_point, dc.disk_path, dc.size_bytes, sc.max_file_size_bytes
    FROM subrequest s
    JOIN disk_copy dc ON dc.id = s.disk_copy_id
    JOIN file_system fs ON fs.id = dc.file_system_id
    JOIN request r ON r.id = s.request_id
    JOIN service_class sc ON sc.id = r.service_class_id
    WHERE s.id = p_subrequest_id;
END;
$$;

-- transfer_start publishes a mover's endpoint and token: SCHEDULED → READY, and every rhd
-- is told (NOTIFY pollux_request_changed). Returns what the mover needs.
-- Raises: conflict (PX003) when the subrequest is not scheduled on this disk server any more
-- (cancelled, removed, taken back). Idempotent for the same server and token.
-- Locks: the subrequest.
CREATE OR REPLACE FUNCTION transfer_start(p_subrequest_id bigint, p_disk_server_id bigint, p_mover_url text, p_token text)
RETURNS TABLE (request_id uuid, type request_type, path text, mount_point text, disk_path text, size_bytes bigint, max_size_bytes bigint)
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_sr subrequest;
BEGIN
    SELECT * INTO v_sr FROM subrequest s WHERE s.id = p_subrequest_id FOR UPDATE;
    -- A retry of a start whose commit was not acknowledged finds its own READY row: answer
    -- it again rather than strand the transfer.
    IF v_sr.status = 'READY' AND v_sr.disk_server_id = p_disk_server_id AND v_sr.token IS NOT DISTINCT FROM p_token THEN
        NULL;
    ELSIF NOT FOUND OR v_sr.status <> 'SCHEDULED' OR v_sr.disk_server_id IS DISTINCT FROM p_disk_server_id THEN
        RAISE EXCEPTION 'subrequest % is not scheduled on disk server % (status %)', p_subrequest_id, p_disk_server_id,
            coalesce(v_sr.status::text, 'unknown') USING ERRCODE = 'PX003';
    END IF;
    IF v_sr.status = 'SCHEDULED' THEN
        UPDATE subrequest s SET status = 'READY', mover_url = p_mover_url, token = p_token,
               info = 'ready: transfer the data to or from the mover', updated_at = now()
        WHERE s.id = p_subrequest_id;
        PERFORM request_refresh(v_sr.request_id);
    END IF;
    RETURN QUERY SELECT * FROM transfer_location(p_subrequest_id);
END;
$$;

-- transfer_put_ended records a finished write: the copy's size and checksum; the copy is
-- closed at once (STAGED) when the request asked for it (`pollux cp`), otherwise it stays
-- STAGEOUT until stager_putdone. Raises: conflict (PX003) when the write is no longer wanted
-- (removed, taken back); the mover then discards the data.
-- Locks: the subrequest, the file, the copy.
CREATE OR REPLACE FUNCTION transfer_put_ended(p_subrequest_id bigint, p_size_bytes bigint, p_checksum_adler32 text)
RETURNS void
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
DECLARE
    v_sr subrequest;
    v_close boolean;
BEGIN
    SELECT * INTO v_sr FROM subrequest s WHERE s.id = p_subrequest_id FOR UPDATE;
    IF NOT FOUND OR v_sr.status <> 'READY' OR v_sr.type <> 'PUT' THEN
        RAISE EXCEPTION 'the write of subrequest % is no longer wanted: %', p_subrequest_id,
            coalesce(v_sr.error_message, v_sr.status::text, 'unknown subrequest') USING ERRCODE = 'PX003';
    END IF;
    PERFORM 1 FROM file WHERE id = v_sr.file_id FOR UPDATE;
    UPDATE disk_copy SET size_bytes = p_size_bytes, checksum_adler32 = p_checksum_adler32, updated_at = now()
    WHERE id = v_sr.disk_copy_id AND status = 'STAGEOUT';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the copy written by subrequest % is no longer being written', p_subrequest_id USING ERRCODE = 'PX003';
    END IF;
    UPDATE subrequest SET size_bytes = p_size_bytes, checksum_adler32 = p_checksum_adler32 WHERE id = p_subrequest_id;
    SELECT auto_close INTO v_close FROM request WHERE id = v_sr.request_id;
    IF v_close THEN
        PERFORM file_close_copy(v_sr.file_id, v_sr.disk_copy_id);
        PERFORM subrequest_finish(p_subrequest_id, 'written and closed');
    ELSE
        PERFORM subrequest_finish(p_subrequest_id, 'written; run stager_putdone to close it');
    END IF;
END;
$$;

-- transfer_get_ended records a finished read. Raises: conflict (PX003) when the
-- subrequest is not transferring. Locks: the subrequest.
CREATE OR REPLACE FUNCTION transfer_get_ended(p_subrequest_id bigint, p_size_bytes bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
BEGIN
    UPDATE subrequest SET size_bytes = p_size_bytes WHERE id = p_subrequest_id AND status = 'READY' AND type = 'GET';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'subrequest % is not a read in progress', p_subrequest_id USING ERRCODE = 'PX003';
    END IF;
    PERFORM subrequest_finish(p_subrequest_id, 'read');
END;
$$;

-- transfer_fail ends a transfer that went wrong (truncated or corrupt upload, disk error,
-- timeout) with the mover's reason. A failed write leaves no valid copy: its copy becomes
-- INVALID, a file that never had content loses its namespace entry, and readers waiting on
-- it start again (they get the previous content, or "no such file").
-- A subrequest already over is left alone. Locks: the subrequest, the file, the copy.
CREATE OR REPLACE FUNCTION transfer_fail(p_subrequest_id bigint, p_code text, p_message text)
RETURNS void
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
DECLARE
    v_sr subrequest;
BEGIN
    SELECT * INTO v_sr FROM subrequest s WHERE s.id = p_subrequest_id FOR UPDATE;
    IF NOT FOUND OR v_sr.status IN ('FINISHED', 'FAILED') THEN
        RETURN;
    END IF;
    IF v_sr.type = 'PUT' AND v_sr.file_id IS NOT NULL THEN
        PERFORM 1 FROM file WHERE id = v_sr.file_id FOR UPDATE;
        UPDATE disk_copy SET status = 'INVALID', updated_at = now() WHERE id = v_sr.disk_copy_id AND status = 'STAGEOUT';
        -- Wake the waiters before the entry may go: deleting it clears their file_id.
        PERFORM subrequest_wake_waiters(v_sr.file_id);
        DELETE FROM file f WHERE f.id = v_sr.file_id
          AND NOT EXISTS (SELECT 1 FROM disk_copy dc WHERE dc.file_id = f.id AND dc.status IN ('STAGED', 'STAGEOUT'));
    END IF;
    PERFORM subrequest_fail(p_subrequest_id, p_code, p_message);
END;
$$;
