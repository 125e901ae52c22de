-- Quotas: an operator's limits per user and service class, in bytes and in files (table
-- quota; no row, or NULL, is no limit), against what each user holds (quota_usage), kept
-- here in the transactions that change it.
--
-- What counts: the files are the namespace entries a user owns in the service class, from
-- the decision of the put that creates one (so a put that is still writing holds its file)
-- until it is removed or its only write is given up. The bytes are the sizes of the copies
-- the catalogue keeps for the user's files: the closed content, and a write whose upload
-- has ended but that is not closed yet (it occupies disk as much as the old content does:
-- rewriting a file needs room for both until putdone). A put declares no size, so its
-- bytes are counted when its upload ends (transfer_put_ended), where the refusal is exact;
-- its decision refuses it earlier only when the user has no room left at all.
--
-- Why counter rows, locked, rather than a sum: the decision that checks a limit must see
-- what every other decision that passed it committed, so two puts at the limit cannot both
-- pass; the row locks (quota_room) serialise them, per user and service class, for the rest
-- of their transaction. A sum over the user's files would cost a scan per put and still
-- let two concurrent puts each count without the other.
--
-- Why eight counters (stripes) per user and class: every put counts, quota or not (so that
-- a quota set later starts from the truth), in its decision and at its upload's end, and
-- an update holds its row to the end of its transaction. With one row, the puts of one user
-- queued on it: sixteen concurrent puts of one user without a quota spent 14-24 ms a
-- statement waiting there. A session adds to its own stripe (its backend's pid, modulo 8),
-- so that concurrent transactions of one user touch different rows unless their sessions
-- share a stripe; what the user holds is the sum. Without a quota nothing else locks them.
-- A quota check (quota_room) locks all eight, so it still sees, and holds off, every other
-- add of the user and class: exactness costs eight row locks, for users with a quota only.
-- One deadlock is new: a transaction that added to its stripe while the user had no quota
-- (a stager's batch of puts) and checks the quota later in the same transaction, the
-- operator having set one in between, can hold its stripe while another check holds the
-- stripes before it. PostgreSQL ends one of the two (40P01), which framework/pg retries as
-- transient; it takes a quota set on a user with puts in flight.
--
-- Lock order: every caller holds the file row (and, from a decision or a transfer's end,
-- the subrequest) before it takes a usage row, as decisions lock subrequest, then file.

-- quota_usage_add adds p_bytes and p_files (negative to release) to what p_user holds in
-- service class p_service_class_id, in this session's stripe. Locks: that stripe's row
-- (created on first use).
CREATE OR REPLACE FUNCTION quota_usage_add(p_user text, p_service_class_id bigint, p_bytes bigint, p_files bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    IF coalesce(p_bytes, 0) = 0 AND coalesce(p_files, 0) = 0 THEN
        RETURN;
    END IF;
    INSERT INTO quota_usage AS u (user_name, service_class_id, stripe, bytes, files)
    VALUES (p_user, p_service_class_id, pg_backend_pid() % 8, coalesce(p_bytes, 0), coalesce(p_files, 0))
    ON CONFLICT (user_name, service_class_id, stripe)
    DO UPDATE SET bytes = u.bytes + excluded.bytes, files = u.files + excluded.files;
END;
$$;

-- file_quota_add charges (or, negative, releases) p_bytes and p_files to the owner of file
-- p_file_id in its service class. Locks: the caller holds the file row; the usage row.
CREATE OR REPLACE FUNCTION file_quota_add(p_file_id bigint, p_bytes bigint, p_files bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_file file;
BEGIN
    IF coalesce(p_bytes, 0) = 0 AND coalesce(p_files, 0) = 0 THEN
        -- quota_usage_add's own guard, said before the read of the file: closing a new
        -- file's first copy frees nothing, and needs no read of the file for it.
        RETURN;
    END IF;
    SELECT * INTO v_file FROM file WHERE id = p_file_id;
    IF FOUND THEN
        PERFORM quota_usage_add(v_file.owner, v_file.service_class_id, p_bytes, p_files);
    END IF;
END;
$$;

-- quota_room says whether p_user may take p_bytes and p_files more in service class
-- p_service_class_id: NULL when the quota allows it, else the refusal, naming the quota,
-- what the user has and how much more is needed. p_bytes NULL is a new write of a size
-- not known yet: it needs room left at all (usage below the limit). The usage rows stay
-- locked until the transaction ends, so what the caller then adds is counted before any
-- other decision reads it. All eight stripes exist before they are locked: an add that
-- created a stripe after the lock was taken would be a row the lock did not hold, nor the
-- sum count (a statement that waited for a lock re-reads the rows it locks, not rows
-- inserted since it began). Locks: the usage rows, in stripe order (created when missing).
CREATE OR REPLACE FUNCTION quota_room(p_user text, p_service_class_id bigint, p_bytes bigint, p_files bigint)
RETURNS text
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_quota quota;
    v_usage record;
    v_class text;
BEGIN
    SELECT * INTO v_quota FROM quota q WHERE q.user_name = p_user AND q.service_class_id = p_service_class_id;
    IF NOT FOUND OR (v_quota.max_bytes IS NULL AND v_quota.max_files IS NULL) THEN
        RETURN NULL; -- no limit: the caller's counting needs no lock held from here
    END IF;
    IF (SELECT count(*) FROM quota_usage u WHERE u.user_name = p_user AND u.service_class_id = p_service_class_id) < 8 THEN
        INSERT INTO quota_usage (user_name, service_class_id, stripe, bytes, files)
        SELECT p_user, p_service_class_id, n, 0, 0 FROM generate_series(0, 7) n
        ON CONFLICT (user_name, service_class_id, stripe) DO NOTHING;
    END IF;
    SELECT coalesce(sum(l.bytes), 0)::bigint AS bytes, coalesce(sum(l.files), 0)::bigint AS files INTO v_usage
    FROM (SELECT u.bytes, u.files FROM quota_usage u
          WHERE u.user_name = p_user AND u.service_class_id = p_service_class_id
          ORDER BY u.stripe FOR UPDATE) l;
    SELECT sc.name INTO v_class FROM service_class sc WHERE sc.id = p_service_class_id;
    IF v_quota.max_files IS NOT NULL AND coalesce(p_files, 0) > 0 AND v_usage.files + p_files > v_quota.max_files THEN
        RETURN format('quota exceeded: user %s in service class %s has %s of %s files, this put needs %s more',
            p_user, v_class, v_usage.files, v_quota.max_files, v_usage.files + p_files - v_quota.max_files);
    ELSIF v_quota.max_bytes IS NOT NULL AND p_bytes IS NULL AND v_usage.bytes >= v_quota.max_bytes THEN
        RETURN format('quota exceeded: user %s in service class %s has %s of %s, no room for another write: remove files (stager_rm) or ask the operator for more',
            p_user, v_class, quota_size_text(v_usage.bytes), quota_size_text(v_quota.max_bytes));
    ELSIF v_quota.max_bytes IS NOT NULL AND p_bytes IS NOT NULL AND v_usage.bytes + p_bytes > v_quota.max_bytes THEN
        RETURN format('quota exceeded: user %s in service class %s has %s of %s, this write of %s needs %s more',
            p_user, v_class, quota_size_text(v_usage.bytes), quota_size_text(v_quota.max_bytes),
            quota_size_text(p_bytes), quota_size_text(v_usage.bytes + p_bytes - v_quota.max_bytes));
    END IF;
    RETURN NULL;
END;
$$;

-- quota_size_text writes a number of bytes for people: "9.8 GB" (decimal units, as disks
-- are sold), exact below a kilobyte ("512 bytes"). Reads nothing.
CREATE OR REPLACE FUNCTION quota_size_text(p_bytes bigint)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = public, pg_temp
AS $$
    SELECT CASE
        WHEN p_bytes IS NULL THEN 'unlimited'
        WHEN abs(p_bytes) < 1000 THEN p_bytes || CASE WHEN abs(p_bytes) = 1 THEN ' byte' ELSE ' bytes' END
        ELSE (SELECT trim_scale(round(p_bytes / 10::numeric ^ (3 * e), CASE WHEN abs(p_bytes) / 10::numeric ^ (3 * e) < 100 THEN 1 ELSE 0 END))
                     || ' ' || (ARRAY['kB', 'MB', 'GB', 'TB', 'PB', 'EB'])[e]
              FROM (SELECT least(floor(log(abs(p_bytes)::numeric) / 3)::integer, 6) AS e) x)
    END;
$$;

-- quota_set sets p_user's limits in service class p_service_class (NULL: no limit of that
-- kind) and journals the change (system_event quota_set). Returns the quota as it is now,
-- with the usage. Locks: the quota row. Raises: invalid_argument (PX002) for a bad user
-- name or a negative limit; not_found (PX001) for an unknown service class.
CREATE OR REPLACE FUNCTION quota_set(p_user text, p_service_class text, p_max_bytes bigint, p_max_files bigint, p_by text)
RETURNS TABLE (user_name text, service_class text, bytes bigint, files bigint, max_bytes bigint, max_files bigint)
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_problem text := coalesce(namespace_user_problem('user', p_user),
        CASE WHEN p_max_bytes < 0 THEN format('a byte limit must be 0 or more, got %s', p_max_bytes) END,
        CASE WHEN p_max_files < 0 THEN format('a file limit must be 0 or more, got %s', p_max_files) END);
    v_sc bigint;
    v_old quota;
BEGIN
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION '%', v_problem USING ERRCODE = 'PX002';
    END IF;
    SELECT sc.id INTO v_sc FROM service_class sc WHERE sc.name = p_service_class;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown service class "%" (see the service_class table for the valid ones)', p_service_class USING ERRCODE = 'PX001';
    END IF;
    SELECT * INTO v_old FROM quota q WHERE q.user_name = p_user AND q.service_class_id = v_sc FOR UPDATE;
    INSERT INTO quota AS q (user_name, service_class_id, max_bytes, max_files, set_by)
    VALUES (p_user, v_sc, p_max_bytes, p_max_files, coalesce(p_by, ''))
    ON CONFLICT (user_name, service_class_id)
    DO UPDATE SET max_bytes = excluded.max_bytes, max_files = excluded.max_files, set_by = excluded.set_by, updated_at = now();
    PERFORM system_event_record('quota_set', coalesce(p_by, ''), NULL,
        format('quota of %s in %s: %s, %s files (was %s, %s files)', p_user, p_service_class,
               quota_size_text(p_max_bytes), coalesce(p_max_files::text, 'unlimited'),
               CASE WHEN v_old.user_name IS NULL THEN 'unlimited' ELSE quota_size_text(v_old.max_bytes) END,
               coalesce(v_old.max_files::text, 'unlimited')),
        jsonb_build_object('user', p_user, 'service_class', p_service_class, 'max_bytes', p_max_bytes, 'max_files', p_max_files,
                           'old', CASE WHEN v_old.user_name IS NULL THEN NULL
                                       ELSE jsonb_build_object('max_bytes', v_old.max_bytes, 'max_files', v_old.max_files) END));
    RETURN QUERY SELECT * FROM quota_list(p_user) l WHERE l.service_class = p_service_class;
END;
$$;

-- quota_remove removes p_user's limits in service class p_service_class (the user is then
-- unlimited there; what it holds is still counted) and journals it (system_event
-- quota_remove). Locks: the quota row. Raises: not_found (PX001) when there is no such
-- quota or service class.
CREATE OR REPLACE FUNCTION quota_remove(p_user text, p_service_class text, p_by text)
RETURNS void
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_old quota;
BEGIN
    DELETE FROM quota q USING service_class sc
    WHERE q.service_class_id = sc.id AND q.user_name = p_user AND sc.name = p_service_class
    RETURNING q.* INTO v_old;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'user % has no quota in service class % (pollux-admin quota ls)', p_user, p_service_class USING ERRCODE = 'PX001';
    END IF;
    PERFORM system_event_record('quota_remove', coalesce(p_by, ''), NULL,
        format('quota of %s in %s removed (was %s, %s files): unlimited', p_user, p_service_class,
               quota_size_text(v_old.max_bytes), coalesce(v_old.max_files::text, 'unlimited')),
        jsonb_build_object('user', p_user, 'service_class', p_service_class,
                           'old', jsonb_build_object('max_bytes', v_old.max_bytes, 'max_files', v_old.max_files)));
END;
$$;

-- quota_list is, per user and service class, what the user holds and its limits (NULL: no
-- limit), for every user with a quota or with something held; only p_user's when it is
-- not NULL. By user, then service class. Reads only.
CREATE OR REPLACE FUNCTION quota_list(p_user text)
RETURNS TABLE (user_name text, service_class text, bytes bigint, files bigint, max_bytes bigint, max_files bigint)
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
-- A plan for each call, unlike the rest of the logic: planned for a given p_user, the
-- "p_user IS NULL OR ..." below folds into a read of that user's rows by their keys (every
-- user's own `quota ls`), where one generic plan reads every user's. Not a hot path.
SET plan_cache_mode = force_custom_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT coalesce(u.user_name, q.user_name), sc.name, coalesce(u.bytes, 0), coalesce(u.files, 0), q.max_bytes, q.max_files
    FROM (SELECT x.user_name, x.service_class_id, sum(x.bytes)::bigint AS bytes, sum(x.files)::bigint AS files
          FROM quota_usage x WHERE p_user IS NULL OR x.user_name = p_user
          GROUP BY x.user_name, x.service_class_id) u
    FULL JOIN (SELECT * FROM quota y WHERE p_user IS NULL OR y.user_name = p_user) q
        ON q.user_name = u.user_name AND q.service_class_id = u.service_class_id
    JOIN service_class sc ON sc.id = coalesce(u.service_class_id, q.service_class_id)
    WHERE q.user_name IS NOT NULL OR u.bytes <> 0 OR u.files <> 0
    ORDER BY 1, 2;
END;
$$;
