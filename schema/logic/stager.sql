-- The stager's decisions. subrequest_claim claims up to p_batch new subrequests (START,
-- RESTART, RETRY) of one request family with FOR UPDATE SKIP LOCKED — rows another stager
-- holds are passed over, never waited for — and decides each in the same transaction with
-- its family's subrequest_decide_* function.
-- Decisions on one path are serialised by locking its file row (created on first put), so
-- two stagers never decide on the same file at once.
--
-- Outcomes: SCHEDULED (a transfer is needed and the scheduler plugin, subrequest_place,
-- placed it at once: the claim returns the disk server's URL and stagerd sends it a wake-up
-- hint after commit; nothing is NOTIFYed), WAITSCHED (a transfer is needed and nothing can
-- take it now: schedulerd places it when capacity changes; the request is refreshed so the
-- client sees why), WAITSUBREQ (another subrequest writes the file; woken by
-- subrequest_wake_waiters), FINISHED or FAILED (decided here; the request is refreshed and
-- NOTIFY pollux_request_changed ends its long polls).

-- file_lock returns the file row at p_path locked FOR UPDATE, creating it when p_create
-- (for a put); no row when there is no such file. Locks: the file row.
CREATE OR REPLACE FUNCTION file_lock(p_path text, p_service_class_id bigint, p_owner text, p_create boolean)
RETURNS SETOF file
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    IF p_create THEN
        INSERT INTO file (path, service_class_id, owner) VALUES (p_path, p_service_class_id, p_owner)
        ON CONFLICT (path) DO NOTHING;
    END IF;
    RETURN QUERY SELECT * FROM file WHERE path = p_path FOR UPDATE;
END;
$$;

