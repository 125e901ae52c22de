-- The scheduling policy: which disk server and file system take a transfer. It is SQL so
-- that an operator can change it on a running instance (`pollux-admin logic apply`).

-- disk_server_live_seconds is how recent a heartbeat must be for a disk server to take
-- new transfers.
CREATE OR REPLACE FUNCTION disk_server_live_seconds()
RETURNS integer
LANGUAGE sql IMMUTABLE
SET search_path = public, pg_temp
AS $$ SELECT 30 $$;

-- subrequest_schedule places a SCHEDULED subrequest. A write goes to a PRODUCTION file
-- system of the request's service class on a PRODUCTION, heartbeating disk server, the one
-- with the fewest transfers in flight, then the most free space, then the lowest load; a read
-- goes to the server holding the STAGED copy (PRODUCTION or DRAINING). When nothing can take
-- it, the subrequest goes back to WAITSCHED for two seconds with the note "queued, no disk
-- server available" (visible to the client), and no row is returned: the job manager
-- re-submits it then, or sooner when a disk server appears (NOTIFY pollux_capacity).
-- Returns the disk server and its River queue; the caller queues the transfer job there in
-- the same transaction. Idempotent: a subrequest no longer waiting to be placed returns
-- nothing. Locks: the subrequest, its copy.
CREATE OR REPLACE FUNCTION subrequest_schedule(p_id bigint)
RETURNS TABLE (disk_server_id bigint, queue text, disk_server_name text)
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_sr subrequest;
    v_sc bigint;
    v_fs bigint;
    v_ds bigint;
    v_name text;
BEGIN
    SELECT * INTO v_sr FROM subrequest s WHERE s.id = p_id FOR UPDATE;
    IF NOT FOUND OR v_sr.status <> 'SCHEDULED' OR v_sr.disk_server_id IS NOT NULL THEN
        RETURN;
    END IF;
    IF v_sr.type = 'PUT' THEN
        SELECT r.service_class_id INTO v_sc FROM request r WHERE r.id = v_sr.request_id;
        SELECT fs.id, ds.id, ds.name INTO v_fs, v_ds, v_name
        FROM file_system fs JOIN disk_server ds ON ds.id = fs.disk_server_id
        WHERE ds.status = 'PRODUCTION' AND fs.status = 'PRODUCTION'
          AND ds.heartbeat_at > now() - make_interval(secs => disk_server_live_seconds())
          AND fs.service_class_id = v_sc AND fs.free_bytes > 0
        ORDER BY (SELECT count(*) FROM subrequest t WHERE t.file_system_id = fs.id AND t.status IN ('SCHEDULED', 'READY')),
                 fs.free_bytes DESC, ds.load, fs.id
        LIMIT 1;
    ELSE
        SELECT fs.id, ds.id, ds.name INTO v_fs, v_ds, v_name
        FROM disk_copy dc JOIN file_system fs ON fs.id = dc.file_system_id JOIN disk_server ds ON ds.id = fs.disk_server_id
        WHERE dc.id = v_sr.disk_copy_id AND dc.status = 'STAGED'
          AND ds.status IN ('PRODUCTION', 'DRAINING') AND fs.status IN ('PRODUCTION', 'DRAINING')
          AND ds.heartbeat_at > now() - make_interval(secs => disk_server_live_seconds());
    END IF;
    IF v_ds IS NULL THEN
        UPDATE subrequest s SET status = 'WAITSCHED', next_attempt_at = now() + interval '2 seconds',
               info = CASE WHEN v_sr.type = 'PUT' THEN 'queued, no disk server available'
                           ELSE 'queued, no disk server holding a copy is available' END,
               updated_at = now()
        WHERE s.id = p_id;
        PERFORM request_refresh(v_sr.request_id);
        RETURN;
    END IF;
    IF v_sr.type = 'PUT' THEN
        UPDATE disk_copy dc SET file_system_id = v_fs, updated_at = now() WHERE dc.id = v_sr.disk_copy_id;
    END IF;
    UPDATE subrequest s SET disk_server_id = v_ds, file_system_id = v_fs, info = format('scheduled on %s', v_name), updated_at = now()
    WHERE s.id = p_id;
    disk_server_id := v_ds; queue := disk_server_queue(v_ds); disk_server_name := v_name;
    RETURN NEXT;
END;
$$;
