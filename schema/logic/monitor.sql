-- What monitord's pages show (daemons/monitord): the queues, the rates at which the
-- daemons move subrequests on, and the disk servers with their file systems. Each reads
-- only the live part of the tables (partial indexes of the queues, the last minutes of
-- subrequest_transition), never the history, so a page costs the same behind a million
-- finished requests. Reads only; locks nothing.

-- monitor_queues counts the subrequests that are not over by status and service class,
-- with the oldest one's id, request and age (since its last change). Reads only.
CREATE OR REPLACE FUNCTION monitor_queues()
RETURNS TABLE (status text, service_class text, subrequests bigint, oldest_id bigint,
               oldest_request_id uuid, oldest_age_seconds double precision)
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
        SELECT s.status::text, sc.name, count(*),
               (array_agg(s.id ORDER BY s.updated_at, s.id))[1],
               (array_agg(s.request_id ORDER BY s.updated_at, s.id))[1],
               extract(epoch FROM now() - min(s.updated_at))::double precision
        FROM subrequest s
        JOIN request r ON r.id = s.request_id
        JOIN service_class sc ON sc.id = r.service_class_id
        -- Spelled as the partial index subrequest_active_file_idx is, so it is used.
        WHERE s.status NOT IN ('FINISHED', 'FAILED')
        GROUP BY s.status, sc.name
        ORDER BY array_position(enum_range(NULL::subrequest_status), s.status), sc.name;
END;
$$;

-- monitor_claim_rates is, for each change of status in the last p_window_seconds, how
-- many subrequests made it per minute and which daemons made it: the rate at which each
-- queue is worked off. Reads the window's rows of subrequest_transition (its BRIN index
-- on at). Raises invalid_argument (PX002) for a window outside 1 s to 1 day. Reads only.
CREATE OR REPLACE FUNCTION monitor_claim_rates(p_window_seconds integer)
RETURNS TABLE (from_status text, to_status text, per_minute double precision, changes bigint, daemons text[])
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    IF p_window_seconds IS NULL OR p_window_seconds < 1 OR p_window_seconds > 86400 THEN
        RAISE EXCEPTION 'window of % seconds: give 1 to 86400', p_window_seconds USING ERRCODE = 'PX002';
    END IF;
    RETURN QUERY
        SELECT coalesce(t.from_status::text, ''), t.to_status::text,
               (count(*) * 60.0 / p_window_seconds)::double precision, count(*),
               array_agg(DISTINCT t.daemon ORDER BY t.daemon)
        FROM subrequest_transition t
        -- now(), not clock_timestamp(): a volatile bound could not use the index.
        WHERE t.at > now() - make_interval(secs => p_window_seconds)
        GROUP BY t.from_status, t.to_status
        ORDER BY count(*) DESC, 1, 2;
END;
$$;

-- monitor_disk_servers lists every disk server with its state (operator status,
-- availability and since when), heartbeat age, load and the transfers it holds (placed
-- and running), and one row per file system with its state, space and transfers; a
-- server without file systems has one row with the file system columns NULL. Reads only.
CREATE OR REPLACE FUNCTION monitor_disk_servers()
RETURNS TABLE (disk_server text, url text, status text, availability text,
               unavailable_since timestamptz, heartbeat_age_seconds double precision,
               load double precision, scheduled bigint, running bigint,
               mount_point text, service_class text, fs_status text, capacity_bytes bigint,
               free_bytes bigint, fs_transfers bigint)
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
        SELECT ds.name, ds.url, ds.status::text, ds.availability::text, ds.unavailable_since,
               extract(epoch FROM now() - ds.heartbeat_at)::double precision, ds.load,
               (SELECT count(*) FROM subrequest s WHERE s.disk_server_id = ds.id AND s.status = 'SCHEDULED'),
               (SELECT count(*) FROM subrequest s WHERE s.disk_server_id = ds.id AND s.status = 'READY'),
               fs.mount_point, sc.name, fs.status::text, fs.capacity_bytes, fs.free_bytes,
               CASE WHEN fs.id IS NOT NULL THEN
                   (SELECT count(*) FROM subrequest s WHERE s.file_system_id = fs.id AND s.status IN ('SCHEDULED', 'READY'))
               END
        FROM disk_server ds
        LEFT JOIN file_system fs ON fs.disk_server_id = ds.id
        LEFT JOIN service_class sc ON sc.id = fs.service_class_id
        ORDER BY ds.name, fs.mount_point;
END;
$$;

-- monitor_recent_requests lists the p_limit requests changed last, newest first, for the
-- request page's index. It sorts the hot request table, which the archive sweep keeps to
-- policy request_retention_seconds of history: an index on updated_at would cost every
-- change of every request. Raises invalid_argument (PX002) for a limit outside 1 to 1000.
-- Reads only.
CREATE OR REPLACE FUNCTION monitor_recent_requests(p_limit integer)
RETURNS TABLE (id uuid, type text, status text, user_name text, subrequests bigint,
               created_at timestamptz, updated_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 1000 THEN
        RAISE EXCEPTION 'limit of %: give 1 to 1000', p_limit USING ERRCODE = 'PX002';
    END IF;
    RETURN QUERY
        SELECT r.id, r.type::text, r.status::text, r.user_name,
               (SELECT count(*) FROM subrequest s WHERE s.request_id = r.id), r.created_at, r.updated_at
        FROM request r
        ORDER BY r.updated_at DESC
        LIMIT p_limit;
END;
$$;