-- subrequest_finish ends a subrequest successfully and refreshes its request. A write's end
-- gives its size and sum (p_size_bytes, p_checksum_adler32), a decision that finishes at
-- once the file and copy it found (p_file_id, p_disk_copy_id), recorded in the same UPDATE
-- (one new version of the row and of its indexes' entries instead of two); NULL keeps the
-- row's.
CREATE OR REPLACE FUNCTION subrequest_finish(p_id bigint, p_info text, p_size_bytes bigint, p_checksum_adler32 text,
                                             p_file_id bigint, p_disk_copy_id bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_request uuid;
BEGIN
    UPDATE subrequest SET status = 'FINISHED', info = coalesce(p_info, ''), token = NULL, updated_at = now(),
                          size_bytes = coalesce(p_size_bytes, size_bytes),
                          checksum_adler32 = coalesce(p_checksum_adler32, checksum_adler32),
                          file_id = coalesce(p_file_id, file_id), disk_copy_id = coalesce(p_disk_copy_id, disk_copy_id)
    WHERE id = p_id RETURNING request_id INTO v_request;
    PERFORM request_refresh(v_request);
END;
$$;

-- subrequest_wait_transfer records what a transfer moves (the file, the copy) and hands the
-- subrequest to the scheduler plugin (subrequest_place), returning the disk server's URL
-- when it was placed at once. Locks: the caller holds the subrequest and the file.
CREATE OR REPLACE FUNCTION subrequest_wait_transfer(p_id bigint, p_file_id bigint, p_disk_copy_id bigint)
RETURNS text
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    UPDATE subrequest SET file_id = p_file_id, disk_copy_id = p_disk_copy_id WHERE id = p_id;
    RETURN (SELECT p.disk_server_url FROM subrequest_place(p_id) p);
END;
$$;

-- subrequest_file returns the file row of a subrequest's path, locked, when its requester
-- may do to it what the subrequest's type needs (namespace_authorise: read for GET and
-- PREPARE_TO_GET, write for PUTDONE, remove for RM). Otherwise it fails the subrequest, with
-- permission_denied (PX004) naming path, owner, mode and user, or with not_found (PX001)
-- when there is no such file, and returns no row.
-- Locks: the file row. Raises: invalid_argument (PX002) for a PUT (its decision creates
-- the file: namespace_file_create).
CREATE OR REPLACE FUNCTION subrequest_file(p_id bigint)
RETURNS SETOF file
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_sr subrequest;
    v_user text;
    v_file file;
    v_problem text;
BEGIN
    SELECT * INTO v_sr FROM subrequest WHERE id = p_id;
    SELECT r.user_name INTO v_user FROM request r WHERE r.id = v_sr.request_id;
    SELECT * INTO v_file FROM file_lock(v_sr.path, NULL, NULL, false);
    -- Before not_found: a user who may not search a directory learns nothing of its files.
    v_problem := namespace_authorise(v_user, v_sr.path, CASE v_sr.type
        WHEN 'GET' THEN 'read' WHEN 'PREPARE_TO_GET' THEN 'read' WHEN 'PUTDONE' THEN 'write' WHEN 'RM' THEN 'remove'
        ELSE 'none' END);
    IF v_problem IS NOT NULL THEN
        PERFORM subrequest_fail(p_id, 'PX004', v_problem);
        RETURN;
    ELSIF v_file.id IS NULL THEN
        PERFORM subrequest_fail(p_id, 'PX001', format('no such file: %s', v_sr.path));
        RETURN;
    END IF;
    RETURN NEXT v_file;
END;
$$;

-- subrequest_claim claims new subrequests of one family and decides each; it returns the
-- decisions (status, a short reason when not the expected one, and for a transfer placed at
-- once the URL of its disk server, for the wake-up hint).
-- The claim reads each request type of the family with an equality on type, in the order
-- the subrequests joined the queue (type, updated_at, id), so that it walks the partial index
-- subrequest_queued_idx and never the history of finished subrequests: type = ANY (array)
-- does not match the index order, and an order by id alone the primary key could give too,
-- which the planner took for a long queue (migration 19).
-- A re-run after its commit's reply was lost claims other rows (idempotent): the decisions
-- are made and notified; only the wake-up hints for the transfers placed are lost, and the
-- disk servers' polls make up for them.
-- Locks: the claimed subrequests (SKIP LOCKED), then what each decision locks.
-- Raises: invalid_argument (PX002) for an unknown family.
CREATE OR REPLACE FUNCTION subrequest_claim(p_family text, p_batch integer)
RETURNS TABLE (id bigint, request_id uuid, path text, status subrequest_status, message text, wake_url text)
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_types request_type[] := ARRAY(SELECT t FROM unnest(enum_range(NULL::request_type)) t WHERE pollux_family(t) = p_family);
    v_type request_type;
    v_sr subrequest;
    v_left integer := p_batch;
    v_claimed uuid[] := '{}';
    v_notified uuid[] := '{}';
BEGIN
    IF cardinality(v_types) = 0 THEN
        RAISE EXCEPTION 'unknown request family "%": put, get, putdone or rm', p_family USING ERRCODE = 'PX002';
    END IF;
    FOREACH v_type IN ARRAY v_types LOOP
        EXIT WHEN v_left <= 0;
        FOR v_sr IN
            SELECT s.* FROM subrequest s
            WHERE s.type = v_type AND s.status IN ('START', 'RESTART', 'RETRY')
            ORDER BY s.type, s.updated_at, s.id LIMIT v_left FOR UPDATE SKIP LOCKED
        LOOP
            v_left := v_left - 1;
            id := v_sr.id; request_id := v_sr.request_id; path := v_sr.path; wake_url := NULL;
            message := '';
            CASE p_family
                WHEN 'put' THEN wake_url := subrequest_decide_put(v_sr.id);
                WHEN 'get' THEN wake_url := subrequest_decide_get(v_sr.id);
                WHEN 'putdone' THEN PERFORM subrequest_decide_putdone(v_sr.id);
                WHEN 'rm' THEN PERFORM subrequest_decide_rm(v_sr.id);
            END CASE;
            SELECT s.status, coalesce(s.error_message, '') INTO status, message FROM subrequest s WHERE s.id = v_sr.id;
            IF status <> 'SCHEDULED' THEN
                v_notified := v_notified || v_sr.request_id; -- its decision refreshed the request
            END IF;
            v_claimed := v_claimed || v_sr.request_id;
            RETURN NEXT;
        END LOOP;
    END LOOP;
    -- A request refreshed by one decision may have had another file decided after it
    -- without a refresh (SCHEDULED tells no client): refresh it again, so that the last
    -- notification of the transaction carries its final state. A request with one file
    -- decided here needs nothing more.
    PERFORM request_refresh(r)
    FROM (SELECT DISTINCT n AS r FROM unnest(v_notified) n) x
    WHERE (SELECT count(*) FROM unnest(v_claimed) c WHERE c = x.r) > 1;
END;
$$;

-- file_unclosed_writer says whether a write of the file is unclosed (it has a STAGEOUT
-- copy): NULL when none is, else the newest PUT subrequest writing that copy other than
-- p_except, or 0 when that writer is gone (archived). A put then fails and a get waits on
-- it. It finds the writer through its copy (subrequest_disk_copy_id_idx), never through the
-- file's history of requests. Reads only.
CREATE OR REPLACE FUNCTION file_unclosed_writer(p_file_id bigint, p_except bigint)
RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_copy bigint;
BEGIN
    SELECT dc.id INTO v_copy FROM disk_copy dc WHERE dc.file_id = p_file_id AND dc.status = 'STAGEOUT' ORDER BY dc.id DESC LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN coalesce((SELECT s.id FROM subrequest s
                     WHERE s.disk_copy_id = v_copy AND s.type = 'PUT' AND s.id IS DISTINCT FROM p_except
                     ORDER BY s.id DESC LIMIT 1), 0);
END;
$$;

-- subrequest_decide_put decides a PUT: FAILED with permission_denied (PX004) when its user
-- may not create the file (a new one: namespace_file_create makes it and its directories)
-- or write it (an existing one), or when the file exists and the put may only create it
-- (create_only: its token's scope), changing nothing; FAILED with quota_exceeded (PX010) when
-- a new file would pass the writer's file quota in the request's service class, or the
-- file's owner has no room left in its bytes quota (quota_room; the bytes of the write are
-- counted when its upload ends), changing nothing; FAILED with conflict (PX003) while
-- another write of the file is unclosed (the second writer fails at once rather than
-- waiting behind a write that may never be closed; see docs/statuses.md); else a new
-- STAGEOUT disk copy handed to the scheduler plugin (SCHEDULED or WAITSCHED). Returns the
-- disk server's URL when the write was placed at once. Locks: the file row, the
-- directories it creates, the usage rows of the writer and of the file's owner (quota_room).
CREATE OR REPLACE FUNCTION subrequest_decide_put(p_id bigint)
RETURNS text
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_sr subrequest;
    v_req request;
    v_file file;
    v_writer bigint;
    v_copy bigint;
    v_problem text;
    v_quota text;
    v_new bigint;
BEGIN
    SELECT * INTO v_sr FROM subrequest WHERE id = p_id;
    SELECT * INTO v_req FROM request WHERE id = v_sr.request_id;
    SELECT * INTO v_file FROM file_lock(v_sr.path, NULL, NULL, false);
    IF v_file.id IS NULL THEN
        -- The quota before anything is created, so that a refused put leaves no
        -- directory behind; but not for a user the bits refuse (namespace_file_create
        -- says so), whom a quota refusal would tell that the file does not exist. The
        -- bits alone, read twice: an administrator's override is journaled once, there.
        -- The new file is the writer's, in the request's service class: it needs one
        -- file and some room there.
        IF namespace_access_problem(v_req.user_name, v_sr.path, 'create') IS NULL
           OR EXISTS (SELECT 1 FROM admin_user a WHERE a.user_name = v_req.user_name) THEN
            v_quota := quota_room(v_req.user_name, v_req.service_class_id, NULL, 1);
            IF v_quota IS NOT NULL THEN
                PERFORM subrequest_fail(p_id, 'PX010', v_quota);
                RETURN NULL;
            END IF;
        END IF;
        SELECT c.file_id, c.problem INTO v_new, v_problem
        FROM namespace_file_create(v_sr.path, v_req.service_class_id, v_req.user_name) c;
        SELECT * INTO v_file FROM file WHERE id = v_new;
        IF v_sr.create_only AND v_problem IS NULL THEN
            -- The file is this put's own now: a retry of the write may reuse it.
            UPDATE subrequest SET create_only = false WHERE id = p_id;
        END IF;
    ELSIF v_sr.create_only THEN
        v_problem := format('permission denied: %s exists, and the token this put came with may only create files there (storage.create): '
            || 'overwriting it needs storage.modify', v_sr.path);
    ELSE
        v_problem := namespace_authorise(v_req.user_name, v_sr.path, 'write');
    END IF;
    IF v_problem IS NOT NULL THEN
        PERFORM subrequest_fail(p_id, 'PX004', v_problem);
        RETURN NULL;
    END IF;
    -- A rewrite is charged to the file's owner, in the file's service class; a put whose
    -- file another request created meanwhile is a rewrite too, and is checked again here.
    v_quota := quota_room(v_file.owner, v_file.service_class_id, NULL, 0);
    IF v_quota IS NOT NULL THEN
        -- A file with no content yet (its first write was taken back and is decided
        -- again) is given up with it, as a failed first write's is.
        PERFORM disk_copy_abandon(v_file.id, NULL);
        PERFORM subrequest_fail(p_id, 'PX010', v_quota);
        RETURN NULL;
    END IF;
    v_writer := file_unclosed_writer(v_file.id, p_id);
    IF v_writer IS NOT NULL THEN
        PERFORM subrequest_fail(p_id, 'PX003', format(
            '%s is being written by another request (subrequest %s) and not yet closed: retry after its putdone, or stager_rm it',
            v_sr.path, coalesce(nullif(v_writer, 0)::text, '?')));
        RETURN NULL;
    END IF;
    -- The id first, so that the copy's name on disk is written with the row (one write).
    v_copy := nextval(pg_get_serial_sequence('disk_copy', 'id'));
    INSERT INTO disk_copy (id, file_id, status, disk_path) OVERRIDING SYSTEM VALUE
    VALUES (v_copy, v_file.id, 'STAGEOUT', format('%s.%s', v_file.id, v_copy));
    RETURN subrequest_wait_transfer(p_id, v_file.id, v_copy);
END;
$$;

-- subrequest_decide_get decides a GET or PREPARE_TO_GET: FAILED with permission_denied
-- (PX004) when its user may not read the file, with not_found (PX001)
-- when there is no file or no valid copy, or with transfer_failed (PX007) when its copy was
-- found corrupt (transfer_get_corrupt: a marked copy is never read again); WAITSUBREQ while
-- the first write of the file is unclosed (the reader then gets its content; during a
-- rewrite the reader gets the previous content at once); otherwise the STAGED
-- copy is handed to the scheduler plugin (GET: SCHEDULED on the server holding it, or
-- WAITSCHED while that server is down) or FINISHED (PREPARE_TO_GET: the file is on disk
-- already). Returns the disk server's URL when the read was placed at once.
-- Locks: the file row.
CREATE OR REPLACE FUNCTION subrequest_decide_get(p_id bigint)
RETURNS text
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_sr subrequest;
    v_file file;
    v_staged bigint;
    v_corrupt bigint;
    v_writer bigint;
BEGIN
    SELECT * INTO v_file FROM subrequest_file(p_id);
    IF v_file.id IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT * INTO v_sr FROM subrequest WHERE id = p_id;
    SELECT dc.id INTO v_staged FROM disk_copy dc
    WHERE dc.file_id = v_file.id AND dc.status = 'STAGED' AND dc.corrupt_at IS NULL ORDER BY dc.id DESC LIMIT 1;
    -- A rewrite in progress does not hold up a reader of the content it will replace: the
    -- write may stay unclosed until its lease ends (policy put_lease_seconds), and the
    -- previous content is the file's until then. Only a file with no readable content
    -- yet (its first write) is waited for.
    v_writer := file_unclosed_writer(v_file.id, p_id);
    IF v_writer IS NOT NULL AND v_staged IS NULL THEN
        UPDATE subrequest SET status = 'WAITSUBREQ', file_id = v_file.id, parent_id = nullif(v_writer, 0),
               info = format('waiting for the write of %s to be closed', v_sr.path), updated_at = now()
        WHERE id = p_id;
        PERFORM request_refresh(v_sr.request_id);
        RETURN NULL;
    END IF;
    IF v_staged IS NULL THEN
        SELECT dc.id INTO v_corrupt FROM disk_copy dc
        WHERE dc.file_id = v_file.id AND dc.status = 'STAGED' ORDER BY dc.id DESC LIMIT 1;
        IF v_corrupt IS NOT NULL THEN
            -- Not the user's to fix: the service lost the content (exit code 2).
            PERFORM subrequest_fail(p_id, 'PX007', format('%s has no readable copy: its copy %s was found corrupt and is kept for the operator',
                v_sr.path, v_corrupt));
        ELSE
            PERFORM subrequest_fail(p_id, 'PX001', format('%s has no valid copy (its last write failed)', v_sr.path));
        END IF;
        RETURN NULL;
    ELSIF v_sr.type = 'PREPARE_TO_GET' THEN
        PERFORM subrequest_finish(p_id, 'on disk', NULL, NULL, v_file.id, v_staged);
        RETURN NULL;
    END IF;
    RETURN subrequest_wait_transfer(p_id, v_file.id, v_staged);
END;
$$;

-- subrequest_decide_putdone closes a finished write: its STAGEOUT copy becomes STAGED (see
-- file_close_copy). Fails with permission_denied (PX004) when its user may not write the
-- file, not_found (PX001) for an unknown file and conflict (PX003)
-- when nothing is being written or the upload has not ended.
-- Locks: the file row and its copy.
CREATE OR REPLACE FUNCTION subrequest_decide_putdone(p_id bigint)
RETURNS text
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
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
    PERFORM subrequest_finish(p_id, 'closed', v_copy.size_bytes, v_copy.checksum_adler32, v_file.id, v_copy.id);
    RETURN '';
END;
$$;

-- subrequest_decide_rm removes a file: writes in progress fail ("removed while being
-- written"), subrequests waiting on the file or not yet transferring fail with not_found,
-- reads already transferring finish (their copy is kept until they end), every copy becomes
-- INVALID for its disk server to delete, and the namespace entry goes, with what it held
-- of its owner's quota (the file and its copies' bytes). Fails with
-- permission_denied (PX004) when its user may not remove the file (subrequest_file).
-- Locks: the file row, the other subrequests on the file, its owner's usage row.
CREATE OR REPLACE FUNCTION subrequest_decide_rm(p_id bigint)
RETURNS text
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_file file;
    v_other subrequest;
    v_freed bigint;
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
    WITH gone AS (
        UPDATE disk_copy SET status = 'INVALID', updated_at = now()
        WHERE file_id = v_file.id AND status IN ('STAGED', 'STAGEOUT') RETURNING size_bytes)
    SELECT coalesce(sum(size_bytes), 0) INTO v_freed FROM gone;
    PERFORM file_quota_add(v_file.id, -v_freed, -1);
    DELETE FROM file WHERE id = v_file.id;
    PERFORM subrequest_finish(p_id, 'removed', NULL, NULL, NULL, NULL);
    RETURN '';
END;
$$;
