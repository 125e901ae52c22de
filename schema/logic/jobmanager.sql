-- The job manager: the life of transfers once they leave the fast path. It moves on the
-- transfers of disk servers that stopped heartbeating (disk_server_expire, in
-- diskserver.sql), ends transfers that outlived every time limit (their disk server could
-- not record the end), and moves finished requests out of the hot tables. Nothing here is
-- on the path of a request that goes well; every sweep skips rows another job manager
-- holds, so any number may run.

-- subrequest_take_back returns a transfer to the stager after its disk server restarted or
-- stopped (disk_server_recover): a write's copy becomes INVALID; the subrequest becomes
-- RETRY (decided again, on a fresh copy for a write), or, after policy
-- transfer_max_retries, FAILED with unavailable (PX005) and its write abandoned
-- (subrequest_abandon_write). Returns the new status.
-- Locks: the caller holds the subrequest row; the file and copy.
CREATE OR REPLACE FUNCTION subrequest_take_back(p_id bigint, p_reason text)
RETURNS subrequest_status
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_sr subrequest;
    v_bytes bigint;
BEGIN
    SELECT * INTO v_sr FROM subrequest WHERE id = p_id;
    IF v_sr.retries >= policy_value('transfer_max_retries') THEN
        PERFORM subrequest_abandon_write(p_id);
        PERFORM subrequest_fail(p_id, 'PX005', format('%s during the transfer of %s; gave up after %s tries',
            p_reason, v_sr.path, v_sr.retries + 1));
        RETURN 'FAILED';
    END IF;
    IF v_sr.type = 'PUT' THEN
        WITH dropped AS (
            UPDATE disk_copy SET status = 'INVALID', updated_at = now() WHERE id = v_sr.disk_copy_id AND status = 'STAGEOUT'
            RETURNING size_bytes)
        SELECT coalesce(sum(size_bytes), 0) INTO v_bytes FROM dropped;
        -- Its bytes, had its end been recorded, leave the owner's quota.
        PERFORM file_quota_add(v_sr.file_id, -v_bytes, 0);
    END IF;
    UPDATE subrequest s SET status = 'RETRY', retries = s.retries + 1, disk_server_id = NULL, file_system_id = NULL,
           mover_url = NULL, token = NULL,
           disk_copy_id = CASE WHEN s.type = 'PUT' THEN NULL ELSE s.disk_copy_id END,
           info = p_reason || '; retrying', updated_at = now()
    WHERE s.id = p_id;
    PERFORM pg_notify(pollux_channel_subrequest_new(v_sr.type), '');
    PERFORM request_refresh(v_sr.request_id);
    RETURN 'RETRY';
END;
$$;

-- subrequest_expire is the job manager's sweep over transfers in flight, at most p_batch
-- of them: a READY transfer older than policy transfer_open_seconds + transfer_seconds and
-- a minute (its disk server should have ended it and could not record why) fails. The
-- transfers of disk servers that fell silent are moved on by disk_server_expire, which the
-- job manager runs first. Returns what it changed. A re-run after its commit's reply was
-- lost sweeps what is left (idempotent).
-- Locks: those subrequests (SKIP LOCKED) and their copies.
CREATE OR REPLACE FUNCTION subrequest_expire(p_batch integer)
RETURNS TABLE (id bigint, request_id uuid, status subrequest_status, reason text)
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_sr record;
    v_life interval := make_interval(secs => policy_value('transfer_open_seconds') + policy_value('transfer_seconds') + 60);
BEGIN
    FOR v_sr IN
        SELECT s.id, s.request_id FROM subrequest s
        WHERE s.status = 'READY' AND s.updated_at < now() - v_life
        ORDER BY s.updated_at LIMIT p_batch FOR UPDATE SKIP LOCKED
    LOOP
        id := v_sr.id; request_id := v_sr.request_id; status := 'FAILED';
        reason := format('the transfer outlived its time limit of %s and its disk server did not report its end', v_life);
        PERFORM subrequest_fail_transfer(v_sr.id, 'PX007', reason);
        RETURN NEXT;
    END LOOP;
END;
$$;

-- request_archive_finished moves up to p_batch requests that ended longer ago than policy
-- request_retention_seconds out of the hot tables: each is kept as its request_view in
-- request_archive (request look-ups still answer from there), with its story
-- (request_history), and its rows are deleted, so that the history never grows the tables
-- every claim reads. Returns how many it moved;
-- a re-run moves what is left (idempotent). Locks: those requests (SKIP LOCKED), their
-- subrequests and transitions.
CREATE OR REPLACE FUNCTION request_archive_finished(p_batch integer)
RETURNS integer
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_r record;
    v_n integer := 0;
BEGIN
    -- One request at a time, each by its key: a set-wise INSERT ... WHERE id = ANY (ids)
    -- is planned as a scan of the whole table once the batch is a few percent of it.
    FOR v_r IN
        SELECT r.id, r.user_name, r.status, r.updated_at FROM request r
        WHERE r.status IN ('FINISHED', 'FAILED')
          AND r.updated_at < now() - make_interval(secs => policy_value('request_retention_seconds'))
        ORDER BY r.updated_at LIMIT p_batch FOR UPDATE SKIP LOCKED
    LOOP
        INSERT INTO request_archive (id, user_name, status, finished_at, view, history)
        VALUES (v_r.id, v_r.user_name, v_r.status::text, v_r.updated_at, request_view(v_r.id),
                request_history_json(v_r.id))
        ON CONFLICT (id) DO NOTHING;
        -- Its story goes with it: kept in the archive row, out of the table every change
        -- of a subrequest writes to.
        DELETE FROM subrequest_transition WHERE request_id = v_r.id;
        -- Its subrequests go with it (ON DELETE CASCADE); a waiter's link to one of them is
        -- cleared by the foreign key (ON DELETE SET NULL).
        DELETE FROM request WHERE id = v_r.id;
        v_n := v_n + 1;
    END LOOP;
    RETURN v_n;
