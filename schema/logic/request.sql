-- Requests as rhd stores and reads them. A request carries one subrequest per file and a
-- client-chosen id, so a client that retries through another rhd never creates a second one.

-- request_submit stores a request and its subrequests in one transaction and wakes the
-- stager pool of its family (NOTIFY on pollux_channel_subrequest_new(type)).
-- Returns created = false when the same request was stored already (an idempotent retry).
-- Locks: inserts; the request id's unique index serialises two submissions of one id.
-- Raises: invalid_argument (PX002) for a bad path, a duplicate path, no path or too many;
-- not_found (PX001) for an unknown service class; conflict (PX003) when the id is taken by a
-- different request; unavailable (PX005) when the user has policy
-- user_max_pending_requests requests pending already (a retry of a stored request is
-- answered before the count, so it is never refused by it).
-- p_transfer_key_hash is the SHA-256 (hex) of the client's transfer secret: a mover serves
-- the request's transfers only to a caller presenting the token and that secret. rhd
-- requires it for requests that move data; NULL (left to fixtures that call the logic
-- directly) makes the token alone the credential. p_create_only_paths are the paths of a
-- PUT whose credential may create them but not overwrite them: the put decision refuses to
-- overwrite what exists by then (rhd's own look happened before the request was stored).
CREATE OR REPLACE FUNCTION request_submit(
    p_id uuid, p_type request_type, p_service_class text, p_user text, p_user_tag text,
    p_client_host text, p_paths text[], p_auto_close boolean, p_transfer_key_hash text,
    p_create_only_paths text[])
RETURNS TABLE (created boolean, subrequests integer)
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_max_files constant integer := 1000;
    v_sc_id bigint;
    v_existing request;
    v_problem text;
    v_n integer := coalesce(cardinality(p_paths), 0);
    v_max_pending bigint;
    v_pending bigint;
BEGIN
    IF EXISTS (SELECT 1 FROM request_archive a WHERE a.id = p_id) THEN
        -- Stored, ended and archived: a retry that comes this late changes nothing.
        IF (SELECT a.view->>'type' <> p_type::text OR a.user_name <> p_user FROM request_archive a WHERE a.id = p_id) THEN
            RAISE EXCEPTION 'request id % is already used by a different request: choose a new id', p_id USING ERRCODE = 'PX003';
        END IF;
        RETURN QUERY SELECT false, v_n;
        RETURN;
    END IF;
    SELECT * INTO v_existing FROM request WHERE id = p_id;
    IF FOUND THEN
        IF v_existing.type <> p_type OR v_existing.user_name <> p_user
           OR (SELECT array_agg(s.path ORDER BY s.id) FROM subrequest s WHERE s.request_id = p_id) IS DISTINCT FROM p_paths THEN
            RAISE EXCEPTION 'request id % is already used by a different request: choose a new id', p_id USING ERRCODE = 'PX003';
        END IF;
        RETURN QUERY SELECT false, v_n;
        RETURN;
    END IF;
    IF p_transfer_key_hash !~ '^[0-9a-f]{64}$' THEN
        RAISE EXCEPTION 'the transfer key hash is not 64 lowercase hex digits (the SHA-256 of the client''s transfer secret)' USING ERRCODE = 'PX002';
    END IF;
    IF v_n = 0 THEN
        RAISE EXCEPTION 'the request names no file' USING ERRCODE = 'PX002';
    ELSIF v_n > v_max_files THEN
        RAISE EXCEPTION 'the request names % files: at most % per request', v_n, v_max_files USING ERRCODE = 'PX002';
    END IF;
    FOR i IN 1 .. v_n LOOP
        v_problem := namespace_path_problem(p_paths[i]);
        IF v_problem IS NOT NULL THEN
            RAISE EXCEPTION '%', v_problem USING ERRCODE = 'PX002';
        END IF;
    END LOOP;
    IF (SELECT count(DISTINCT x) FROM unnest(p_paths) x) <> v_n THEN
        RAISE EXCEPTION 'the request names a file more than once' USING ERRCODE = 'PX002';
    END IF;
    SELECT id INTO v_sc_id FROM service_class WHERE name = p_service_class;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown service class "%" (see the service_class table for the valid ones)', p_service_class USING ERRCODE = 'PX001';
    END IF;
    -- A bound on the user's pending requests, against one user filling the queues all
    -- share. Counted without a lock: submissions racing at the bound may pass it by as many
    -- as race, which a guard against floods can afford, while a per-user lock would make
    -- every user's submissions one at a time. (Quotas, which must not over-commit, are
    -- another matter.)
    v_max_pending := policy_value('user_max_pending_requests');
    IF v_max_pending > 0 THEN
        SELECT count(*) INTO v_pending FROM request r WHERE r.user_name = p_user AND r.status = 'PENDING';
        IF v_pending >= v_max_pending THEN
            RAISE EXCEPTION 'user % has % requests pending, the limit (policy user_max_pending_requests): wait for some to end, then submit again',
                p_user, v_pending USING ERRCODE = 'PX005';
        END IF;
    END IF;
    -- ON CONFLICT, not an EXCEPTION block: a block opens a subtransaction at every submit.
    INSERT INTO request (id, type, service_class_id, user_name, user_tag, client_host, auto_close, transfer_key_hash)
    VALUES (p_id, p_type, v_sc_id, p_user, coalesce(p_user_tag, ''), coalesce(p_client_host, ''), coalesce(p_auto_close, false),
            p_transfer_key_hash)
    ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN
        -- The same id submitted concurrently through another rhd (the insert waited for it
        -- and found its row): let the retry decide.
        RAISE EXCEPTION 'request % is being submitted concurrently; retry', p_id USING ERRCODE = '40001';
    END IF;
    INSERT INTO subrequest (request_id, type, path, create_only)
    SELECT p_id, p_type, x.path, p_type = 'PUT' AND x.path = ANY (coalesce(p_create_only_paths, '{}'))
    FROM unnest(p_paths) WITH ORDINALITY AS x(path, n) ORDER BY x.n;
    PERFORM pg_notify(pollux_channel_subrequest_new(p_type), '');
    RETURN QUERY SELECT true, v_n;
