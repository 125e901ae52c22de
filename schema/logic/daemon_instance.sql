-- Daemon instances: every daemon process registers on start, heartbeats, and marks itself
-- stopped on a clean exit. A crashed daemon simply stops heartbeating; operators see its
-- age grow in `pollux-admin daemons`.

-- daemon_instance_register records a new instance and journals the start. Idempotent: an
-- instance id is made afresh by each process, so an id registered already is this call
-- again (a re-run after its reply was lost, or a re-registration after a heartbeat found
-- the row gone): the row is refreshed, and the start is journaled once.
-- Locks: inserts one daemon_instance row. Raises: invalid_argument (PX002) on an empty role.
CREATE OR REPLACE FUNCTION daemon_instance_register(
    p_id uuid, p_role text, p_host text, p_pid integer, p_version text, p_pools jsonb, p_admin_url text)
RETURNS void
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    IF coalesce(p_role, '') = '' THEN
        RAISE EXCEPTION 'daemon role must not be empty' USING ERRCODE = 'PX002';
    END IF;
    INSERT INTO daemon_instance (id, role, host, pid, version, pools, admin_url)
    VALUES (p_id, p_role, p_host, p_pid, p_version, coalesce(p_pools, '{}'), coalesce(p_admin_url, ''))
    ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN
        UPDATE daemon_instance SET heartbeat_at = now(), stopped_at = NULL WHERE id = p_id;
        RETURN;
    END IF;
    PERFORM system_event_record('daemon_start', p_role, p_id,
        format('%s started on %s (pid %s, version %s)', p_role, p_host, p_pid, p_version),
        jsonb_build_object('pools', p_pools, 'admin_url', p_admin_url));
END;
$$;

-- daemon_instance_heartbeat refreshes an instance's heartbeat; running it again changes
-- nothing more. Locks: updates one daemon_instance row. Raises: not_found (PX001) for an unknown instance.
CREATE OR REPLACE FUNCTION daemon_instance_heartbeat(p_id uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    UPDATE daemon_instance SET heartbeat_at = now(), stopped_at = NULL WHERE id = p_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'daemon instance % is not registered', p_id USING ERRCODE = 'PX001';
    END IF;
END;
$$;

-- daemon_instance_stop marks an instance stopped and journals it. Unknown ids are ignored:
-- stopping is idempotent.
CREATE OR REPLACE FUNCTION daemon_instance_stop(p_id uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_role text;
BEGIN
    UPDATE daemon_instance SET stopped_at = now() WHERE id = p_id AND stopped_at IS NULL
    RETURNING role INTO v_role;
    IF FOUND THEN
        PERFORM system_event_record('daemon_stop', v_role, p_id, format('%s stopped', v_role), '{}');
    END IF;
END;
$$;

-- daemon_instance_list lists the instances heard from within the window, with their
-- heartbeat age: running ones, cleanly stopped ones, and silent ones (killed or cut off),
-- which age out of the list once the window passes. Reads only.
CREATE OR REPLACE FUNCTION daemon_instance_list(p_window_seconds integer)
RETURNS TABLE (id uuid, role text, host text, pid integer, version text, pools jsonb, admin_url text,
               started_at timestamptz, heartbeat_age_seconds double precision, stopped_at timestamptz)
LANGUAGE sql STABLE
SET search_path = public, pg_temp
AS $$
    SELECT d.id, d.role, d.host, d.pid, d.version, d.pools, d.admin_url, d.started_at,
           extract(epoch FROM now() - d.heartbeat_at)::double precision, d.stopped_at
    FROM daemon_instance d
    WHERE d.heartbeat_at > now() - make_interval(secs => p_window_seconds)
    ORDER BY d.role, d.host, d.started_at DESC;
$$;
