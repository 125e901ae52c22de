-- Disk servers join by themselves (as xrootd data servers log in to their manager): a
-- diskserverd registers its server and file systems on start, heartbeats load and space,
-- and deletes the copies the stager invalidated.
--
-- Whether a server can take transfers is its availability, a state machine of its own
-- beside the operator's status (schema/pollux.yaml, disk_server_availability):
--
--   AVAILABLE ──heartbeat older than policy disk_server_live_seconds (jobmanagerd's sweep,
--       │       disk_server_expire)──▶ SILENT ──heartbeats again──▶ AVAILABLE
--       └──its diskserverd stops cleanly (disk_server_stop)──▶ STOPPED ──registers──▶ AVAILABLE
--
-- Leaving AVAILABLE moves its work on at once: what was only placed there is placed
-- again, elsewhere, without using up a retry; what a silent server was moving fails with
-- the reason (the client holds a dead endpoint). Reads of a file whose only copy is there
-- wait (WAITSCHED) saying so, and are placed when it comes back.

-- disk_server_register records (or refreshes) a disk server by name and returns its id;
-- an operator's status (DRAINING, DISABLED) is kept across restarts, and a server that was
-- SILENT or STOPPED is AVAILABLE again. Capacity changed: transfers waiting for a disk
-- server may fit now (capacity_changed). Idempotent: the same registration again returns
-- the same id and leaves the same row; it journals the registration once more (a process
-- cannot be told from its own re-run). Locks: its row.
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
    ON CONFLICT (name) DO UPDATE SET url = excluded.url, load = excluded.load, heartbeat_at = now(),
        availability = 'AVAILABLE', unavailable_since = NULL
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

-- disk_server_heartbeat refreshes a disk server's liveness and load, and says when the
-- next heartbeat is due: a quarter of policy disk_server_live_seconds, so that a server is
-- found silent only after three heartbeats in a row were lost, and a change of the policy
-- changes every server's pace at its next heartbeat. A SILENT server that heartbeats is
-- AVAILABLE again (journaled: disk_server_back) and is capacity (capacity_changed), and so
-- is one whose heartbeat had aged past the window before the sweep marked it; returned
-- says so. A STOPPED server stays out of placement while it drains.
-- Running it again changes nothing more. Raises: not_found (PX001) when the server is not
-- registered (it registers again).
-- Locks: its row.
CREATE OR REPLACE FUNCTION disk_server_heartbeat(p_id bigint, p_load double precision)
RETURNS TABLE (interval_seconds double precision, returned boolean)
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_was disk_server;
    v_live bigint := policy_value('disk_server_live_seconds');
BEGIN
    SELECT * INTO v_was FROM disk_server WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'disk server % is not registered', p_id USING ERRCODE = 'PX001';
    END IF;
    UPDATE disk_server SET heartbeat_at = now(), load = coalesce(p_load, 0),
           availability = CASE WHEN availability = 'SILENT' THEN 'AVAILABLE'::disk_server_availability ELSE availability END,
           unavailable_since = CASE WHEN availability = 'SILENT' THEN NULL ELSE unavailable_since END
    WHERE id = p_id;
    returned := v_was.availability = 'SILENT'
        OR (v_was.availability = 'AVAILABLE' AND v_was.heartbeat_at < now() - make_interval(secs => v_live));
    IF v_was.availability = 'SILENT' THEN
        PERFORM system_event_record('disk_server_back', 'diskserverd', NULL,
            format('disk server %s answers again after %s silent: back in placement', v_was.name,
                   date_trunc('second', now() - v_was.unavailable_since)),
            jsonb_build_object('disk_server_id', p_id, 'unavailable_since', v_was.unavailable_since));
    END IF;
    IF returned THEN
        PERFORM capacity_changed();
    END IF;
    interval_seconds := greatest(v_live / 4.0, 0.25);
    RETURN NEXT;
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

