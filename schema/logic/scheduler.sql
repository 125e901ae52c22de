-- The scheduler plugin: which disk server and file system take a transfer. It is SQL so
-- that an operator can change the policy on a running instance (`pollux-admin logic apply`)
-- without touching the stager. subrequest_place is its one entry point: the stager calls it
-- in the transaction that decides a file (the fast path: nothing waits, no hop), and
-- schedulerd calls it for what had to wait for a resource (subrequest_claim_waitsched),
-- each time capacity has changed since the last try.
--
-- Capacity changes (a disk server or file system registers, comes back, frees space, an
-- operator changes a status or the policy) bump capacity_epoch in their own transaction, so
-- a waiting subrequest is looked at again exactly when a try could succeed, and a poll that
-- finds nothing new writes nothing.
--
-- Every PL/pgSQL function of the logic but one pins plan_cache_mode = force_generic_plan (the
-- exception is quota_list, a listing off the request path, which is planned for each call's
-- user; see there): with
-- custom plans PostgreSQL plans a statement with parameters anew at every call (its plan
-- cache prefers a custom plan while the generic one's estimate is worse), and planning the
-- placement query against subrequest's many partial indexes took 2.3 ms of the 0.3 ms query:
-- subrequest_place went from 5.6 to 0.6 ms a call, the stager's decision of a put from 7.5
-- to 2.9 ms. TestNoClaimOrSweepReadsHistory checks the generic plans against the history.

-- capacity_changed bumps the capacity epoch. Locks: the epoch row (briefly: capacity
-- changes are rare next to transfers).
CREATE OR REPLACE FUNCTION capacity_changed()
RETURNS void
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$ BEGIN UPDATE capacity_epoch SET epoch = epoch + 1 WHERE id = 1; END $$;

-- subrequest_place places one decided subrequest (the caller holds its row): a write goes
-- to a PRODUCTION file system of the request's service class on a PRODUCTION disk server
-- that is AVAILABLE and heartbeats (policy disk_server_live_seconds), the one with the
-- fewest transfers in flight, then the most free space, then the lowest load; a read goes
-- to a server that can serve one of the file's readable copies (PRODUCTION or DRAINING,
-- AVAILABLE, heartbeating), its own copy first, so that a file with a copy on a live server
-- stays readable whichever server is out.
-- Outcomes: SCHEDULED on the server, whose URL is returned for the caller's wake-up hint
-- after commit; WAITSCHED with the reason in info (refreshing the request so the client
-- sees it) when nothing can take it now (a read says where its copy is and since when that
-- server is out: "queued, its only copy is on disk2, unavailable since ..."); RESTART when
-- a read's copy is no longer valid or was found corrupt (the stager decides it again). Called again on a
-- subrequest SCHEDULED on a server that left (disk_server_expire, disk_server_stop), it
-- places it anew. Returns no row unless it was placed.
-- Locks: the subrequest's copy, or the copy it reads instead.
CREATE OR REPLACE FUNCTION subrequest_place(p_id bigint)
RETURNS TABLE (disk_server_id bigint, disk_server_url text, disk_server_name text)
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_epoch bigint;
    v_sr subrequest;
    v_sc bigint;
    v_fs bigint;
    v_ds bigint;
    v_name text;
    v_url text;
    v_copy disk_copy_status;
    v_corrupt boolean;
    v_dc bigint;
    v_info text;
    v_live interval := make_interval(secs => policy_value('disk_server_live_seconds'));