END;
$$;

-- request_get returns the request (no row when unknown). Reads only.
CREATE OR REPLACE FUNCTION request_get(p_id uuid)
RETURNS SETOF request
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$ BEGIN RETURN QUERY SELECT * FROM request WHERE id = p_id; END $$;

-- subrequest_list returns a request's subrequests in the order of its paths. Reads only.
CREATE OR REPLACE FUNCTION subrequest_list(p_request_id uuid)
RETURNS SETOF subrequest
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$ BEGIN RETURN QUERY SELECT * FROM subrequest WHERE request_id = p_request_id ORDER BY id; END $$;

-- request_view is a request as its owner sees it: the API's Request (daemons/rhd/api) as
-- JSON, plus "owner" for rhd to check who asks, or NULL when there is no such request. One
-- statement reads the request and its subrequests in one snapshot; a request archived
-- after its retention (request_archive_finished) answers from the archive. Reads only.
CREATE OR REPLACE FUNCTION request_view(p_id uuid)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    -- Absent, not null: what the API's omitempty fields look like.
    RETURN coalesce((SELECT jsonb_strip_nulls(jsonb_build_object(
        'id', r.id, 'type', r.type, 'status', r.status, 'service_class', sc.name,
        'user_tag', nullif(r.user_tag, ''), 'owner', r.user_name,
        -- Some steps (a subrequest queued, scheduled) change a subrequest without the request
        -- row, and a client waiting "since" must still see them.
        'updated_at', greatest(r.updated_at, subs.updated_at),
        'subrequests', coalesce(subs.list, '[]'::jsonb)))
    FROM request r JOIN service_class sc ON sc.id = r.service_class_id
    -- One pass over the subrequests for both their latest change and their list.
    CROSS JOIN LATERAL (
        SELECT max(s.updated_at) AS updated_at,
               jsonb_agg(jsonb_build_object(
                   'id', s.id, 'path', s.path, 'status', s.status, 'info', nullif(s.info, ''),
                   'error_code', s.error_code, 'error_message', s.error_message,
                   -- The endpoint and its token mean something only while the transfer waits.
                   'mover_url', CASE WHEN s.status = 'READY' THEN s.mover_url END,
                   'token', CASE WHEN s.status = 'READY' THEN s.token END,
                   'size_bytes', s.size_bytes, 'checksum_adler32', s.checksum_adler32) ORDER BY s.id) AS list
        FROM subrequest s WHERE s.request_id = r.id) subs
    WHERE r.id = p_id),
    (SELECT a.view FROM request_archive a WHERE a.id = p_id));
END;
$$;

-- request_changed_payload is what NOTIFY pollux_request_changed carries: the request id, then
-- a space and request_view when the request is small enough for a notification (PostgreSQL
-- takes at most 8000 bytes), so that the rhd answering a long poll need not read it again.
-- A large request carries its id alone and is read by the rhd. Any session that may LISTEN
-- reads the payload, so it carries a READY subrequest's mover token only where the token is
-- no credential on its own: the request has a transfer key (every PUT and GET rhd stores
-- has), and a mover serves only "<token>.<secret>", the secret being the client's alone. A
-- request without a key (stored before keys, or by a caller that gave none) has its tokens
-- stripped, and rhd reads its view from the database for the request's own user. Carrying
-- the token spares that read on every transfer's way to READY. p_keyed says the request has
-- a transfer key (request_refresh has just read its row). Reads only.
CREATE OR REPLACE FUNCTION request_changed_payload(p_request_id uuid, p_subrequests integer, p_keyed boolean)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_view jsonb;
    v_payload text;
