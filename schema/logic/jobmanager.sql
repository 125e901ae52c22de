-- The job manager: hands decided subrequests to the scheduler, and takes back transfers
-- whose disk server died.

-- subrequest_claim_waitsched claims subrequests ready for scheduling (WAITSCHED, not
-- deferred) and marks them SCHEDULED; the caller submits a scheduler job in the same
-- transaction, so a claim and its submission commit together or not at all.
-- Locks: the claimed subrequests (FOR UPDATE SKIP LOCKED).
CREATE OR REPLACE FUNCTION subrequest_claim_waitsched(p_batch integer)
RETURNS TABLE (id bigint, request_id uuid, type request_type)
LANGUAGE sql
SET search_path = public, pg_temp
AS $$
    UPDATE subrequest s SET status = 'SCHEDULED', info = 'submitted to the scheduler', updated_at = now()
    WHERE s.id = ANY (ARRAY(
        SELECT w.id FROM subrequest w
        WHERE w.status = 'WAITSCHED' AND w.next_attempt_at <= now()
        ORDER BY w.id LIMIT p_batch FOR UPDATE SKIP LOCKED))
    RETURNING s.id, s.request_id, s.type;
$$;

-- subrequest_expire takes back transfers (SCHEDULED on, or READY at, a disk server) whose
-- disk server has not heartbeated for p_heartbeat_timeout_seconds: a write's copy becomes
-- INVALID; the subrequest goes back to the stager as RETRY, or FAILED with unavailable
-- (PX005) after p_max_retries. Locks: the expired subrequests and their copies.
CREATE OR REPLACE FUNCTION subrequest_expire(p_heartbeat_timeout_seconds integer, p_max_retries integer)
RETURNS TABLE (id bigint, request_id uuid, status subrequest_status)
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_sr subrequest;
    v_server text;
BEGIN
    FOR v_sr IN
        SELECT s.* FROM subrequest s JOIN disk_server ds ON ds.id = s.disk_server_id
        WHERE s.status IN ('SCHEDULED', 'READY')
          AND ds.heartbeat_at < now() - make_interval(secs => p_heartbeat_timeout_seconds)
        ORDER BY s.id FOR UPDATE OF s SKIP LOCKED
    LOOP
        SELECT name INTO v_server FROM disk_server WHERE disk_server.id = v_sr.disk_server_id;
        IF v_sr.type = 'PUT' THEN
            UPDATE disk_copy SET status = 'INVALID', updated_at = now() WHERE disk_copy.id = v_sr.disk_copy_id AND disk_copy.status = 'STAGEOUT';
        END IF;
        id := v_sr.id; request_id := v_sr.request_id;
        IF v_sr.retries >= p_max_retries THEN
            PERFORM subrequest_fail(v_sr.id, 'PX005', format('disk server %s stopped answering during the transfer of %s; gave up after %s tries',
                v_server, v_sr.path, v_sr.retries + 1));
            IF v_sr.type = 'PUT' AND v_sr.file_id IS NOT NULL THEN
                PERFORM subrequest_wake_waiters(v_sr.file_id);
            END IF;
            status := 'FAILED';
        ELSE
            UPDATE subrequest s SET status = 'RETRY', retries = s.retries + 1, disk_server_id = NULL, file_system_id = NULL,
                   mover_url = NULL, token = NULL,
                   disk_copy_id = CASE WHEN s.type = 'PUT' THEN NULL ELSE s.disk_copy_id END,
                   info = format('disk server %s stopped answering; retrying', v_server), updated_at = now()
            WHERE s.id = v_sr.id;
            PERFORM pg_notify('pollux_subrequest_new', v_sr.type::text);
            PERFORM request_refresh(v_sr.request_id);
            status := 'RETRY';
        END IF;
        RETURN NEXT;
    END LOOP;
END;
$$;
