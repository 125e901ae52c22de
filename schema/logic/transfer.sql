-- Transfers as the disk servers' movers run them. Each diskserverd claims the transfers
-- placed on its own server (transfer_claim: SCHEDULED -> READY with a one-time token it
-- made, and every rhd told), checks the token itself on the client's first call (no round
-- trip here: the mover holds what it published), and reports the end, which clears it.
-- A disk server learns of new work from the placing daemon's wake-up hint (HTTP, after
-- commit) and, should a hint be lost, from its own poll: it never LISTENs, so the number
-- of sessions PostgreSQL signals at each NOTIFY does not grow with the disk servers.

-- transfer_location says what a transfer moves and where its copy lives: the one place that
-- derives a copy's location, the catalogue's checksum of a copy to read, and the service
-- class's size limit. Reads only.
CREATE OR REPLACE FUNCTION transfer_location(p_subrequest_id bigint)
RETURNS TABLE (request_id uuid, type request_type, path text, mount_point text, disk_path text, size_bytes bigint,
               checksum_adler32 text, max_size_bytes bigint)
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT s.request_id, s.type, s.path, fs.mount_point, dc.disk_path, dc.size_bytes,
           CASE WHEN s.type = 'GET' THEN dc.checksum_adler32 END, sc.max_file_size_bytes
    FROM subrequest s
    JOIN disk_copy dc ON dc.id = s.disk_copy_id
    JOIN file_system fs ON fs.id = dc.file_system_id
    JOIN request r ON r.id = s.request_id
    JOIN service_class sc ON sc.id = r.service_class_id
    WHERE s.id = p_subrequest_id;
END;
$$;

-- transfer_claim is a disk server's claim: up to cardinality(p_tokens) transfers SCHEDULED
-- on it, oldest first, each made READY with its endpoint (p_mover_base/v1/transfers/<id>)
-- and the next of the one-time tokens the server made, and its request refreshed (NOTIFY
-- pollux_request_changed: the client's long poll returns with the endpoint). Returns what
-- each mover needs, with the time limits of policy transfer_open_seconds and
-- transfer_seconds and the minimum rate (transfer_min_bytes_per_second averaged over
-- transfer_min_rate_seconds) below which the mover drops the transfer. A transfer without
-- a copy to move fails at once, and so does a read whose copy was found corrupt after the
-- read was placed (transfer_get_corrupt). A transfer whose user has policy
-- user_max_transfers transfers READY already (on any server; 0: no limit) is left
-- SCHEDULED, its info saying why, for a later claim: a mover held by one user is a mover
-- others wait for. The count takes no lock: claims of several servers racing for one user
-- may pass the limit by as many as race, which a guard against one user holding every
-- mover can afford (a quota, which must not over-commit, locks).
-- Idempotent: a claim is keyed by its tokens, which the server makes afresh for each claim.
-- Transfers READY on this server with one of them were claimed by an earlier run of this
-- same claim whose commit's reply was lost (framework/pg runs it again; the server passes
-- the tokens of a claim that failed to its next claim): they are returned again, unchanged
-- and not notified twice, before the tokens left claim more. Without this, their clients,
-- told the endpoint by the lost commit's notification, would find no mover until a time
-- limit ended the transfer.
-- Locks: the transfers returned again (FOR UPDATE), the claimed subrequests (FOR UPDATE
-- SKIP LOCKED), their requests.
CREATE OR REPLACE FUNCTION transfer_claim(p_disk_server_id bigint, p_mover_base text, p_tokens text[])
RETURNS TABLE (subrequest_id bigint, request_id uuid, type request_type, path text, mount_point text, disk_path text,
               size_bytes bigint, checksum_adler32 text, max_size_bytes bigint, token text,
               open_seconds bigint, transfer_seconds bigint, min_bytes_per_second bigint, min_rate_seconds bigint,
               transfer_key_hash text)
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_sr record;
    v_loc record;
    v_corrupt bigint;
    v_tokens text[] := coalesce(p_tokens, '{}');
    v_used text[] := '{}';
    v_free text[];
    v_i integer := 0;
    v_open bigint;
    v_limit bigint;
    v_min_rate bigint;
    v_rate_window bigint;
    v_max_transfers bigint;
    v_in_flight jsonb := '{}'; -- user name -> transfers READY, counted once per claim
    v_policy bigint[] := policy_values(ARRAY['transfer_open_seconds', 'transfer_seconds',
        'transfer_min_bytes_per_second', 'transfer_min_rate_seconds', 'user_max_transfers']);
