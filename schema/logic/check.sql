-- The operator's sanity check (pollux-admin check; HTCondor's HA sanity-check script): one
-- row per finding, each ok, warn (the instance works, with less margin than it should) or
-- fail (some service is down). The thresholds are the policy's and the daemons' own, so a
-- check never disagrees with the decisions it describes. Reads only.

-- system_check lists the findings, area by area.
CREATE OR REPLACE FUNCTION system_check()
RETURNS TABLE (area text, item text, state text, detail text)
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    r record;
    v_live interval := make_interval(secs => policy_value('disk_server_live_seconds'));
    v_open interval := make_interval(secs => policy_value('transfer_open_seconds'));
    -- The daemons' listing calls an instance silent after 30 s without a heartbeat (six
    -- of the default intervals), and forgets it after ten minutes.
    v_silent interval := interval '30 seconds';
    v_seen interval := interval '10 minutes';
    v_n bigint;
BEGIN
    -- The database this runs on.
    IF pg_is_in_recovery() THEN
        RETURN QUERY SELECT 'database', 'role', 'fail', 'connected to a standby: daemons need the primary (target_session_attrs=read-write)';
    ELSE
        RETURN QUERY SELECT 'database', 'role', 'ok', 'primary';
    END IF;
    SELECT count(*) AS standbys,
           count(*) FILTER (WHERE s.sync_state IN ('sync', 'quorum')) AS sync,
           count(*) FILTER (WHERE s.sync_state IS NULL) AS hidden
    INTO r FROM pg_stat_replication s;
    RETURN QUERY SELECT 'database', 'standby',
        CASE WHEN r.standbys = 0 OR r.hidden > 0 OR r.sync = 0 THEN 'warn' ELSE 'ok' END,
        CASE WHEN r.standbys = 0 THEN 'no streaming standby: a primary failure stops the service until the database is back'
             WHEN r.hidden > 0 THEN format('%s standby(s), replication state hidden from this role (grant pg_monitor to see it)', r.standbys)
             WHEN r.sync = 0 THEN format('%s standby(s), none synchronous: a failover may lose the last acknowledged requests', r.standbys)
             ELSE format('%s standby(s), %s synchronous', r.standbys, r.sync) END;

    -- Daemons: each role needs one instance up, and a second for a failure to go unnoticed.
    FOR r IN
        SELECT roles.role,
               count(d.id) FILTER (WHERE d.stopped_at IS NULL AND d.heartbeat_at > now() - v_silent) AS up,
               string_agg(d.host || ' (' || round(extract(epoch FROM now() - d.heartbeat_at)) || ' s)', ', ' ORDER BY d.host)
                   FILTER (WHERE d.stopped_at IS NULL AND d.heartbeat_at <= now() - v_silent) AS silent,
               count(DISTINCT d.version) FILTER (WHERE d.stopped_at IS NULL AND d.heartbeat_at > now() - v_silent) AS versions
        FROM unnest(ARRAY['rhd', 'stagerd', 'schedulerd', 'jobmanagerd', 'diskserverd']) AS roles(role)
        LEFT JOIN daemon_instance d ON d.role = roles.role AND d.heartbeat_at > now() - v_seen
        GROUP BY roles.role
    LOOP
        RETURN QUERY SELECT 'daemons', r.role,
            CASE WHEN r.up = 0 THEN 'fail' WHEN r.up = 1 OR r.silent IS NOT NULL OR r.versions > 1 THEN 'warn' ELSE 'ok' END,
            concat_ws('; ',
                CASE WHEN r.up = 0 THEN 'no instance up' WHEN r.up = 1 THEN '1 instance up: no backup' ELSE r.up || ' instances up' END,
                CASE WHEN r.silent IS NOT NULL THEN 'silent (killed or cut off): ' || r.silent END,
                CASE WHEN r.versions > 1 THEN r.versions || ' versions running' END);
    END LOOP;

    -- Singleton leases: one live leader each, and someone standing by. A lease that ended
    -- (its leader died or resigned) is changing hands for up to twice its ttl; after that
    -- no backup took it, and its work has stopped.
    FOR r IN
        SELECT l.name, l.holder_host, l.epoch, l.expires_at, l.ttl_seconds,
               CASE WHEN l.expires_at = '-infinity' THEN l.renewed_at ELSE l.expires_at END AS ended_at,
               (SELECT count(*) FROM leader_candidate c
                WHERE c.name = l.name AND c.instance_id IS DISTINCT FROM l.holder_id
                  AND c.seen_at > clock_timestamp() - make_interval(secs => greatest(3 * l.ttl_seconds, 10))) AS backups
        FROM leader_lease l ORDER BY l.name
    LOOP
        RETURN QUERY SELECT 'leaders', r.name,
            CASE WHEN r.expires_at > clock_timestamp() AND r.backups > 0 THEN 'ok'
                 WHEN r.expires_at <= clock_timestamp()
                      AND r.ended_at < clock_timestamp() - make_interval(secs => 2 * r.ttl_seconds) THEN 'fail'
                 ELSE 'warn' END,
            CASE WHEN r.expires_at <= clock_timestamp()
                 THEN format('no live leader: the lease of %s (epoch %s) %s %s s ago%s',
                             coalesce(nullif(r.holder_host, ''), 'nobody'), r.epoch,
                             CASE WHEN r.expires_at = '-infinity' THEN 'was resigned' ELSE 'expired' END,
                             round(extract(epoch FROM clock_timestamp() - r.ended_at)::numeric, 1),
                             CASE WHEN r.ended_at < clock_timestamp() - make_interval(secs => 2 * r.ttl_seconds)
                                  THEN ' and no instance took it: its work has stopped'
                                  ELSE '; changing hands' END)
                 ELSE format('%s leads (epoch %s), %s backup(s)%s', r.holder_host, r.epoch, r.backups,
                             CASE WHEN r.backups = 0 THEN ': a failure of the leader stops this work' ELSE '' END) END;
    END LOOP;

    -- Disk servers: which take transfers, which fell silent, and what only they hold.
    SELECT count(*) FILTER (WHERE ds.status = 'PRODUCTION' AND ds.heartbeat_at > now() - v_live) AS up,
           count(*) AS total
    INTO r FROM disk_server ds;
    RETURN QUERY SELECT 'disk servers', 'available',
        CASE WHEN r.up = 0 THEN 'fail' WHEN r.up < r.total THEN 'warn' ELSE 'ok' END,
        format('%s of %s in production and heartbeating', r.up, r.total);
    FOR r IN
        SELECT ds.name, ds.heartbeat_at,
               (SELECT count(*) FROM disk_copy dc JOIN file_system fs ON fs.id = dc.file_system_id
                WHERE fs.disk_server_id = ds.id AND dc.status = 'STAGED' AND dc.corrupt_at IS NULL
                  AND NOT EXISTS (SELECT 1 FROM disk_copy o JOIN file_system ofs ON ofs.id = o.file_system_id
                                  JOIN disk_server ods ON ods.id = ofs.disk_server_id
                                  WHERE o.file_id = dc.file_id AND o.id <> dc.id AND o.status = 'STAGED'
                                    AND o.corrupt_at IS NULL AND ods.heartbeat_at > now() - v_live)) AS only_copies
        FROM disk_server ds WHERE ds.heartbeat_at <= now() - v_live ORDER BY ds.name
    LOOP
        RETURN QUERY SELECT 'disk servers', r.name, 'warn',
            format('silent since %s; %s file(s) have their only copy there and cannot be read until it returns',
                   to_char(r.heartbeat_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'), r.only_copies);
    END LOOP;

    -- Requests: nothing should stay pending past the time a client is given to connect.
    SELECT count(*), min(rq.created_at) INTO r FROM request rq
    WHERE rq.status = 'PENDING' AND rq.created_at < now() - v_open;
    RETURN QUERY SELECT 'requests', 'pending',
        CASE WHEN r.count > 0 THEN 'warn' ELSE 'ok' END,
        CASE WHEN r.count > 0 THEN format('%s request(s) pending for longer than transfer_open_seconds, the oldest since %s',
                                          r.count, to_char(r.min AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'))
             ELSE 'none pending for longer than transfer_open_seconds' END;
    SELECT count(*) INTO v_n FROM disk_copy dc WHERE dc.corrupt_at IS NOT NULL;
    RETURN QUERY SELECT 'requests', 'corrupt copies',
        CASE WHEN v_n > 0 THEN 'warn' ELSE 'ok' END,
        CASE WHEN v_n > 0 THEN format('%s copies found corrupt by a read (docs/operations.md, "Corrupt copies")', v_n)
             ELSE 'none' END;

    -- River: work queued for a disk server that no longer exists never runs. A River queue
    -- that belongs to a disk server is named 'disk_server.<name>' (the convention any use of
    -- River for a disk server's work must keep, so that this check finds it). No Pollux
    -- daemon runs a River client today (docs/architecture.md, "River's election"), so any
    -- job left unfinished in River's tables waits for nobody.
    IF to_regclass('river_job') IS NULL THEN
        RETURN QUERY SELECT 'river', 'queues', 'ok', 'River''s tables are not installed: nothing can be queued there';
    ELSE
        SELECT count(*) FILTER (WHERE j.queue LIKE 'disk\_server.%'
                                  AND NOT EXISTS (SELECT 1 FROM disk_server ds WHERE j.queue = 'disk_server.' || ds.name)) AS orphaned,
               string_agg(DISTINCT j.queue, ', ') FILTER (WHERE j.queue LIKE 'disk\_server.%'
                                  AND NOT EXISTS (SELECT 1 FROM disk_server ds WHERE j.queue = 'disk_server.' || ds.name)) AS orphan_queues,
               count(*) AS waiting
        INTO r FROM river_job j
        WHERE j.state NOT IN ('completed', 'cancelled', 'discarded');
        RETURN QUERY SELECT 'river', 'queues',
            CASE WHEN r.orphaned > 0 OR r.waiting > 0 THEN 'warn' ELSE 'ok' END,
            CASE WHEN r.orphaned > 0
                 THEN format('%s job(s) queued for disk servers that no longer exist (%s): they never run; cancel them (river_job) or register the server again', r.orphaned, r.orphan_queues)
                 WHEN r.waiting > 0
                 THEN format('%s unfinished River job(s), and no Pollux daemon runs a River client: see river_job', r.waiting)
                 ELSE 'no River job waiting, none for a disk server that no longer exists' END;
        IF to_regclass('river_queue') IS NOT NULL THEN
            SELECT string_agg(q.name, ', ' ORDER BY q.name) AS names INTO r FROM river_queue q
            WHERE q.name LIKE 'disk\_server.%'
              AND NOT EXISTS (SELECT 1 FROM disk_server ds WHERE q.name = 'disk_server.' || ds.name);
            IF r.names IS NOT NULL THEN
                RETURN QUERY SELECT 'river', 'stale queues', 'warn',
                    format('River queues of disk servers that no longer exist: %s (delete them from river_queue)', r.names);
            END IF;
        END IF;
    END IF;

    -- Database roles (grants_gen.sql): each daemon role exists and logs in, with no power
    -- of its own, no privilege on any table, and every function it may call runs as the
    -- owner role.
    FOR r IN
        SELECT k.name, a.oid IS NOT NULL AS present, coalesce(a.rolcanlogin, false) AS login,
               coalesce(a.rolsuper OR a.rolcreaterole OR a.rolcreatedb OR a.rolreplication OR a.rolbypassrls, false) AS powerful,
               (SELECT string_agg(c.relname, ', ' ORDER BY c.relname) FROM pg_catalog.pg_class c
                WHERE a.oid IS NOT NULL AND c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
                  AND has_table_privilege(a.oid, c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')) AS tables,
               (SELECT string_agg(p.proname, ', ' ORDER BY p.proname) FROM pg_catalog.pg_proc p
                WHERE a.oid IS NOT NULL AND p.pronamespace = 'public'::regnamespace
                  AND has_function_privilege(a.oid, p.oid, 'EXECUTE')
                  AND (NOT p.prosecdef OR p.proowner IS DISTINCT FROM (
                        SELECT o.oid FROM pg_catalog.pg_roles o JOIN db_role ko ON ko.name = o.rolname AND ko.kind = 'owner'))) AS invoker,
               (SELECT count(*) FROM pg_catalog.pg_proc p
                WHERE a.oid IS NOT NULL AND p.pronamespace = 'public'::regnamespace
                  AND has_function_privilege(a.oid, p.oid, 'EXECUTE')) AS callable
        FROM db_role k LEFT JOIN pg_catalog.pg_roles a ON a.rolname = k.name
        WHERE k.kind <> 'owner'
        ORDER BY k.kind
    LOOP
        RETURN QUERY SELECT 'database roles', r.name,
            CASE WHEN NOT r.present OR NOT r.login OR r.powerful OR r.tables IS NOT NULL OR r.invoker IS NOT NULL THEN 'fail' ELSE 'ok' END,
            CASE WHEN NOT r.present THEN 'missing: run pollux-admin migrate'
                 WHEN NOT r.login THEN 'may not log in: run pollux-admin migrate'
                 ELSE concat_ws('; ',
                    CASE WHEN r.powerful THEN 'has role attributes a daemon must not have (superuser, createrole, createdb, replication or bypassrls)' END,
                    CASE WHEN r.tables IS NOT NULL THEN 'may use tables directly: ' || r.tables END,
                    CASE WHEN r.invoker IS NOT NULL THEN 'may call functions that do not run as the owner role: ' || r.invoker END,
                    CASE WHEN NOT r.powerful AND r.tables IS NULL AND r.invoker IS NULL
                         THEN format('may call %s function(s), all as the owner role, and no table', r.callable) END) END;
    END LOOP;
END;
$$;

-- file_system_check_list lists every file system with what the database was last told of
-- it, for pollux-admin check to compare with what its disk server sees now (its /metrics).
-- Reads only; locks nothing, raises nothing.
CREATE OR REPLACE FUNCTION file_system_check_list()
RETURNS TABLE (disk_server text, mount_point text, status text, capacity_bytes bigint, free_bytes bigint,
               heartbeat_age_seconds double precision, available boolean)
LANGUAGE sql STABLE
SET search_path = public, pg_temp
AS $$
    SELECT ds.name, fs.mount_point, fs.status::text, fs.capacity_bytes, fs.free_bytes,
           extract(epoch FROM now() - fs.heartbeat_at)::double precision,
           ds.availability = 'AVAILABLE'
    FROM file_system fs JOIN disk_server ds ON ds.id = fs.disk_server_id
    ORDER BY ds.name, fs.mount_point;
$$;

-- system_check_clock is the database's clock now (clock_timestamp, not the transaction's
-- start), for pollux-admin check to measure each host's skew against it: leases and
-- heartbeats are judged by this clock, tokens and logs by the hosts'. Reads nothing.
CREATE OR REPLACE FUNCTION system_check_clock()
RETURNS timestamptz
LANGUAGE sql VOLATILE
SET search_path = public, pg_temp
AS $$
    SELECT clock_timestamp();
$$;
