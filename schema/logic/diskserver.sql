-- Disk servers join by themselves (as xrootd data servers log in to their manager): a
-- diskserverd registers its server and file systems on start, heartbeats load and space,
-- and deletes the copies the stager invalidated.

-- disk_server_register records (or refreshes) a disk server by name and returns its id;
-- an operator's status (DRAINING, DISABLED) is kept across restarts. Capacity changed:
-- transfers waiting for a disk server may fit now (capacity_changed). Idempotent: the same
-- registration again returns the same id and leaves the same row; it journals the
-- registration once more (a process cannot be told from its own re-run). Locks: its row.
CREATE OR REPLACE FUNCTION disk_server_register(p_name text, p_url text, p_load double precision)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_id bigint;
BEGIN
    IF coalesce(p_name, '') = '' OR coalesce(p_url, '') = '' THEN
        RAISE EXCEPTION 'a disk server needs a name and a URL' USING ERRCODE = 'PX002';
    END IF;
    INSERT INTO disk_server AS d (name, url, load) VALUES (p_name, p_url, coalesce(p_load, 0))
    ON CONFLICT (name) DO UPDATE SET url = excluded.url, load = excluded.load, heartbeat_at = now()
    RETURNING d.id INTO v_id;
    PERFORM system_event_record('disk_server_register', 'diskserverd', NULL, format('disk server %s registered at %s', p_name, p_url),
        jsonb_build_object('disk_server_id', v_id));
    PERFORM capacity_changed();
    RETURN v_id;
END;
$$;

