-- Leases of singleton roles (framework/leader): one leader per lease, backups standing by,
-- and a fencing token (the lease's epoch) that every write of a singleton checks in its own
-- transaction. Times are clock_timestamp(), not now(): a lease is judged at the instant a
-- statement runs, not when its transaction began.

-- leader_lease_acquire is one round of an instance's election for a lease: the holder
-- renews it; anyone takes it when it has expired or was resigned; an instance started as
-- preferred takes it from a holder that is not (HTCondor's HAD_USE_PRIMARY). Every change of
-- holder raises the epoch and is journalled (system_event kind leader_change) with the
-- reason and the previous holder; a loser is recorded as a backup. Returns the lease as it
-- now stands.
-- Locks: the lease row (FOR UPDATE, waiting at most 1 s for a fenced write in flight: a
-- round that times out fails with lock_not_available and the caller tries again next round);
-- its candidate row. Raises: invalid_argument (PX002) for an empty name or a ttl under 1 s.
CREATE OR REPLACE FUNCTION leader_lease_acquire(
    p_name text, p_instance_id uuid, p_host text, p_ttl_seconds double precision, p_preferred boolean)
RETURNS TABLE (epoch bigint, leader boolean, holder_id uuid, holder_host text, expires_in_seconds double precision)
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
SET lock_timeout = '1s'
AS $$
#variable_conflict use_column
DECLARE
    v leader_lease;
    v_now timestamptz := clock_timestamp();
    v_reason text;
BEGIN
    IF coalesce(p_name, '') = '' THEN
        RAISE EXCEPTION 'lease name must not be empty' USING ERRCODE = 'PX002';
    END IF;
    IF p_ttl_seconds IS NULL OR p_ttl_seconds < 1 THEN
        RAISE EXCEPTION 'lease ttl must be at least 1 second, got %', coalesce(p_ttl_seconds::text, 'nothing')
            USING ERRCODE = 'PX002';
    END IF;
    INSERT INTO leader_lease (name) VALUES (p_name) ON CONFLICT (name) DO NOTHING;
    SELECT * INTO v FROM leader_lease l WHERE l.name = p_name FOR UPDATE;

    IF v.holder_id = p_instance_id AND v.expires_at > v_now THEN
        UPDATE leader_lease l SET renewed_at = v_now, expires_at = v_now + make_interval(secs => p_ttl_seconds),
               holder_preferred = p_preferred, ttl_seconds = p_ttl_seconds
        WHERE l.name = p_name;
        RETURN QUERY SELECT v.epoch, true, p_instance_id, p_host, p_ttl_seconds;
        RETURN;
    END IF;

    v_reason := CASE
        WHEN v.holder_id IS NULL THEN 'first leader'
        WHEN v.holder_id = p_instance_id THEN 'own lease expired before it was renewed'
        WHEN v.expires_at = '-infinity' THEN 'previous leader resigned'
        WHEN v.expires_at <= v_now THEN format('lease of the previous leader expired %s s ago',
            round(extract(epoch FROM v_now - v.expires_at)::numeric, 1))
        WHEN p_preferred AND NOT v.holder_preferred THEN 'preferred instance returned'
    END;
    IF v_reason IS NULL THEN
        -- A live lease held by someone else: stand by.
        INSERT INTO leader_candidate AS c (name, instance_id, host, preferred, seen_at)
        VALUES (p_name, p_instance_id, coalesce(p_host, ''), p_preferred, v_now)
        ON CONFLICT (name, instance_id) DO UPDATE SET host = excluded.host, preferred = excluded.preferred, seen_at = excluded.seen_at;
        RETURN QUERY SELECT v.epoch, false, v.holder_id, v.holder_host,
            extract(epoch FROM v.expires_at - v_now)::double precision;
        RETURN;
    END IF;

    UPDATE leader_lease l SET epoch = l.epoch + 1, holder_id = p_instance_id, holder_host = coalesce(p_host, ''),
           holder_preferred = p_preferred, acquired_at = v_now, renewed_at = v_now,
           expires_at = v_now + make_interval(secs => p_ttl_seconds), ttl_seconds = p_ttl_seconds
    WHERE l.name = p_name;
    DELETE FROM leader_candidate c WHERE c.name = p_name AND c.instance_id = p_instance_id;
    PERFORM system_event_record('leader_change', split_part(p_name, '.', 1), p_instance_id,
        format('%s now leads %s (epoch %s): %s%s', coalesce(nullif(p_host, ''), p_instance_id::text), p_name, v.epoch + 1, v_reason,
            CASE WHEN v.holder_id IS NOT NULL AND v.holder_id <> p_instance_id
                 THEN format('; previous leader %s on %s', v.holder_id, v.holder_host) ELSE '' END),
        jsonb_build_object('lease', p_name, 'epoch', v.epoch + 1, 'host', p_host, 'reason', v_reason,
            'preferred', p_preferred, 'previous_leader', v.holder_id, 'previous_host', nullif(v.holder_host, ''),
            'previous_epoch', v.epoch));
    RETURN QUERY SELECT v.epoch + 1, true, p_instance_id, p_host, p_ttl_seconds;
END;
$$;

-- leader_lease_resign gives a lease up at once (a clean stop), so that a backup takes it
-- on its next round instead of waiting for the lease to expire. Only the holder of that
-- epoch can resign it; anything else is ignored, so resigning twice is harmless. Journals
-- the resignation (system_event kind leader_resign).
-- Locks: the lease row; its candidate row.
CREATE OR REPLACE FUNCTION leader_lease_resign(p_name text, p_instance_id uuid, p_epoch bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_host text;
BEGIN
    UPDATE leader_lease l SET expires_at = '-infinity'
    WHERE l.name = p_name AND l.holder_id = p_instance_id AND l.epoch = p_epoch AND l.expires_at <> '-infinity'
    RETURNING l.holder_host INTO v_host;
    DELETE FROM leader_candidate c WHERE c.name = p_name AND c.instance_id = p_instance_id;
    IF v_host IS NOT NULL THEN
        PERFORM system_event_record('leader_resign', split_part(p_name, '.', 1), p_instance_id,
            format('%s resigned %s (epoch %s)', coalesce(nullif(v_host, ''), p_instance_id::text), p_name, p_epoch),
            jsonb_build_object('lease', p_name, 'epoch', p_epoch, 'host', v_host, 'reason', 'resigned'));
    END IF;
END;
$$;

-- leader_lease_fence lets a singleton's transaction go on only while p_epoch is the
-- lease's current epoch and the lease has not expired. Call it first in every transaction
-- a singleton writes in: it keeps the lease row share-locked until that transaction ends,
-- so no one can take the lease over between the check and the commit (a takeover waits for
-- the write, or the write sees the new epoch and stops). A paused leader's open
-- transaction is ended by the server: the fence sets idle_in_transaction_session_timeout
-- to a third of the lease's ttl for the rest of the transaction, so a leader stopped between
-- two statements (SIGSTOP, a partition) cannot keep the lease row locked for longer.
-- Locks: the lease row, FOR SHARE. Raises: fenced (PX009) when the epoch is not current or
-- the lease has expired.
CREATE OR REPLACE FUNCTION leader_lease_fence(p_name text, p_epoch bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v leader_lease;
BEGIN
    SELECT * INTO v FROM leader_lease l WHERE l.name = p_name FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'lease % does not exist: no one leads it', p_name USING ERRCODE = 'PX009';
    END IF;
    IF v.epoch <> p_epoch THEN
        RAISE EXCEPTION 'lease % is at epoch % (held by % on %), not %: this instance no longer leads it',
            p_name, v.epoch, v.holder_id, v.holder_host, p_epoch USING ERRCODE = 'PX009';
    END IF;
    IF v.expires_at <= clock_timestamp() THEN
        RAISE EXCEPTION 'lease % (epoch %) expired % s ago: its leader must renew it before it writes again',
            p_name, p_epoch, round(extract(epoch FROM clock_timestamp() - v.expires_at)::numeric, 1) USING ERRCODE = 'PX009';
    END IF;
    -- is_local: until this transaction ends, whatever the session's own setting.
    PERFORM set_config('idle_in_transaction_session_timeout',
        greatest(round(v.ttl_seconds * 1000 / 3), 200)::bigint::text, true);
END;
$$;

-- leader_work_record journals one step of singleton work that changed something, in the
-- step's own (fenced) transaction, so the record commits exactly when the work does.
-- Locks: none beyond the insert.
CREATE OR REPLACE FUNCTION leader_work_record(p_name text, p_epoch bigint, p_instance_id uuid, p_rows integer)
RETURNS void
LANGUAGE sql
SET search_path = public, pg_temp
AS $$
    INSERT INTO leader_work (name, epoch, instance_id, rows) VALUES (p_name, p_epoch, p_instance_id, p_rows);
$$;

-- leader_work_purge deletes work records older than policy request_archive_seconds, at
-- most p_batch of them, and returns how many. Locks: those rows.
CREATE OR REPLACE FUNCTION leader_work_purge(p_batch integer)
RETURNS integer
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_n integer;
BEGIN
    DELETE FROM leader_work w WHERE w.id IN (
        SELECT id FROM leader_work
        WHERE at < now() - make_interval(secs => policy_value('request_archive_seconds'))
        ORDER BY at LIMIT greatest(p_batch, 0)
        FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END;
$$;

-- leader_lease_list shows every lease: who leads it, since when, the lease's age (time
-- since the last renewal) and time left, and the backups heard from within
-- p_window_seconds. Reads only.
CREATE OR REPLACE FUNCTION leader_lease_list(p_window_seconds integer)
RETURNS TABLE (name text, epoch bigint, holder_id uuid, holder_host text, holder_preferred boolean,
               acquired_at timestamptz, lease_age_seconds double precision, expires_in_seconds double precision,
               backups text[])
LANGUAGE sql STABLE
SET search_path = public, pg_temp
AS $$
    SELECT l.name, l.epoch, l.holder_id, l.holder_host, l.holder_preferred, l.acquired_at,
           extract(epoch FROM clock_timestamp() - l.renewed_at)::double precision,
           CASE WHEN l.expires_at = '-infinity' THEN 0
                ELSE extract(epoch FROM l.expires_at - clock_timestamp())::double precision END,
           coalesce((SELECT array_agg(c.host || ' ' || left(c.instance_id::text, 8) || CASE WHEN c.preferred THEN ' (preferred)' ELSE '' END
                                      ORDER BY c.host, c.instance_id)
                     FROM leader_candidate c
                     WHERE c.name = l.name AND c.seen_at > clock_timestamp() - make_interval(secs => p_window_seconds)
                       AND c.instance_id IS DISTINCT FROM l.holder_id), '{}')
    FROM leader_lease l
    ORDER BY l.name;
$$;
