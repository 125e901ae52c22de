-- A request's whole story: what happened to each of its subrequests (subrequest_transition,
-- written by the generated trigger of transitions_gen.sql) and what each waits for now.
-- Read by rhd for `stager_qry -r ID --history` and by monitord's request page. Nothing
-- here is on the path of a request.

-- request_history returns every transition of every subrequest of a request, oldest first
-- (by subrequest, then order of the changes), from the hot table while the request is
-- there and from request_archive.history once the archive sweep moved it; no rows when
-- there is no such request. Reads only; locks nothing.
CREATE OR REPLACE FUNCTION request_history(p_request_id uuid)
RETURNS TABLE (subrequest_id bigint, path text, at timestamptz, from_status text, to_status text,
               daemon text, instance_id uuid, host text, reason text)
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
        SELECT t.subrequest_id, s.path, t.at, t.from_status::text, t.to_status::text,
               t.daemon, t.instance_id, t.host, t.reason
        FROM subrequest_transition t JOIN subrequest s ON s.id = t.subrequest_id
        WHERE t.request_id = p_request_id
        ORDER BY t.subrequest_id, t.id;
    IF FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
        SELECT (e ->> 'subrequest_id')::bigint, e ->> 'path', (e ->> 'at')::timestamptz,
               e ->> 'from_status', e ->> 'to_status', e ->> 'daemon',
               (e ->> 'instance_id')::uuid, e ->> 'host', e ->> 'reason'
        FROM request_archive a, jsonb_array_elements(a.history) WITH ORDINALITY AS h(e, n)
        WHERE a.id = p_request_id
        ORDER BY n;
END;
$$;

-- request_history_json is request_history as one JSON array, what request_archive.history
-- keeps. Reads only.
CREATE OR REPLACE FUNCTION request_history_json(p_request_id uuid)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = public, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(to_jsonb(h)), '[]'::jsonb) FROM request_history(p_request_id) h;
$$;

-- request_waits says, for every subrequest of a request that is not over, what it waits
-- for, since when (its last transition), and behind whom: its place in the queue that
-- serves it (1 is next; the claim order of that queue) or the subrequest it waits on. A
-- subrequest that is over has waiting_for ''. Each count reads the partial index of its
-- queue, never the history. Reads only; locks nothing.
CREATE OR REPLACE FUNCTION request_waits(p_request_id uuid)
RETURNS TABLE (subrequest_id bigint, path text, status text, since timestamptz, waiting_for text,
               queue_position bigint, behind text)
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_sr record;
    v_types request_type[];
BEGIN
    FOR v_sr IN
        SELECT s.*, ds.name AS server_name, p.request_id AS parent_request, p.status AS parent_status,
               (SELECT max(t.at) FROM subrequest_transition t
                WHERE t.request_id = s.request_id AND t.subrequest_id = s.id) AS changed_at
        FROM subrequest s
        LEFT JOIN disk_server ds ON ds.id = s.disk_server_id
        LEFT JOIN subrequest p ON p.id = s.parent_id
        WHERE s.request_id = p_request_id ORDER BY s.id
    LOOP
        subrequest_id := v_sr.id; path := v_sr.path; status := v_sr.status::text;
        since := coalesce(v_sr.changed_at, v_sr.updated_at);
        queue_position := NULL; behind := '';
        CASE v_sr.status
        WHEN 'START', 'RESTART', 'RETRY' THEN
            -- The stager pool of its family claims in (type, updated_at, id) order.
            SELECT array_agg(t) INTO v_types FROM unnest(enum_range(NULL::request_type)) t
            WHERE pollux_family(t) = pollux_family(v_sr.type);
            waiting_for := format('a stager of the %s family to decide it', pollux_family(v_sr.type));
            SELECT count(*) + 1 INTO queue_position FROM subrequest q
            WHERE q.status IN ('START', 'RESTART', 'RETRY') AND q.type = ANY (v_types)
              AND (q.type, q.updated_at, q.id) < (v_sr.type, v_sr.updated_at, v_sr.id);
        WHEN 'WAITSUBREQ' THEN
            waiting_for := 'another subrequest on the same file to end';
            behind := CASE WHEN v_sr.parent_id IS NULL THEN 'a subrequest that has ended (it is decided again soon)'
                      ELSE format('subrequest %s of request %s (%s)', v_sr.parent_id, v_sr.parent_request, v_sr.parent_status) END;
        WHEN 'WAITSCHED' THEN
            waiting_for := 'a disk server and file system to take it'
                || coalesce(' (' || nullif(v_sr.info, '') || ')', '');
            SELECT count(*) + 1 INTO queue_position FROM subrequest q
            WHERE q.status = 'WAITSCHED' AND q.id < v_sr.id;
        WHEN 'SCHEDULED' THEN
            waiting_for := format('disk server %s to start a mover', coalesce(v_sr.server_name, '?'));
            SELECT count(*) + 1 INTO queue_position FROM subrequest q
            WHERE q.status = 'SCHEDULED' AND q.disk_server_id = v_sr.disk_server_id AND q.id < v_sr.id;
        WHEN 'READY' THEN
            waiting_for := format('the client to move the data through the mover on %s', coalesce(v_sr.server_name, '?'));
        ELSE
            waiting_for := '';
        END CASE;
        IF queue_position IS NOT NULL AND queue_position > 1 THEN
            behind := CASE WHEN queue_position = 2 THEN '1 other' ELSE format('%s others', queue_position - 1) END;
        END IF;
        RETURN NEXT;
    END LOOP;
END;
$$;
