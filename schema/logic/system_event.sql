-- The system event journal: an append-only record of what operators care about.

-- system_event_record appends one event. Locks: none beyond the insert.
CREATE OR REPLACE FUNCTION system_event_record(
    p_kind text, p_daemon text, p_instance_id uuid, p_message text, p_detail jsonb)
RETURNS bigint
LANGUAGE sql
SET search_path = public, pg_temp
AS $$
    INSERT INTO system_event (kind, daemon, instance_id, message, detail)
    VALUES (p_kind, coalesce(p_daemon, ''), p_instance_id, p_message, coalesce(p_detail, '{}'))
    RETURNING id;
$$;

-- system_event_list returns the newest events first. Reads only.
CREATE OR REPLACE FUNCTION system_event_list(p_limit integer)
RETURNS SETOF system_event
LANGUAGE sql STABLE
SET search_path = public, pg_temp
AS $$
    SELECT * FROM system_event ORDER BY id DESC LIMIT greatest(p_limit, 0);
$$;