BEGIN
    -- Building the view of a thousand-file request at each of its changes would cost more
    -- than the read it saves.
    IF p_subrequests <= 16 THEN
        v_view := request_view(p_request_id);
        IF v_view IS NULL THEN
            RETURN p_request_id::text;
        END IF;
        IF NOT coalesce(p_keyed, false) THEN
            v_view := jsonb_set(v_view, '{subrequests}',
                (SELECT coalesce(jsonb_agg(e - 'token' ORDER BY n), '[]'::jsonb)
                 FROM jsonb_array_elements(v_view -> 'subrequests') WITH ORDINALITY AS s(e, n)));
        END IF;
        v_payload := p_request_id::text || ' ' || v_view::text;
        IF octet_length(v_payload) < 7900 THEN
            RETURN v_payload;
        END IF;
    END IF;
    RETURN p_request_id::text;
END;
$$;

-- request_refresh derives a request's status from its subrequests and tells every rhd that
-- the request changed (NOTIFY pollux_request_changed, request_changed_payload), which ends
-- the long polls waiting on it. Call it after the last change to the request's subrequests
-- in a transaction: the notification carries the request as it is then.
-- Locks: the request row.
CREATE OR REPLACE FUNCTION request_refresh(p_request_id uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_pending integer;
    v_failed integer;
    v_total integer;
    v_keyed boolean;
BEGIN
    -- Lock first, count second: two transactions ending different files of one request
    -- would otherwise both count the other's as pending, and the later would leave the
    -- request PENDING for good. Under READ COMMITTED the count, a new statement after the
    -- lock, sees what the other committed.
    SELECT transfer_key_hash IS NOT NULL INTO v_keyed FROM request WHERE id = p_request_id FOR UPDATE;
    SELECT count(*) FILTER (WHERE status NOT IN ('FINISHED', 'FAILED')), count(*) FILTER (WHERE status = 'FAILED'), count(*)
    INTO v_pending, v_failed, v_total FROM subrequest WHERE request_id = p_request_id;
    UPDATE request SET status = CASE WHEN v_pending > 0 THEN 'PENDING'::request_status
                                     WHEN v_failed > 0 THEN 'FAILED'::request_status
                                     ELSE 'FINISHED'::request_status END,
                       -- The time of this change, not of this transaction's start (now()):
                       -- a transaction that began before the last change committed would
                       -- otherwise stamp an older time, and a long poll given the last
                       -- change's time as since would take the new change for no change
                       -- and wait its whole time. The row lock orders the changes; the
                       -- microsecond keeps two of them apart on a coarse clock.
                       updated_at = greatest(clock_timestamp(), updated_at + interval '1 microsecond')
    WHERE id = p_request_id;
    IF NOT FOUND THEN
        -- No such request (rhd's start-up probe of its LISTEN): the id alone.
        PERFORM pg_notify(pollux_channel_request_changed(), p_request_id::text);
        RETURN;
    END IF;
    PERFORM pg_notify(pollux_channel_request_changed(), request_changed_payload(p_request_id, v_total, v_keyed));
END;
$$;

-- subrequest_fail ends a subrequest with a reason (and an error SQLSTATE from the errors
-- table) and refreshes its request. Locks: the caller holds the subrequest row.
CREATE OR REPLACE FUNCTION subrequest_fail(p_id bigint, p_code text, p_message text)
RETURNS void
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_request uuid;
BEGIN
    UPDATE subrequest SET status = 'FAILED', error_code = p_code, error_message = p_message, token = NULL,
                          info = '', updated_at = now()
    WHERE id = p_id RETURNING request_id INTO v_request;
    PERFORM request_refresh(v_request);
END;
$$;

-- subrequest_wake_waiters puts the subrequests waiting on a file back to the stager
-- (WAITSUBREQ → RESTART) and wakes the stager. Locks: the waiting subrequest rows.
CREATE OR REPLACE FUNCTION subrequest_wake_waiters(p_file_id bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_type request_type;
BEGIN
    FOR v_type IN
        UPDATE subrequest SET status = 'RESTART', parent_id = NULL, info = '', updated_at = now()
        WHERE file_id = p_file_id AND status = 'WAITSUBREQ'
        RETURNING type
    LOOP
        PERFORM pg_notify(pollux_channel_subrequest_new(v_type), '');
    END LOOP;
END;
$$;