BEGIN
    v_open := v_policy[1];
    v_limit := v_policy[2];
    v_min_rate := v_policy[3];
    v_rate_window := v_policy[4];
    v_max_transfers := v_policy[5];
    FOR v_sr IN
        SELECT s.id, s.request_id, s.token, r.transfer_key_hash FROM subrequest s JOIN request r ON r.id = s.request_id
        WHERE s.disk_server_id = p_disk_server_id AND s.status = 'READY' AND s.token = ANY (v_tokens)
        ORDER BY s.id FOR UPDATE OF s
    LOOP
        v_used := v_used || v_sr.token;
        SELECT * INTO v_loc FROM transfer_location(v_sr.id);
        CONTINUE WHEN NOT FOUND;
        subrequest_id := v_sr.id; request_id := v_sr.request_id; type := v_loc.type; path := v_loc.path;
        mount_point := v_loc.mount_point; disk_path := v_loc.disk_path; size_bytes := v_loc.size_bytes;
        checksum_adler32 := v_loc.checksum_adler32; max_size_bytes := v_loc.max_size_bytes; token := v_sr.token;
        open_seconds := v_open; transfer_seconds := v_limit;
        min_bytes_per_second := v_min_rate; min_rate_seconds := v_rate_window; transfer_key_hash := v_sr.transfer_key_hash;
        RETURN NEXT;
    END LOOP;
    v_free := ARRAY(SELECT t FROM unnest(v_tokens) WITH ORDINALITY AS u(t, n) WHERE t <> ALL (v_used) ORDER BY n);
    -- No LIMIT: a transfer held back by its user's limit must not take the place of
    -- another user's; the loop ends once every free token is used. (A FOR loop fetches,
    -- and so locks, a few rows ahead; they are this server's alone.)
    IF cardinality(v_free) = 0 THEN
        RETURN;
    END IF;
    FOR v_sr IN
        SELECT s.id, s.request_id, r.user_name, r.transfer_key_hash FROM subrequest s JOIN request r ON r.id = s.request_id
        WHERE s.disk_server_id = p_disk_server_id AND s.status = 'SCHEDULED'
        ORDER BY s.disk_server_id, s.id FOR UPDATE OF s SKIP LOCKED
    LOOP
        EXIT WHEN v_i >= cardinality(v_free);
        IF v_max_transfers > 0 THEN
            IF NOT v_in_flight ? v_sr.user_name THEN
                v_in_flight := v_in_flight || jsonb_build_object(v_sr.user_name, (
                    SELECT count(*) FROM subrequest x JOIN request xr ON xr.id = x.request_id
                    WHERE x.status = 'READY' AND xr.user_name = v_sr.user_name));
            END IF;
            IF (v_in_flight ->> v_sr.user_name)::bigint >= v_max_transfers THEN
                -- Left SCHEDULED, for this server's next claim (the next wake-up hint, or
                -- its poll within a second); the client is told why it waits.
                UPDATE subrequest s SET info = format('queued: user %s has %s transfers in flight, the limit (policy user_max_transfers)',
                        v_sr.user_name, v_in_flight ->> v_sr.user_name), updated_at = now()
                WHERE s.id = v_sr.id AND s.info NOT LIKE 'queued: user % transfers in flight%';
                IF FOUND THEN
                    PERFORM request_refresh(v_sr.request_id);
                END IF;
                CONTINUE;
            END IF;
        END IF;
        SELECT * INTO v_loc FROM transfer_location(v_sr.id);
        IF NOT FOUND THEN
            PERFORM subrequest_fail_transfer(v_sr.id, 'PX007', 'the subrequest has no disk copy to transfer');
            CONTINUE;
        END IF;
        SELECT dc.id INTO v_corrupt FROM subrequest s JOIN disk_copy dc ON dc.id = s.disk_copy_id
        WHERE s.id = v_sr.id AND s.type = 'GET' AND dc.corrupt_at IS NOT NULL;
        IF FOUND THEN
            PERFORM subrequest_fail_transfer(v_sr.id, 'PX007', format('%s has no readable copy: its copy %s was found corrupt and is kept for the operator',
                v_loc.path, v_corrupt));
            CONTINUE;
        END IF;
        v_i := v_i + 1;
        IF v_max_transfers > 0 THEN
            v_in_flight := v_in_flight || jsonb_build_object(v_sr.user_name, (v_in_flight ->> v_sr.user_name)::bigint + 1);
        END IF;
        UPDATE subrequest s SET status = 'READY', mover_url = rtrim(p_mover_base, '/') || '/v1/transfers/' || v_sr.id,
               token = v_free[v_i], info = 'ready: transfer the data to or from the mover', updated_at = now()
        WHERE s.id = v_sr.id;
        PERFORM request_refresh(v_sr.request_id);
        subrequest_id := v_sr.id; request_id := v_sr.request_id; type := v_loc.type; path := v_loc.path;
        mount_point := v_loc.mount_point; disk_path := v_loc.disk_path; size_bytes := v_loc.size_bytes;
        checksum_adler32 := v_loc.checksum_adler32; max_size_bytes := v_loc.max_size_bytes; token := v_free[v_i];
        open_seconds := v_open; transfer_seconds := v_limit;
        min_bytes_per_second := v_min_rate; min_rate_seconds := v_rate_window; transfer_key_hash := v_sr.transfer_key_hash;
        RETURN NEXT;
    END LOOP;
