-- The stager's decisions. subrequest_claim claims up to p_batch new subrequests (START,
-- RESTART, RETRY) of one request family with FOR UPDATE SKIP LOCKED — rows another stager
-- holds are passed over, never waited for — and decides each in the same transaction with
-- its family's subrequest_decide_* function.
-- Decisions on one path are serialised by locking its file row (created on first put), so
-- two stagers never decide on the same file at once.
--
-- Outcomes: WAITSCHED (a transfer is needed; NOTIFY pollux_subrequest_waitsched wakes the
-- job manager), WAITSUBREQ (another subrequest writes the file; woken by
-- subrequest_wake_waiters), FINISHED or FAILED (decided here; the request is refreshed and
-- NOTIFY pollux_request_changed ends its long polls).

-- file_lock returns the file row at p_path locked FOR UPDATE, creating it when p_create
-- (for a put); no row when there is no such file. Locks: the file row.
CREATE OR REPLACE FUNCTION file_lock(p_path text, p_service_class_id bigint, p_owner text, p_create boolean)
RETURNS SETOF file
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
BEGIN
    IF p_create THEN
        INSERT INTO file (path, service_class_id, owner) VALUES (p_path, p_service_class_id, p_owner)
        ON CONFLICT (path) DO NOTHING;
    END IF;
    RETURN QUERY SELECT * FROM file WHERE path = p_path FOR UPDATE;
END;
$$;

-- subrequest_finish ends a subrequest successfully and refreshes its request.
CREATE OR REPLACE FUNCTION subrequest_finish(p_id bigint, p_info text)
RETURNS void
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
DECLARE
    v_request uuid;
BEGIN
    UPDATE subrequest SET status = 'FINISHED', info = coalesce(p_info, ''), token = NULL, updated_at = now()
    WHERE id = p_id RETURNING request_id INTO v_request;
    PERFORM request_refresh(v_request);
END;
$$;

-- subrequest_wait_transfer makes a subrequest ready for scheduling.
CREATE OR REPLACE FUNCTION subrequest_wait_transfer(p_id bigint, p_file_id bigint, p_disk_copy_id bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
BEGIN
    UPDATE subrequest SET status = 'WAITSCHED', file_id = p_file_id, disk_copy_id = p_disk_copy_id,
                          info = 'waiting to be scheduled', next_attempt_at = now(), updated_at = now()
    WHERE id = p_id;
    PERFORM pg_notify('pollux_subrequest_waitsched', '');
END;
$$;

-- subrequest_file returns the file row of a subrequest's path, locked; when there is no
-- such file it fails the subrequest with not_found (PX001) and returns no row.
-- Locks: the file row.
CREATE OR REPLACE FUNCTION subrequest_file(p_id bigint)
RETURNS SETOF file
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
DECLARE
    v_path text;
    v_file file;
BEGIN
    SELECT path INTO v_path FROM subrequest WHERE id = p_id;
    SELECT * INTO v_file FROM file_lock(v_path, NULL, NULL, false);
    IF v_file.id IS NULL THEN
        PERFORM subrequest_fail(p_id, 'PX001', format('no such file: %s', v_path));
        RETURN;
    END IF;
    RETURN NEXT v_file;
END;
$$;

-- subrequest_claim claims new subrequests of one family and decides each; it returns the
-- decisions (status, and a short reason when not the expected one).
-- Locks: the claimed subrequests (SKIP LOCKED), then what each decision locks.
-- Raises: invalid_argument (PX002) for an unknown family.
CREATE OR REPLACE FUNCTION subrequest_claim(p_family text, p_batch integer)
RETURNS TABLE (id bigint, request_id uuid, path text, status subrequest_status, message text)
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_types request_type[] := ARRAY(SELECT t FROM unnest(enum_range(NULL::request_type)) t WHERE subrequest_family(t) = p_family);
    v_sr subrequest;
    v_claimed uuid[] := '{}';
    v_notified uuid[] := '{}';
BEGIN
    IF cardinality(v_types) = 0 THEN
        RAISE EXCEPTION 'unknown request family "%": put, get, putdone or rm', p_family USING ERRCODE = 'PX002';
    END IF;
    FOR v_sr IN
        SELECT s.* FROM subrequest s
        WHERE s.type = ANY (v_types) AND s.status IN ('START', 'RESTART', 'RETRY')
        ORDER BY s.id LIMIT p_batch FOR UPDATE SKIP LOCKED
    LOOP
        id := v_sr.id; request_id := v_sr.request_id; path := v_sr.path;
        message := CASE p_family
            WHEN 'put' THEN subrequest_decide_put(v_sr.id)
            WHEN 'get' THEN subrequest_decide_get(v_sr.id)
            WHEN 'putdone' THEN subrequest_decide_putdone(v_sr.id)
            WHEN 'rm' THEN subrequest_decide_rm(v_sr.id)
        END;
        SELECT s.status INTO status FROM subrequest s WHERE s.id = v_sr.id;
        IF status <> 'WAITSCHED' THEN
            v_notified := v_notified || v_sr.request_id; -- its decision refreshed the request
        END IF;
        v_claimed := v_claimed || v_sr.request_id;
        RETURN NEXT;
    END LOOP;
    -- A request refreshed by one decision may have had another file decided after it
    -- without a refresh (WAITSCHED tells no client): refresh it again, so that the last
    -- notification of the transaction carries its final state. A request with one file
    -- decided here needs nothing more.
    PERFORM request_refresh(r)
    FROM (SELECT DISTINCT n AS r FROM unnest(v_notified) n) x
    WHERE (SELECT count(*) FROM unnest(v_claimed) c WHERE c = x.r) > 1;
END;
$$;

-- file_unclosed_writer says whether a write of the file is unclosed (it has a STAGEOUT
-- copy): NULL when none is, else the newest PUT subrequest on the file other than p_except,
-- or 0 when that writer is gone (purged). A put then fails and a get waits on it. Reads only.
CREATE OR REPLACE FUNCTION file_unclosed_writer(p_file_id bigint, p_except bigint)
RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM disk_copy dc WHERE dc.file_id = p_file_id AND dc.status = 'STAGEOUT') THEN
        RETURN NULL;
    END IF;
    RETURN coalesce((SELECT s.id FROM subrequest s
                     WHERE s.file_id = p_file_id AND s.type = 'PUT' AND s.id IS DISTINCT FROM p_except
                     ORDER BY s.id DESC LIMIT 1), 0);