-- disk_server_unavailability says why a disk server cannot serve transfers now, in words
-- for clients and operators ("unavailable since 2026-12-02 05:40:12 UTC (it stopped
-- answering)"), or NULL when it can. A server whose heartbeat is older than policy
-- disk_server_live_seconds is unavailable from its last heartbeat on, whether or not the
-- sweep has marked it SILENT yet, so that what a client is told stays the same when the
-- sweep comes. Reads only.
CREATE OR REPLACE FUNCTION disk_server_unavailability(p_id bigint)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v disk_server;
BEGIN
    SELECT * INTO v FROM disk_server WHERE id = p_id;
    IF NOT FOUND THEN
        RETURN format('disk server %s is not registered', p_id);
    ELSIF v.availability = 'STOPPED' THEN
        RETURN format('unavailable since %s UTC (its diskserverd was stopped)',
            to_char(v.unavailable_since AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'));
    ELSIF v.availability = 'SILENT' OR v.heartbeat_at < now() - make_interval(secs => policy_value('disk_server_live_seconds')) THEN
        RETURN format('unavailable since %s UTC (it stopped answering)',
            to_char(coalesce(v.unavailable_since, v.heartbeat_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'));
    ELSIF v.status = 'DISABLED' THEN
        RETURN 'disabled by the operator';
    END IF;
    RETURN NULL;
END;
$$;

-- disk_copy_unavailability says why a copy cannot be read now (its disk server's
-- disk_server_unavailability, or its file system disabled), or NULL when it can. Reads only.
CREATE OR REPLACE FUNCTION disk_copy_unavailability(p_disk_copy_id bigint)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_fs file_system;
BEGIN
    SELECT fs.* INTO v_fs FROM disk_copy dc JOIN file_system fs ON fs.id = dc.file_system_id WHERE dc.id = p_disk_copy_id;
    IF NOT FOUND THEN
        RETURN 'it is on no file system';
    END IF;
    RETURN coalesce(disk_server_unavailability(v_fs.disk_server_id),
        CASE WHEN v_fs.status = 'DISABLED' THEN format('its file system %s is disabled by the operator', v_fs.mount_point) END);
END;
$$;

-- disk_server_expire is the job manager's sweep over disk servers. A server AVAILABLE whose
-- last heartbeat is older than policy disk_server_live_seconds is marked SILENT from that
-- heartbeat on (journaled: disk_server_silent); then up to p_batch transfers of servers
-- that cannot take them are moved on:
--   * SCHEDULED on a server that is not AVAILABLE (it never started them) are placed again
--     (subrequest_place: on another server, or WAITSCHED with the reason, such as a read
--     whose only copy is there) without using up a retry;
--   * READY at a server whose heartbeat is stale fail with unavailable (PX005) and the
--     reason: their mover is dead or out of reach, and the client holding its endpoint
--     would not follow a retry. A server that comes back still holding one is refused its
--     end (the subrequest is over) and discards what it moved; a write given up so leaves
--     the file's previous content as it was (subrequest_abandon_write).
-- A STOPPED server that still heartbeats is draining: its READY transfers finish there.
-- Returns one row per server marked (subrequest_id NULL) and per transfer moved on, with
-- its new disk server's URL when it was placed again, for the caller's wake-up hint.
-- Locks: the servers marked; the transfers (SKIP LOCKED) and what placing or failing locks.
CREATE OR REPLACE FUNCTION disk_server_expire(p_batch integer)
RETURNS TABLE (disk_server text, subrequest_id bigint, request_id uuid, status subrequest_status, wake_url text, message text)
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_live interval := make_interval(secs => policy_value('disk_server_live_seconds'));
    v_clock sweep_clock;
    v_judge boolean;
    v_ds record;
    v_sr record;
BEGIN
    -- The sweep's clock: a gap of more than half the window since the last sweep means the
    -- database (or the sweep's leader) was away, and heartbeats could not be written
    -- meanwhile. Silence is judged only once the database has been available, with sweeps
    -- running, for a whole window since: a live server has had the same window to
    -- heartbeat again as it always has. (--expire-interval must stay under half of
    -- disk_server_live_seconds, as its defaults, 2 s and 6 s, are.)
    SELECT * INTO v_clock FROM sweep_clock WHERE id = 1 FOR UPDATE;
    IF v_clock.last_sweep_at IS NULL OR v_clock.last_sweep_at < now() - v_live / 2 THEN
        UPDATE sweep_clock SET last_sweep_at = now(), available_since = now() WHERE id = 1;
        v_judge := false;
    ELSE
        UPDATE sweep_clock SET last_sweep_at = now() WHERE id = 1;
        v_judge := v_clock.available_since <= now() - v_live;
    END IF;
    FOR v_ds IN
        UPDATE disk_server d SET availability = 'SILENT', unavailable_since = d.heartbeat_at
        WHERE v_judge AND d.availability = 'AVAILABLE' AND d.heartbeat_at < now() - v_live
        RETURNING d.id, d.name, d.heartbeat_at
    LOOP
        disk_server := v_ds.name; subrequest_id := NULL; request_id := NULL; status := NULL; wake_url := NULL;
        message := format('disk server %s stopped answering: no heartbeat since %s UTC (%s ago); out of placement',
            v_ds.name, to_char(v_ds.heartbeat_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
            date_trunc('second', now() - v_ds.heartbeat_at));
        PERFORM system_event_record('disk_server_silent', 'jobmanagerd', NULL, message,
            jsonb_build_object('disk_server_id', v_ds.id, 'heartbeat_at', v_ds.heartbeat_at));
        RETURN NEXT;
    END LOOP;
    -- From the servers that cannot take work (few) to their transfers (by index), never
    -- the other way: the transfers in flight on live servers may be many.
    FOR v_sr IN
        SELECT t.id, t.request_id, t.status, ds.name FROM disk_server ds
        CROSS JOIN LATERAL (
            SELECT s.id, s.request_id, s.status FROM subrequest s
            WHERE s.disk_server_id = ds.id AND s.status IN ('SCHEDULED', 'READY')
              AND (s.status = 'SCHEDULED' OR (v_judge AND ds.heartbeat_at < now() - v_live))
            ORDER BY s.id LIMIT p_batch FOR UPDATE SKIP LOCKED) t
        WHERE ds.availability <> 'AVAILABLE' OR (v_judge AND ds.heartbeat_at < now() - v_live)
        LIMIT p_batch
    LOOP
        disk_server := v_sr.name; subrequest_id := v_sr.id; request_id := v_sr.request_id; wake_url := NULL;
        IF v_sr.status = 'SCHEDULED' THEN
            SELECT p.disk_server_url INTO wake_url FROM subrequest_place(v_sr.id) p;
            SELECT s.status, s.info INTO status, message FROM subrequest s WHERE s.id = v_sr.id;
            message := format('placed again, disk server %s being out: %s', v_sr.name, message);
        ELSE
            status := 'FAILED';
            message := format('disk server %s stopped answering during the transfer: run the command again', v_sr.name);
            PERFORM subrequest_fail_transfer(v_sr.id, 'PX005', message);
        END IF;
        RETURN NEXT;
    END LOOP;
END;
$$;

-- disk_server_stop takes a disk server out of placement as its diskserverd starts to stop
-- (SIGTERM), before it stops serving: it is STOPPED from now (journaled:
-- disk_server_stopped), nothing is placed on it any more, and every transfer only
-- SCHEDULED there is placed again (subrequest_place: elsewhere, or WAITSCHED with the
-- reason) without using up a retry. Transfers READY there stay: their movers finish them
-- while the daemon drains, and it takes back the rest as it exits (disk_server_recover).
-- It registers AVAILABLE again when it starts. Returns the transfers placed again, with
-- their new disk server's URL for a wake-up hint.
-- Locks: the server's row, then its SCHEDULED transfers (a claim in flight is waited for:
-- what it claimed is READY and stays).
CREATE OR REPLACE FUNCTION disk_server_stop(p_id bigint)
RETURNS TABLE (subrequest_id bigint, request_id uuid, status subrequest_status, wake_url text)
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_ds disk_server;
    v_sr record;
    v_n integer := 0;
BEGIN
    SELECT * INTO v_ds FROM disk_server WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF v_ds.availability <> 'STOPPED' THEN
        UPDATE disk_server SET availability = 'STOPPED', unavailable_since = now() WHERE id = p_id;
    END IF;
    FOR v_sr IN
        SELECT s.id, s.request_id FROM subrequest s
        WHERE s.disk_server_id = p_id AND s.status = 'SCHEDULED'
        ORDER BY s.disk_server_id, s.id FOR UPDATE
    LOOP
        subrequest_id := v_sr.id; request_id := v_sr.request_id;
        wake_url := (SELECT p.disk_server_url FROM subrequest_place(v_sr.id) p);
        status := (SELECT s.status FROM subrequest s WHERE s.id = v_sr.id);
        v_n := v_n + 1;
        RETURN NEXT;
    END LOOP;
    PERFORM system_event_record('disk_server_stopped', 'diskserverd', NULL,
        format('disk server %s is stopping: out of placement, %s queued transfers placed again', v_ds.name, v_n),
        jsonb_build_object('disk_server_id', p_id, 'replaced', v_n));
END;
$$;

-- disk_server_list is every disk server as an operator sees it (pollux-admin diskservers):
-- the operator's status, its availability and since when, why it cannot serve
-- (disk_server_unavailability), its heartbeat's age, file systems and free space, and the
-- transfers placed on it and moving there. Reads only.
CREATE OR REPLACE FUNCTION disk_server_list()
RETURNS TABLE (id bigint, name text, url text, status disk_server_status, availability disk_server_availability,
               unavailable_since timestamptz, heartbeat_age_seconds double precision, why text,
               file_systems integer, free_bytes bigint, scheduled integer, ready integer)
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT ds.id, ds.name, ds.url, ds.status, ds.availability, ds.unavailable_since,
           extract(epoch FROM now() - ds.heartbeat_at)::double precision, disk_server_unavailability(ds.id),
           (SELECT count(*)::integer FROM file_system fs WHERE fs.disk_server_id = ds.id),
           (SELECT coalesce(sum(fs.free_bytes), 0)::bigint FROM file_system fs WHERE fs.disk_server_id = ds.id),
           (SELECT count(*)::integer FROM subrequest s WHERE s.disk_server_id = ds.id AND s.status = 'SCHEDULED'),
           (SELECT count(*)::integer FROM subrequest s WHERE s.disk_server_id = ds.id AND s.status = 'READY')
    FROM disk_server ds ORDER BY ds.name;
END;
$$;

-- disk_server_set_status is the operator's switch of a disk server (pollux-admin diskservers
-- drain|return|disable): DRAINING finishes what is placed on it and serves reads of its
-- copies, but takes no new write; DISABLED takes nothing new at all; PRODUCTION takes new
-- work again, a capacity change (capacity_changed), so that what waits for a disk server
-- is tried again. Journaled (disk_server_status) with who did it. Setting the status it has
-- changes nothing and journals nothing. Raises not_found (PX001) for an unknown name.
-- Locks: the server's row.
CREATE OR REPLACE FUNCTION disk_server_set_status(p_name text, p_status disk_server_status, p_by text)
RETURNS TABLE (name text, status disk_server_status, previous disk_server_status)
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_ds disk_server;
BEGIN
    SELECT * INTO v_ds FROM disk_server d WHERE d.name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no disk server named "%" (pollux-admin diskservers lists them)', p_name USING ERRCODE = 'PX001';
    END IF;
    name := v_ds.name; status := p_status; previous := v_ds.status;
    IF v_ds.status = p_status THEN
        RETURN NEXT;
        RETURN;
    END IF;
    UPDATE disk_server d SET status = p_status WHERE d.id = v_ds.id;
    IF p_status = 'PRODUCTION' THEN
        PERFORM capacity_changed();
    END IF;
    PERFORM system_event_record('disk_server_status', 'pollux-admin', NULL,
        format('disk server %s set %s (was %s) by %s', v_ds.name, p_status, v_ds.status, p_by),
        jsonb_build_object('disk_server', v_ds.name, 'status', p_status, 'previous', v_ds.status, 'by', p_by));
    RETURN NEXT;
END;
$$;