END;
$$;

-- request_archive_purge deletes up to p_batch archived requests older than policy
-- request_archive_seconds. Returns how many; a re-run deletes what is left (idempotent).
-- The ids are taken into an array first: written as a.id IN (subquery), the generic plan
-- walked the archive's primary key for every purge, a cost that grows with the archive.
-- Locks: those rows.
CREATE OR REPLACE FUNCTION request_archive_purge(p_batch integer)
RETURNS integer
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_n integer;
BEGIN
    DELETE FROM request_archive a WHERE a.id = ANY (ARRAY(
        SELECT x.id FROM request_archive x
        WHERE x.archived_at < now() - make_interval(secs => policy_value('request_archive_seconds'))
        ORDER BY x.archived_at LIMIT p_batch FOR UPDATE SKIP LOCKED));
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END;
$$;

-- disk_copy_expire_unclosed is the job manager's sweep over unclosed writes, at most
-- p_batch of them: a write whose copy has been STAGEOUT for longer than policy
-- put_lease_seconds (0: never) fails and is given up (disk_copy_abandon: its copy INVALID,
-- its bytes and, for a file that never had content, its namespace entry out of the
-- owner's quota, waiting readers started again). Its put's subrequest says why, in
-- stager_qry: one still queued or transferring fails (unavailable, PX005, when the service
-- never got it to a mover; conflict, PX003, when its client did not upload in time); one
-- whose upload ended but was never closed stays FINISHED (a final status: its client has
-- gone, and a status that could still change would keep waiters waiting) with the reason
-- as its info, and its request is refreshed. Every reason starts with "expired:", which
-- file_query shows for a file that keeps its previous content. Each expiry is journaled
-- (system_event write_expired). Readers of the file's previous content were never
-- held up by the write (subrequest_decide_get) and keep reading it. Returns what it
-- failed. A re-run after its commit's reply was lost sweeps what is left (idempotent).
-- Locks: each write's subrequest (SKIP LOCKED), then its file (SKIP LOCKED: one being
-- decided now is swept next time), its copy, the owner's usage row.
CREATE OR REPLACE FUNCTION disk_copy_expire_unclosed(p_batch integer)
RETURNS TABLE (subrequest_id bigint, request_id uuid, path text, reason text)
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_lease bigint := policy_value('put_lease_seconds');
    v_copy record;
    v_sr subrequest;
    v_path text;
BEGIN
    IF v_lease = 0 THEN
        RETURN;
    END IF;
    FOR v_copy IN
        SELECT dc.id, dc.file_id, dc.created_at FROM disk_copy dc
        WHERE dc.status = 'STAGEOUT' AND dc.created_at < now() - make_interval(secs => v_lease)
        ORDER BY dc.created_at LIMIT p_batch
    LOOP
        IF v_copy.file_id IS NULL THEN
            -- Its file is gone (every way of removing one gives its copies up first):
            -- nothing to tell anyone, and it must not hold the head of the sweep.
            UPDATE disk_copy dc SET status = 'INVALID', updated_at = now() WHERE dc.id = v_copy.id AND dc.status = 'STAGEOUT';
            CONTINUE;
        END IF;
        -- Subrequest, then file, as a decision and a transfer's end lock them.
        v_sr := NULL;
        SELECT s.* INTO v_sr FROM subrequest s
        WHERE s.disk_copy_id = v_copy.id AND s.type = 'PUT' ORDER BY s.id DESC LIMIT 1 FOR UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND AND EXISTS (SELECT 1 FROM subrequest s WHERE s.disk_copy_id = v_copy.id AND s.type = 'PUT');
        SELECT f.path INTO v_path FROM file f WHERE f.id = v_copy.file_id FOR UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        CONTINUE WHEN NOT EXISTS (SELECT 1 FROM disk_copy dc WHERE dc.id = v_copy.id AND dc.status = 'STAGEOUT');
        reason := format('expired: the write of %s was not closed within policy put_lease_seconds (%s s) of its put at %s and was given up; write it again',
            v_path, v_lease, to_char(v_copy.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'));
        subrequest_id := v_sr.id; request_id := v_sr.request_id; path := v_path;
        IF v_sr.id IS NULL OR v_sr.status = 'FAILED' THEN
            -- Its put was archived (or failed without giving the copy up): nobody to tell.
            PERFORM disk_copy_abandon(v_copy.file_id, v_copy.id);
        ELSIF v_sr.status = 'FINISHED' THEN
            PERFORM disk_copy_abandon(v_copy.file_id, v_copy.id);
            UPDATE subrequest s SET info = reason, updated_at = now() WHERE s.id = v_sr.id;
            PERFORM request_refresh(v_sr.request_id);
        ELSE
            PERFORM subrequest_fail_transfer(v_sr.id, CASE WHEN v_sr.status = 'READY' THEN 'PX003' ELSE 'PX005' END, reason);
        END IF;
        PERFORM system_event_record('write_expired', 'jobmanagerd', NULL, reason,
            jsonb_build_object('path', v_path, 'disk_copy_id', v_copy.id, 'subrequest_id', v_sr.id, 'lease_seconds', v_lease));
        RETURN NEXT;
    END LOOP;
END;
$$;