BEGIN
    -- The epoch first: capacity committed after this read bumps it past what the row
    -- records, so the row is tried again.
    SELECT epoch INTO v_epoch FROM capacity_epoch WHERE id = 1;
    SELECT * INTO v_sr FROM subrequest s WHERE s.id = p_id;
    IF v_sr.type = 'PUT' THEN
        SELECT r.service_class_id INTO v_sc FROM request r WHERE r.id = v_sr.request_id;
        SELECT fs.id, ds.id, ds.name, ds.url INTO v_fs, v_ds, v_name, v_url
        FROM file_system fs JOIN disk_server ds ON ds.id = fs.disk_server_id
        WHERE ds.status = 'PRODUCTION' AND fs.status = 'PRODUCTION'
          AND ds.availability = 'AVAILABLE' AND ds.heartbeat_at > now() - v_live
          AND fs.service_class_id = v_sc AND fs.free_bytes > 0
        ORDER BY (SELECT count(*) FROM subrequest t WHERE t.file_system_id = fs.id AND t.status IN ('SCHEDULED', 'READY')),
                 fs.free_bytes DESC, ds.load, fs.id
        LIMIT 1;
        v_info := 'queued, no disk server of its service class is available';
    ELSE
        SELECT dc.status, dc.corrupt_at IS NOT NULL INTO v_copy, v_corrupt FROM disk_copy dc WHERE dc.id = v_sr.disk_copy_id FOR UPDATE;
        IF v_copy IS DISTINCT FROM 'STAGED' OR v_corrupt THEN
            UPDATE subrequest s SET status = 'RESTART', disk_copy_id = NULL, info = 'its copy is no longer valid: deciding again',
                   disk_server_id = NULL, file_system_id = NULL, updated_at = now()
            WHERE s.id = p_id;
            PERFORM pg_notify(pollux_channel_subrequest_new(v_sr.type), '');
            RETURN;
        END IF;
        SELECT dc.id, fs.id, ds.id, ds.name, ds.url INTO v_dc, v_fs, v_ds, v_name, v_url
        FROM disk_copy dc JOIN file_system fs ON fs.id = dc.file_system_id JOIN disk_server ds ON ds.id = fs.disk_server_id
        WHERE dc.file_id = v_sr.file_id AND dc.status = 'STAGED' AND dc.corrupt_at IS NULL
          AND ds.status IN ('PRODUCTION', 'DRAINING') AND fs.status IN ('PRODUCTION', 'DRAINING')
          AND ds.availability = 'AVAILABLE' AND ds.heartbeat_at > now() - v_live
        ORDER BY dc.id = v_sr.disk_copy_id DESC, ds.load, dc.id
        LIMIT 1 FOR UPDATE OF dc;
        IF v_ds IS NULL THEN
            SELECT CASE WHEN count(*) <= 1 THEN format('queued, its only copy is on %s, %s', min(u.name), min(u.why))
                        ELSE format('queued, none of its copies can be read now: %s', string_agg(u.name || ' ' || u.why, '; ' ORDER BY u.name)) END
            INTO v_info
            FROM (SELECT ds.name, coalesce(disk_copy_unavailability(dc.id), 'not available') AS why
                  FROM disk_copy dc JOIN file_system fs ON fs.id = dc.file_system_id JOIN disk_server ds ON ds.id = fs.disk_server_id
                  WHERE dc.file_id = v_sr.file_id AND dc.status = 'STAGED' AND dc.corrupt_at IS NULL) u;
        ELSIF v_dc <> v_sr.disk_copy_id THEN
            UPDATE subrequest s SET disk_copy_id = v_dc WHERE s.id = p_id;
        END IF;
    END IF;
    IF v_ds IS NULL THEN
        UPDATE subrequest s SET status = 'WAITSCHED', placement_epoch = v_epoch, info = v_info,
               disk_server_id = NULL, file_system_id = NULL, updated_at = now()
        WHERE s.id = p_id;
        -- A client sees why it waits; a row that waited already and still waits tells it
        -- nothing new.
        IF v_sr.status <> 'WAITSCHED' OR v_sr.info IS DISTINCT FROM v_info THEN
            PERFORM request_refresh(v_sr.request_id);
        END IF;
        RETURN;
    END IF;
    IF v_sr.type = 'PUT' THEN
        UPDATE disk_copy dc SET file_system_id = v_fs, updated_at = now() WHERE dc.id = v_sr.disk_copy_id;
    END IF;
    UPDATE subrequest s SET status = 'SCHEDULED', disk_server_id = v_ds, file_system_id = v_fs,
           info = format('scheduled on %s', v_name), updated_at = now()
    WHERE s.id = p_id;
    -- A client waiting on a request that queued learns it moved on.
    IF v_sr.status = 'WAITSCHED' THEN
        PERFORM request_refresh(v_sr.request_id);
    END IF;
    disk_server_id := v_ds; disk_server_url := v_url; disk_server_name := v_name;
    RETURN NEXT;
END;
$$;

-- subrequest_claim_waitsched is schedulerd's claim: up to p_batch subrequests waiting for a
-- resource (WAITSCHED) that were last tried before the current capacity epoch, oldest try
-- first, each placed again (subrequest_place). Returns the ones placed. A re-run after its
-- commit's reply was lost claims other rows (idempotent); only the wake-up hints for the
-- rows it placed are lost, and the disk servers' polls make up for them.
-- Locks: the claimed subrequests (FOR UPDATE SKIP LOCKED), then what placing locks.
CREATE OR REPLACE FUNCTION subrequest_claim_waitsched(p_batch integer)
RETURNS TABLE (id bigint, request_id uuid, disk_server_id bigint, disk_server_url text, disk_server_name text)
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_epoch bigint;
    v_sr record;
    v_placed record;
BEGIN
    SELECT epoch INTO v_epoch FROM capacity_epoch WHERE id = 1;
    FOR v_sr IN
        SELECT w.id, w.request_id FROM subrequest w
        WHERE w.status = 'WAITSCHED' AND w.placement_epoch < v_epoch
        ORDER BY w.placement_epoch, w.id LIMIT p_batch FOR UPDATE SKIP LOCKED
    LOOP
        FOR v_placed IN SELECT * FROM subrequest_place(v_sr.id) LOOP
            id := v_sr.id; request_id := v_sr.request_id;
            disk_server_id := v_placed.disk_server_id; disk_server_url := v_placed.disk_server_url;
            disk_server_name := v_placed.disk_server_name;
            RETURN NEXT;
        END LOOP;
    END LOOP;
END;
$$;