END;
$$;

-- subrequest_decide_put decides a PUT: a new STAGEOUT disk copy and WAITSCHED, or FAILED
-- with conflict (PX003) while another write of the file is unclosed (the second writer fails
-- at once rather than waiting behind a write that may never be closed; see
-- docs/statuses.md). Returns a short reason when it fails. Locks: the file row.
CREATE OR REPLACE FUNCTION subrequest_decide_put(p_id bigint)
RETURNS text
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
DECLARE
    v_sr subrequest;
    v_req request;
    v_file file;
    v_writer bigint;
    v_copy bigint;
BEGIN
    SELECT * INTO v_sr FROM subrequest WHERE id = p_id;
    SELECT * INTO v_req FROM request WHERE id = v_sr.request_id;
    SELECT * INTO v_file FROM file_lock(v_sr.path, v_req.service_class_id, v_req.user_name, true);
    v_writer := file_unclosed_writer(v_file.id, p_id);
    IF v_writer IS NOT NULL THEN
        PERFORM subrequest_fail(p_id, 'PX003', format(
            '%s is being written by another request (subrequest %s) and not yet closed: retry after its putdone, or stager_rm it',
            v_sr.path, coalesce(nullif(v_writer, 0)::text, '?')));
        RETURN 'another write in progress';
    END IF;
    INSERT INTO disk_copy (file_id, status) VALUES (v_file.id, 'STAGEOUT') RETURNING id INTO v_copy;
    UPDATE disk_copy SET disk_path = format('%s.%s', v_file.id, v_copy) WHERE id = v_copy;
    PERFORM subrequest_wait_transfer(p_id, v_file.id, v_copy);
    RETURN '';
END;
$$;

-- subrequest_decide_get decides a GET or PREPARE_TO_GET: FAILED with not_found (PX001)
-- when there is no file or no valid copy; WAITSUBREQ while a write of the file is unclosed
-- (the reader then gets the new content); otherwise WAITSCHED on the STAGED copy (GET) or
-- FINISHED (PREPARE_TO_GET: the file is on disk already). Locks: the file row.
CREATE OR REPLACE FUNCTION subrequest_decide_get(p_id bigint)
RETURNS text
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
DECLARE
    v_sr subrequest;
    v_file file;
    v_staged bigint;
    v_writer bigint;
