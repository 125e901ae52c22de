-- What the database alone can tell a Prometheus scrape: the queues. Read by jobmanagerd's
-- collector at each scrape (daemons/jobmanagerd/jobmanager/metrics.go), so that an alert
-- sees a queue that stopped moving whatever daemon should have moved it. Reads only.

-- subrequest_queue_stats counts the subrequests in each status that is not final, by
-- request type, with the age of the one waiting longest in it (since its last change of
-- status: updated_at). Every non-final status has a row for every type, at 0 when empty,
-- so that a series never vanishes while its queue is empty.
-- Locks nothing, claims nothing, NOTIFYs nothing, raises nothing. Scans only the rows
-- that are not final (the partial index subrequest_active_file_idx holds just those).
CREATE OR REPLACE FUNCTION subrequest_queue_stats()
RETURNS TABLE (status text, type text, subrequests bigint, oldest_seconds double precision)
LANGUAGE sql STABLE
SET search_path = public, pg_temp
AS $$
    SELECT s.status::text, t.type::text,
           count(sr.id),
           coalesce(extract(epoch FROM now() - min(sr.updated_at))::double precision, 0)
    FROM unnest(enum_range(NULL::subrequest_status)) AS s(status)
    CROSS JOIN unnest(enum_range(NULL::request_type)) AS t(type)
    LEFT JOIN subrequest sr ON sr.status = s.status AND sr.type = t.type
                           AND sr.status NOT IN ('FINISHED', 'FAILED')
    WHERE s.status NOT IN ('FINISHED', 'FAILED')
    GROUP BY s.status, t.type
    ORDER BY s.status, t.type;
$$;