END;
$$;

-- transfer_put_ended records a finished write: the copy's size and checksum; the copy is
-- closed at once (STAGED) when the request asked for it (`pollux cp`) and the client sent
-- its own adler32 (p_client_adler32, which the mover found equal to p_checksum_adler32),
-- otherwise it stays STAGEOUT until stager_putdone. The report carries the token the disk server was given
-- for this transfer (transfer_claim): only the transfer the subrequest is READY under may
-- end it, so a disk server that was cut off, and whose transfer was taken back and placed
-- elsewhere, cannot record its bytes on the new placement's copy. Idempotent: the same
-- report again (a re-run after its commit's reply was lost) finds the write FINISHED with
-- this size and checksum and returns the same success, changing nothing; the copy is the
-- catalogue's, so its bytes must stay. Raises: conflict (PX003) when the write is over by
-- a user's doing (removed while written) or ended with another size or checksum;
-- unavailable (PX005) when the service gave it up (taken back, placed again, failed by
-- its disk server's absence or a time limit). Either way the mover then keeps the data
-- unless disk_copy_discardable says the catalogue has no copy there. Raises
-- quota_exceeded (PX010), changing nothing, when the write's bytes would pass its file
-- owner's bytes quota (quota_room): the mover then fails the transfer with that reason
-- (transfer_fail), which gives the write up. The bytes count in the quota from here.
-- Locks: the subrequest, the file, the owner's usage rows (quota_room: all its stripes when
-- it has a quota; quota_usage_add: this session's), the copy.
CREATE OR REPLACE FUNCTION transfer_put_ended(p_subrequest_id bigint, p_token text, p_size_bytes bigint, p_checksum_adler32 text,
                                               p_client_adler32 text)
RETURNS void
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_sr subrequest;
    v_file file;
    v_quota text;
    v_close boolean;
    v_info text;
BEGIN
    SELECT * INTO v_sr FROM subrequest s WHERE s.id = p_subrequest_id FOR UPDATE;
    IF v_sr.status = 'FINISHED' AND v_sr.type = 'PUT'
       AND v_sr.size_bytes = p_size_bytes AND v_sr.checksum_adler32 = p_checksum_adler32 THEN
        RETURN; -- recorded already: only transfer_put_ended finishes a PUT, with these values
    END IF;
    -- Why the write is over decides who is told what: a user's doing (a concurrent rm, the
    -- client's own bad data) is a conflict (PX003); the service's (its disk server was out,
    -- the transfer was taken back or failed by a time limit) is unavailable (PX005), so the
    -- client says to run the command again rather than that the user did something wrong.
    IF NOT FOUND OR v_sr.status <> 'READY' OR v_sr.type <> 'PUT' THEN
        RAISE EXCEPTION 'the write of subrequest % is no longer wanted: %', p_subrequest_id,
            coalesce(v_sr.error_message, v_sr.status::text, 'unknown subrequest')
            USING ERRCODE = CASE WHEN v_sr.status = 'FAILED' AND v_sr.error_code IN ('PX005', 'PX007') THEN 'PX005'
                                 WHEN v_sr.status IN ('START', 'RESTART', 'RETRY', 'WAITSUBREQ', 'WAITSCHED', 'SCHEDULED') THEN 'PX005'
                                 ELSE 'PX003' END;
    END IF;
    IF v_sr.token IS DISTINCT FROM p_token THEN
        RAISE EXCEPTION 'the write of subrequest % is no longer this transfer''s: it was taken back and placed again (%)',
            p_subrequest_id, v_sr.info USING ERRCODE = 'PX005';
    END IF;
    SELECT * INTO v_file FROM file WHERE id = v_sr.file_id FOR UPDATE;
    -- The write's bytes are known only now: the owner's quota takes them here or refuses
    -- them, under the usage rows' locks, so ends racing at the limit cannot both pass it.
    v_quota := quota_room(v_file.owner, v_file.service_class_id, p_size_bytes, 0);
    IF v_quota IS NOT NULL THEN
        RAISE EXCEPTION '%', v_quota USING ERRCODE = 'PX010';
    END IF;
    UPDATE disk_copy SET size_bytes = p_size_bytes, checksum_adler32 = p_checksum_adler32, updated_at = now()
    WHERE id = v_sr.disk_copy_id AND status = 'STAGEOUT';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the copy written by subrequest % is no longer being written', p_subrequest_id USING ERRCODE = 'PX003';
    END IF;
    PERFORM quota_usage_add(v_file.owner, v_file.service_class_id, p_size_bytes, 0);
    SELECT auto_close INTO v_close FROM request WHERE id = v_sr.request_id;
    IF v_close AND p_client_adler32 IS NULL THEN
        -- Closing publishes the bytes as the file's content, and only the client's own sum
        -- says they are what it had: without one, corruption on the way (a proxy, a bad
        -- NIC, a client bug) would become the file. The write is kept (it may be right,
        -- and refusing it would throw away a whole upload) but left STAGEOUT, as a
        -- stager_put's is: whoever checks it closes it with stager_putdone.
        v_info := 'written but not closed: the upload carried no X-Pollux-Adler32 to verify it against; '
            || format('check its adler32 (%s) and run stager_putdone to close it', p_checksum_adler32);
    ELSIF v_close THEN
        PERFORM file_close_copy(v_sr.file_id, v_sr.disk_copy_id);
        v_info := 'written and closed';
    ELSE
        v_info := 'written; run stager_putdone to close it';
    END IF;
    -- The size and sum go with the FINISHED status: one new version of the row (and of
    -- each of its indexes' entries) instead of two.
    PERFORM subrequest_finish(p_subrequest_id, v_info, p_size_bytes, p_checksum_adler32, NULL, NULL);
END;
$$;

-- transfer_get_ended records a finished read by the transfer of token p_token (the one the
-- subrequest is READY under, as in transfer_put_ended). Idempotent: the same report again
-- finds the read FINISHED with this size and returns the same success. Raises: conflict
-- (PX003) when the subrequest is not a read in progress under this token, or ended
-- otherwise. Locks: the subrequest.
CREATE OR REPLACE FUNCTION transfer_get_ended(p_subrequest_id bigint, p_token text, p_size_bytes bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    UPDATE subrequest SET size_bytes = p_size_bytes
    WHERE id = p_subrequest_id AND status = 'READY' AND type = 'GET' AND token = p_token;
    IF NOT FOUND THEN
        PERFORM 1 FROM subrequest s
        WHERE s.id = p_subrequest_id AND s.status = 'FINISHED' AND s.type = 'GET' AND s.size_bytes = p_size_bytes;
        IF FOUND THEN
            RETURN; -- recorded already: only transfer_get_ended sets a GET's size
        END IF;
        RAISE EXCEPTION 'subrequest % is not a read in progress under this transfer''s token', p_subrequest_id USING ERRCODE = 'PX003';
    END IF;
    PERFORM subrequest_finish(p_subrequest_id, 'read', NULL, NULL, NULL, NULL);
END;
$$;

-- transfer_get_corrupt ends a read whose copy failed the mover's check: its bytes on disk
-- are not the catalogue's (p_size_bytes on disk, and p_checksum_adler32 of them when the
-- mover read them all; null when the size already differed). The copy is marked corrupt
-- (corrupt_at): no read chooses it again (subrequest_decide_get, transfer_claim) and the
-- garbage collector leaves it (disk_copy_claim_gc), even once it is superseded or removed,
-- so that the only copy of a file is never deleted before the operator has seen it. The
-- first finding is journaled (system event disk_copy_corrupt, with the copy's whereabouts
-- and both sizes and checksums in its detail). The read fails with transfer_failed (PX007)
-- and a reason naming the copy and both checksums (subrequest_fail_transfer); the reason is returned
-- for the mover's log. Only the transfer of token p_token, the one the read is READY under,
-- may report it: the copy it read is then the subrequest's. Idempotent: the same report
-- again finds the read failed and returns its reason, marking nothing. Locks: the
-- subrequest, the file, the copy. Raises: conflict (PX003) when the subrequest is not a
-- read of a copy in progress under this token.
CREATE OR REPLACE FUNCTION transfer_get_corrupt(p_subrequest_id bigint, p_token text, p_size_bytes bigint, p_checksum_adler32 text)
RETURNS text
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_sr subrequest;
    v_copy record;
    v_message text;
BEGIN
    SELECT * INTO v_sr FROM subrequest s WHERE s.id = p_subrequest_id FOR UPDATE;
    IF FOUND AND v_sr.type = 'GET' AND v_sr.status = 'FAILED' THEN
        RETURN v_sr.error_message; -- reported already (this report again)
    END IF;
    IF NOT FOUND OR v_sr.type <> 'GET' OR v_sr.disk_copy_id IS NULL OR v_sr.status <> 'READY'
       OR v_sr.token IS DISTINCT FROM p_token THEN
        RAISE EXCEPTION 'subrequest % is not a read of a disk copy in progress under this transfer''s token', p_subrequest_id
            USING ERRCODE = 'PX003';
    END IF;
    -- The file before the copy, as a decision on the file locks them: a get decided after
    -- this commits sees the mark.
    PERFORM 1 FROM file WHERE id = v_sr.file_id FOR UPDATE;
    SELECT dc.id, dc.size_bytes, dc.checksum_adler32, dc.disk_path, fs.mount_point, ds.name AS disk_server
    INTO v_copy
    FROM disk_copy dc
    LEFT JOIN file_system fs ON fs.id = dc.file_system_id
    LEFT JOIN disk_server ds ON ds.id = fs.disk_server_id
    WHERE dc.id = v_sr.disk_copy_id
    FOR UPDATE OF dc;
    v_message := format('copy %s of %s on %s (%s/%s) is corrupt: it has %s bytes%s, the catalogue %s bytes with adler32 %s; the copy is kept for the operator',
        v_copy.id, v_sr.path, coalesce(v_copy.disk_server, '?'), coalesce(v_copy.mount_point, '?'), v_copy.disk_path,
        p_size_bytes, coalesce(' with adler32 ' || p_checksum_adler32, ''),
        coalesce(v_copy.size_bytes::text, '?'), coalesce(v_copy.checksum_adler32, '?'));
    UPDATE disk_copy SET corrupt_at = now(), updated_at = now() WHERE id = v_copy.id AND corrupt_at IS NULL;
    IF FOUND THEN
        PERFORM system_event_record('disk_copy_corrupt', 'diskserverd', NULL, v_message, jsonb_build_object(
            'disk_copy_id', v_copy.id, 'path', v_sr.path, 'disk_server', v_copy.disk_server,
            'mount_point', v_copy.mount_point, 'disk_path', v_copy.disk_path,
            'size_bytes', v_copy.size_bytes, 'checksum_adler32', v_copy.checksum_adler32,
            'found_size_bytes', p_size_bytes, 'found_checksum_adler32', p_checksum_adler32,
            'subrequest_id', p_subrequest_id));
    END IF;
    PERFORM subrequest_fail_transfer(p_subrequest_id, 'PX007', v_message);
    RETURN v_message;
END;
$$;

-- subrequest_abandon_write gives up a write for good (the one place that does, whoever gives
-- up: a failed upload, a write out of retries, an expired lease): its copy is given up
-- (disk_copy_abandon). A subrequest that is not a write is left alone.
-- Locks: the caller holds the subrequest; the file, the copy, the owner's usage row.
CREATE OR REPLACE FUNCTION subrequest_abandon_write(p_id bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_sr subrequest;
BEGIN
    SELECT * INTO v_sr FROM subrequest s WHERE s.id = p_id;
    IF v_sr.type <> 'PUT' OR v_sr.file_id IS NULL THEN
        RETURN;
    END IF;
    PERFORM disk_copy_abandon(v_sr.file_id, v_sr.disk_copy_id);
END;
$$;

-- disk_copy_abandon gives up the unclosed write p_disk_copy_id of file p_file_id: the copy
-- becomes INVALID and its bytes, if its upload had ended, leave the owner's quota; readers
-- waiting on the file start again (they get the previous content, or "no such file"); and
-- a namespace entry that never got content goes, with its place in the file quota.
-- Locks: the file, the copy, the owner's usage row.
CREATE OR REPLACE FUNCTION disk_copy_abandon(p_file_id bigint, p_disk_copy_id bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_bytes bigint;
BEGIN
    PERFORM 1 FROM file WHERE id = p_file_id FOR UPDATE;
    UPDATE disk_copy SET status = 'INVALID', updated_at = now() WHERE id = p_disk_copy_id AND status = 'STAGEOUT'
    RETURNING coalesce(size_bytes, 0) INTO v_bytes;
    PERFORM file_quota_add(p_file_id, -coalesce(v_bytes, 0), 0);
    -- Wake the waiters before the entry may go: deleting it clears their file_id.
    PERFORM subrequest_wake_waiters(p_file_id);
    IF NOT EXISTS (SELECT 1 FROM disk_copy dc WHERE dc.file_id = p_file_id AND dc.status IN ('STAGED', 'STAGEOUT')) THEN
        PERFORM file_quota_add(p_file_id, 0, -1);
        DELETE FROM file f WHERE f.id = p_file_id;
    END IF;
END;
$$;

-- subrequest_fail_transfer ends a transfer that went wrong (truncated or corrupt upload,
-- disk error, timeout), whoever decided it (the mover's report through transfer_fail, the
-- job manager's time limits, a claim that finds nothing to transfer); a failed write is
-- abandoned (subrequest_abandon_write). A transfer that failed already (another reason
-- first) is left alone: its outcome is the one reported. Raises: conflict (PX003) when the
-- transfer finished: a success recorded (perhaps by a report whose reply was lost) is not
-- turned into a failure, and its copy is the catalogue's.
-- Locks: the subrequest, the file, the copy.
CREATE OR REPLACE FUNCTION subrequest_fail_transfer(p_subrequest_id bigint, p_code text, p_message text)
RETURNS void
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_status subrequest_status;
BEGIN
    SELECT s.status INTO v_status FROM subrequest s WHERE s.id = p_subrequest_id FOR UPDATE;
    IF NOT FOUND OR v_status = 'FAILED' THEN
        RETURN;
    ELSIF v_status = 'FINISHED' THEN
        RAISE EXCEPTION 'the transfer of subrequest % finished successfully: it cannot fail now (%)', p_subrequest_id, p_message
            USING ERRCODE = 'PX003';
    END IF;
    PERFORM subrequest_abandon_write(p_subrequest_id);
    PERFORM subrequest_fail(p_subrequest_id, p_code, p_message);
END;
$$;

-- transfer_fail is a disk server's report that its transfer went wrong, with the mover's
-- reason (subrequest_fail_transfer). Only the transfer of token p_token, the one the
-- subrequest is READY under, fails it: the late report of a disk server whose transfer was
-- taken back (it was cut off) concerns an attempt that is over, and changes nothing,
-- whatever the subrequest does now. Idempotent: a transfer that failed already (this
-- report again, or another reason first) is left alone and the call succeeds. Raises:
-- conflict (PX003) when the transfer finished (subrequest_fail_transfer).
-- Locks: the subrequest, the file, the copy.
CREATE OR REPLACE FUNCTION transfer_fail(p_subrequest_id bigint, p_token text, p_code text, p_message text)
RETURNS void
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_status subrequest_status;
    v_token text;
BEGIN
    SELECT s.status, s.token INTO v_status, v_token FROM subrequest s WHERE s.id = p_subrequest_id FOR UPDATE;
    IF FOUND AND v_status = 'READY' AND v_token IS DISTINCT FROM p_token THEN
        RETURN; -- taken back from this transfer and placed again: its failure decides nothing now
    ELSIF FOUND AND v_status NOT IN ('READY', 'FINISHED', 'FAILED') THEN
        RETURN; -- taken back, and not placed again yet
    END IF;
    PERFORM subrequest_fail_transfer(p_subrequest_id, p_code, p_message);
END;
$$;