BEGIN
    SELECT * INTO v_file FROM subrequest_file(p_id);
    IF v_file.id IS NULL THEN
        RETURN 'no such file';
    END IF;
    SELECT * INTO v_sr FROM subrequest WHERE id = p_id;
    v_writer := file_unclosed_writer(v_file.id, p_id);
    IF v_writer IS NOT NULL THEN
        UPDATE subrequest SET status = 'WAITSUBREQ', file_id = v_file.id, parent_id = nullif(v_writer, 0),
               info = format('waiting for the write of %s to be closed', v_sr.path), updated_at = now()
        WHERE id = p_id;
        PERFORM request_refresh(v_sr.request_id);
        RETURN '';
    END IF;
    SELECT dc.id INTO v_staged FROM disk_copy dc
    WHERE dc.file_id = v_file.id AND dc.status = 'STAGED' ORDER BY dc.id DESC LIMIT 1;
    IF v_staged IS NULL THEN
        PERFORM subrequest_fail(p_id, 'PX001', format('%s has no valid copy (its last write failed)', v_sr.path));
        RETURN 'no valid copy';
    ELSIF v_sr.type = 'PREPARE_TO_GET' THEN
        UPDATE subrequest SET file_id = v_file.id, disk_copy_id = v_staged WHERE id = p_id;
        PERFORM subrequest_finish(p_id, 'on disk');
    ELSE
        PERFORM subrequest_wait_transfer(p_id, v_file.id, v_staged);
    END IF;
    RETURN '';
END;
$$;

-- subrequest_decide_putdone closes a finished write: its STAGEOUT copy becomes STAGED (see
-- file_close_copy). Fails with not_found (PX001) for an unknown file and conflict (PX003)
-- when nothing is being written or the upload has not ended.
-- Locks: the file row and its copy.
CREATE OR REPLACE FUNCTION subrequest_decide_putdone(p_id bigint)
RETURNS text
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
DECLARE
    v_file file;
    v_copy disk_copy;
BEGIN
    SELECT * INTO v_file FROM subrequest_file(p_id);
    IF v_file.id IS NULL THEN
        RETURN 'no such file';
    END IF;
    SELECT * INTO v_copy FROM disk_copy dc WHERE dc.file_id = v_file.id AND dc.status = 'STAGEOUT' FOR UPDATE;
    IF v_copy.id IS NULL THEN
        PERFORM subrequest_fail(p_id, 'PX003', format('%s is not being written: there is nothing to close', v_file.path));
        RETURN 'nothing to close';
    ELSIF v_copy.size_bytes IS NULL THEN
        PERFORM subrequest_fail(p_id, 'PX003', format('%s is still being written: run putdone once its upload has ended', v_file.path));
        RETURN 'upload not ended';
    END IF;
    PERFORM file_close_copy(v_file.id, v_copy.id);
    UPDATE subrequest SET file_id = v_file.id, disk_copy_id = v_copy.id, size_bytes = v_copy.size_bytes,
           checksum_adler32 = v_copy.checksum_adler32 WHERE id = p_id;
    PERFORM subrequest_finish(p_id, 'closed');
    RETURN '';
END;
$$;

-- subrequest_decide_rm removes a file: writes in progress fail ("removed while being
-- written"), subrequests waiting on the file or not yet transferring fail with not_found,
-- reads already transferring finish (their copy is kept until they end), every copy becomes
-- INVALID for its disk server to delete, and the namespace entry goes.
-- Locks: the file row, the other subrequests on the file.
CREATE OR REPLACE FUNCTION subrequest_decide_rm(p_id bigint)
RETURNS text
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
DECLARE
    v_file file;
    v_other subrequest;
BEGIN
    SELECT * INTO v_file FROM subrequest_file(p_id);
    IF v_file.id IS NULL THEN
        RETURN 'no such file';
    END IF;
    FOR v_other IN
        SELECT s.* FROM subrequest s
        WHERE s.file_id = v_file.id AND s.id <> p_id
          AND (s.status IN ('WAITSUBREQ', 'WAITSCHED', 'SCHEDULED') OR (s.status = 'READY' AND s.type = 'PUT'))
        ORDER BY s.id FOR UPDATE
    LOOP
        IF v_other.type = 'PUT' THEN
            PERFORM subrequest_fail(v_other.id, 'PX003', format('%s was removed (stager_rm) while being written', v_file.path));
        ELSE
            PERFORM subrequest_fail(v_other.id, 'PX001', format('no such file: %s was removed (stager_rm)', v_file.path));
        END IF;
    END LOOP;
    UPDATE disk_copy SET status = 'INVALID', updated_at = now()
    WHERE file_id = v_file.id AND status IN ('STAGED', 'STAGEOUT');
    DELETE FROM file WHERE id = v_file.id;
    PERFORM subrequest_finish(p_id, 'removed');
    RETURN '';
END;
$$;
