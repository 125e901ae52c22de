-- The job manager: hands decided subrequests to the scheduler, and takes back transfers
-- whose disk server died.

-- subrequest_claim_waitsched claims subrequests ready for scheduling (WAITSCHED, not
-- deferred) and marks them SCHEDULED; the caller submits a scheduler job in the same
-- transaction, so a claim and its submission commit together or not at all.
-- Locks: the claimed subrequests (FOR UPDATE SKIP LOCKED).
-- PL/pgSQL rather than SQL on the hot path here and elsewhere: PostgreSQL 15 plans a SQL
-- function's body at every call (0.2-0.4 ms on a small machine), PL/pgSQL once per session.
CREATE OR REPLACE FUNCTION subrequest_claim_waitsched(p_batch integer)
RETURNS TABLE (id bigint, request_id uuid, type request_type)
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    UPDATE subrequest s SET status = 'SCHEDULED', info = 'submitted to the scheduler', updated_at = now()
    WHERE s.id = ANY (ARRAY(
        SELECT w.id FROM subrequest w
        WHERE w.status = 'WAITSCHED' AND w.next_attempt_at <= now()
        ORDER BY w.id LIMIT p_batch FOR UPDATE SKIP LOCKED))
    RETURNING s.id, s.request_id, s.type;
END;
$$;

-- subrequest_take_back returns a transfer to the stager after its disk server died or
-- restarted: a write's copy becomes INVALID; the subrequest becomes RETRY (and is decided
-- again, on a fresh copy for a write), or FAILED with unavailable (PX005) after
-- p_max_retries, in which case readers waiting on the file are woken.
-- Locks: the caller holds the subrequest row.
CREATE OR REPLACE FUNCTION subrequest_take_back(p_id bigint, p_reason text, p_max_retries integer)
RETURNS subrequest_status
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
DECLARE
    v_sr subrequest;
BEGIN
    SELECT * INTO v_sr FROM subrequest WHERE id = p_id;
    IF v_sr.type = 'PUT' THEN
        UPDATE disk_copy SET status = 'INVALID', updated_at = now() WHERE id = v_sr.disk_copy_id AND status = 'STAGEOUT';
    END IF;
    IF v_sr.retries >= p_max_retries THEN
        IF v_sr.type = 'PUT' AND v_sr.file_id IS NOT NULL THEN
            PERFORM subrequest_wake_waiters(v_sr.file_id);
        END IF;
        PERFORM subrequest_fail(p_id, 'PX005', format('%s during the transfer of %s; gave up after %s tries',
            p_reason, v_sr.path, v_sr.retries + 1));
        RETURN 'FAILED';
    END IF;
    UPDATE subrequest s SET status = 'RETRY', retries = s.retries + 1, disk_server_id = NULL, file_system_id = NULL,
           mover_url = NULL, token = NULL,
           disk_copy_id = CASE WHEN s.type = 'PUT' THEN NULL ELSE s.disk_copy_id END,
           info = p_reason || '; retrying', updated_at = now()
    WHERE s.id = p_id;
    PERFORM pg_notify(subrequest_channel(v_sr.type), '');
    PERFORM request_refresh(v_sr.request_id);
    RETURN 'RETRY';
END;
$$;

-- subrequest_expire takes back transfers (SCHEDULED on, or READY at, a disk server) whose
-- disk server has not heartbeated for p_heartbeat_timeout_seconds (see
-- subrequest_take_back). Locks: the expired subrequests (SKIP LOCKED) and their copies.
CREATE OR REPLACE FUNCTION subrequest_expire(p_heartbeat_timeout_seconds integer, p_max_retries integer)
RETURNS TABLE (id bigint, request_id uuid, status subrequest_status)
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_sr record;
BEGIN
    FOR v_sr IN
        SELECT s.id, s.request_id, ds.name FROM subrequest s JOIN disk_server ds ON ds.id = s.disk_server_id
        WHERE s.status IN ('SCHEDULED', 'READY')
          AND ds.heartbeat_at < now() - make_interval(secs => p_heartbeat_timeout_seconds)
        ORDER BY s.id FOR UPDATE OF s SKIP LOCKED
    LOOP
        id := v_sr.id; request_id := v_sr.request_id;
        status := subrequest_take_back(v_sr.id, format('disk server %s stopped answering', v_sr.name), p_max_retries);
        RETURN NEXT;
    END LOOP;
END;
$$;