-- file_system_register records (or refreshes) one data directory of a disk server and
-- returns its id; the same call again returns the same id. Raises: not_found (PX001) for an unknown service class; invalid_argument
-- (PX002) for a relative mount point. Locks: its row.
CREATE OR REPLACE FUNCTION file_system_register(p_disk_server_id bigint, p_mount_point text, p_service_class text,
    p_capacity_bytes bigint, p_free_bytes bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_sc bigint;
    v_id bigint;
BEGIN
    IF left(coalesce(p_mount_point, ''), 1) <> '/' THEN
        RAISE EXCEPTION 'mount point % is not absolute', p_mount_point USING ERRCODE = 'PX002';
    END IF;
    SELECT id INTO v_sc FROM service_class WHERE name = p_service_class;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown service class "%"', p_service_class USING ERRCODE = 'PX001';
    END IF;
    INSERT INTO file_system AS f (disk_server_id, mount_point, service_class_id, capacity_bytes, free_bytes)
    VALUES (p_disk_server_id, p_mount_point, v_sc, p_capacity_bytes, p_free_bytes)
    ON CONFLICT (disk_server_id, mount_point) DO UPDATE
        SET service_class_id = excluded.service_class_id, capacity_bytes = excluded.capacity_bytes,
            free_bytes = excluded.free_bytes, heartbeat_at = now()
    RETURNING f.id INTO v_id;
    PERFORM capacity_changed();
    RETURN v_id;
END;
$$;

-- disk_server_heartbeat refreshes a disk server's liveness and load. A server that comes
-- back after being silent is capacity again (capacity_changed); running it again changes
-- nothing more. Raises: not_found (PX001) when the server is not registered (it registers
-- again). Locks: its row.
CREATE OR REPLACE FUNCTION disk_server_heartbeat(p_id bigint, p_load double precision)
RETURNS void
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_was timestamptz;
BEGIN
    SELECT heartbeat_at INTO v_was FROM disk_server WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'disk server % is not registered', p_id USING ERRCODE = 'PX001';
    END IF;
    UPDATE disk_server SET heartbeat_at = now(), load = coalesce(p_load, 0) WHERE id = p_id;
    IF v_was < now() - make_interval(secs => policy_value('disk_server_live_seconds')) THEN
        PERFORM capacity_changed();
    END IF;
END;
$$;

-- file_system_heartbeat refreshes a file system's capacity and free space; one that had no
-- room and has some again is capacity (capacity_changed). Running it again changes nothing
-- more.
-- Raises: not_found (PX001) when it is not registered. Locks: its row.
CREATE OR REPLACE FUNCTION file_system_heartbeat(p_id bigint, p_capacity_bytes bigint, p_free_bytes bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_was bigint;
BEGIN
    SELECT free_bytes INTO v_was FROM file_system WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'file system % is not registered', p_id USING ERRCODE = 'PX001';
    END IF;
    UPDATE file_system SET capacity_bytes = p_capacity_bytes, free_bytes = p_free_bytes, heartbeat_at = now() WHERE id = p_id;
    IF v_was = 0 AND p_free_bytes > 0 THEN
        PERFORM capacity_changed();
    END IF;
END;
$$;

-- disk_copy_claim_gc claims INVALID copies on a disk server's file systems that no
-- transfer still reads and that are not marked corrupt (those wait for the operator: see
-- transfer_get_corrupt), marks them BEINGDELETED and returns where they are; the server
-- unlinks them and calls disk_copy_deleted. INVALID is never left but for BEINGDELETED, and
-- the status is read committed under the row lock: the copies returned are dead for good,
-- so their bytes may go even before this claim commits (a claim that rolls back hands
-- them out again; unlinking twice is harmless). A re-run claims what is left. A copy left BEINGDELETED for ten minutes (its
-- unlink failed: a permission, a read-only or unmounted file system) is claimed again, so
-- that a fixed fault clears itself and a lasting one is logged every ten minutes.
-- Locks: the claimed copies (SKIP LOCKED).
CREATE OR REPLACE FUNCTION disk_copy_claim_gc(p_disk_server_id bigint, p_batch integer)
RETURNS TABLE (id bigint, mount_point text, disk_path text)
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH c AS (
        SELECT dc.id FROM disk_copy dc JOIN file_system fs ON fs.id = dc.file_system_id
        WHERE fs.disk_server_id = p_disk_server_id
          AND (dc.status = 'INVALID' OR (dc.status = 'BEINGDELETED' AND dc.updated_at < now() - interval '10 minutes'))
          AND dc.corrupt_at IS NULL
          AND NOT EXISTS (SELECT 1 FROM subrequest s WHERE s.disk_copy_id = dc.id AND s.status = 'READY')
        ORDER BY dc.id LIMIT p_batch FOR UPDATE OF dc SKIP LOCKED
    )
    UPDATE disk_copy dc SET status = 'BEINGDELETED', updated_at = now()
    FROM c, file_system fs
    WHERE dc.id = c.id AND fs.id = dc.file_system_id
    RETURNING dc.id, fs.mount_point, dc.disk_path;
END;
$$;

-- disk_copy_deleted forgets a copy its disk server has unlinked; a copy forgotten already
-- is left so (idempotent). Locks: its row.
CREATE OR REPLACE FUNCTION disk_copy_deleted(p_id bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$ BEGIN DELETE FROM disk_copy WHERE id = p_id AND status = 'BEINGDELETED'; END $$;

-- disk_server_recover takes back the transfers a restarting disk server was running (READY
-- on it: their movers died with the old process; see subrequest_take_back). Transfers only
-- SCHEDULED on it stay: the new process claims them. Returns how many it took back; a
-- re-run finds none left (idempotent).
-- Locks: those subrequests and their copies.
CREATE OR REPLACE FUNCTION disk_server_recover(p_id bigint)
RETURNS integer
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_sr record;
    v_n integer := 0;
BEGIN
    FOR v_sr IN
        SELECT s.id, ds.name FROM subrequest s JOIN disk_server ds ON ds.id = s.disk_server_id
        WHERE s.disk_server_id = p_id AND s.status = 'READY'
        ORDER BY s.id FOR UPDATE OF s
    LOOP
        PERFORM subrequest_take_back(v_sr.id, format('disk server %s restarted', v_sr.name));
        v_n := v_n + 1;
    END LOOP;
    RETURN v_n;
END;
$$;

-- disk_copy_discardable says whether the bytes a disk server holds at p_disk_path under its
-- data directory p_mount_point may be unlinked by that server now: only when the catalogue
-- has no copy there (collected already, or never recorded), since nobody else will ever
-- unlink them. A copy that exists is not the caller's to unlink, whatever its status:
-- STAGED and STAGEOUT are wanted, INVALID and BEINGDELETED are the garbage collector's
-- (disk_copy_claim_gc). The mover asks after a report that was refused, before it unlinks
-- anything. A collection of the copy in progress is waited for (its row lock), so that the
-- answer is what it committed. Locks: the copy (FOR SHARE). Raises: invalid_argument
-- (PX002) without a mount point or a path.
CREATE OR REPLACE FUNCTION disk_copy_discardable(p_disk_server_id bigint, p_mount_point text, p_disk_path text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    IF coalesce(p_mount_point, '') = '' OR coalesce(p_disk_path, '') = '' THEN
        RAISE EXCEPTION 'a copy is found by its mount point and its path on disk' USING ERRCODE = 'PX002';
    END IF;
    PERFORM 1 FROM disk_copy dc JOIN file_system fs ON fs.id = dc.file_system_id
    WHERE fs.disk_server_id = p_disk_server_id AND fs.mount_point = p_mount_point AND dc.disk_path = p_disk_path
    FOR SHARE OF dc;
    RETURN NOT FOUND;
END;
$$;
