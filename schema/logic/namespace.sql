-- The namespace: which paths are valid, what a file looks like to stager_qry, and how a
-- written copy becomes the file's content. These are policy: change them here, apply with
-- `pollux-admin logic apply`, no rebuild.

-- namespace_root is the directory every path must lie under. Reads nothing.
CREATE OR REPLACE FUNCTION namespace_root()
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = public, pg_temp
AS $$
BEGIN
    RETURN '/pollux';
END;
$$;

-- namespace_path_problem says what is wrong with a path, or returns NULL when it is valid:
-- absolute, under namespace_root(), no empty, "." or ".." component, no trailing slash, no
-- control character, at most 1023 bytes, and no name that looks like another:
--   * no invisible formatting character (Unicode category Cf: zero-width spaces and
--     joiners, bidirectional overrides that show "fdp.exe" for "exe.pdf", the byte-order
--     mark, tag characters), nor the line and paragraph separators U+2028/U+2029;
--   * no U+FFFD: it is what a decoder puts in place of bytes that were not UTF-8, so two
--     different names would become one;
--   * the path is in Unicode NFC, so one name has one spelling ("é" as U+00E9, never as
--     "e" + U+0301); rhd normalises what clients send, this refuses what skipped it.
-- The characters are checked before anything that echoes the path in its message: a
-- problem with a character names it by code point and position and does not echo the
-- path, which may hold what a terminal would act on. Confusable scripts (Latin "a" beside
-- Cyrillic "а") are allowed: they are different names in every file system, and refusing
-- them would refuse whole languages. Reads nothing.
CREATE OR REPLACE FUNCTION namespace_path_problem(p_path text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    -- Unicode 15's category Cf (what Go's unicode.Cf holds; TestPathCharacters checks the
    -- two agree) and U+2028/U+2029.
    v_invisible constant text := '[\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e'
        '\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb'
        '\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a'
        '\U000e0001\U000e0020-\U000e007f]';
    v_bad text;
    v_code text;
BEGIN
    IF p_path IS NULL OR p_path = '' THEN
        RETURN 'path is empty';
    ELSIF octet_length(p_path) > 1023 THEN
        RETURN format('path is %s bytes long: at most 1023', octet_length(p_path));
    ELSIF p_path ~ '[[:cntrl:]]' THEN
        v_bad := substring(p_path FROM '[[:cntrl:]]');
        v_code := upper(to_hex(ascii(v_bad)));
        -- lpad cuts a longer string: pad to four digits, never cut a fifth.
        v_code := lpad(v_code, greatest(4, length(v_code)), '0');
        RETURN format('path contains the control character U+%s at character %s: names may not contain control characters',
                      v_code, strpos(p_path, v_bad));
    ELSIF p_path ~ v_invisible THEN
        v_bad := substring(p_path FROM v_invisible);
        v_code := upper(to_hex(ascii(v_bad)));
        v_code := lpad(v_code, greatest(4, length(v_code)), '0');
        RETURN format('path contains the invisible formatting character U+%s at character %s: names may not hide characters',
                      v_code, strpos(p_path, v_bad));
    ELSIF strpos(p_path, U&'\FFFD') > 0 THEN
        RETURN format('path contains the replacement character U+FFFD at character %s: the name was not valid UTF-8 where it came from',
                      strpos(p_path, U&'\FFFD'));
    ELSIF p_path IS NOT NFC NORMALIZED THEN
        RETURN 'path is not in Unicode normal form NFC: write each accented letter as one character (rhd does this for its clients)';
    ELSIF left(p_path, 1) <> '/' THEN
        RETURN format('path %s is relative: give an absolute path under %s/', p_path, namespace_root());
    ELSIF p_path ~ '(^|/)\.\.?(/|$)' THEN
        RETURN format('path %s has a "." or ".." component', p_path);
    ELSIF p_path ~ '//' OR right(p_path, 1) = '/' THEN
        RETURN format('path %s has an empty component or a trailing slash', p_path);
    ELSIF left(p_path, length(namespace_root()) + 1) <> namespace_root() || '/' THEN
        RETURN format('path %s is outside the namespace: paths start with %s/', p_path, namespace_root());
    END IF;
    RETURN NULL;
END;
$$;

-- file_query answers stager_qry for one path from the database alone. A copy marked
-- corrupt is not counted and does not make the file STAGED: it cannot be read. info says
-- what keeps a STAGED file from being read now, when none of its copies is on a disk server
-- that can serve it ("only copy is on disk2, unavailable since 2026-12-02 05:40:12 UTC (it
-- stopped answering)"), or that the file's last write expired unclosed (policy
-- put_lease_seconds) and it keeps its previous content, and is NULL otherwise. p_user
-- must be allowed to read the file
-- (namespace_authorise): its size and checksum tell about its content.
-- Reads only, but for the journal entry of an administrator's override. Raises:
-- invalid_argument (PX002) for a bad path, permission_denied (PX004) when p_user may not
-- read it, not_found (PX001) for a path with no namespace entry (with the reason when
-- p_user's last put or rm of the path was a put that failed).
CREATE OR REPLACE FUNCTION file_query(p_path text, p_user text)
RETURNS TABLE (path text, service_class text, status text, size_bytes bigint, checksum_adler32 text,
               owner text, updated_at timestamptz, disk_copies integer, info text)
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_problem text := namespace_path_problem(p_path);
    v_fail record;
BEGIN
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION '%', v_problem USING ERRCODE = 'PX002';
    END IF;
    v_problem := namespace_authorise(p_user, p_path, 'read');
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION '%', v_problem USING ERRCODE = 'PX004';
    END IF;
    RETURN QUERY
    SELECT f.path, sc.name,
           CASE WHEN bool_or(dc.status = 'STAGEOUT') THEN 'STAGEOUT'
                WHEN bool_or(dc.status = 'STAGED' AND dc.corrupt_at IS NULL) THEN 'STAGED'
                ELSE 'INVALID' END,
           f.size_bytes, f.checksum_adler32, f.owner, f.updated_at,
           count(dc.id) FILTER (WHERE dc.status IN ('STAGED', 'STAGEOUT') AND dc.corrupt_at IS NULL)::integer,
           coalesce(
           (SELECT CASE WHEN count(*) = 0 OR bool_or(u.why IS NULL) THEN NULL
                        WHEN count(*) = 1 THEN format('only copy is on %s, %s', min(u.name), min(u.why))
                        ELSE format('no copy can be read now: %s', string_agg(u.name || ' ' || u.why, '; ' ORDER BY u.name)) END
            FROM (SELECT ds.name, disk_copy_unavailability(c.id) AS why
                  FROM disk_copy c JOIN file_system fs ON fs.id = c.file_system_id JOIN disk_server ds ON ds.id = fs.disk_server_id
                  WHERE c.file_id = f.id AND c.status = 'STAGED' AND c.corrupt_at IS NULL) u),
           -- The file's last write expired unclosed (disk_copy_expire_unclosed): say so while
           -- no write follows it, so that its writer learns why the content is the old one.
           (SELECT coalesce(w.error_message, w.info) || '; the file keeps its previous content' FROM (
                SELECT s.error_message, s.info FROM subrequest s WHERE s.file_id = f.id AND s.type = 'PUT'
                ORDER BY s.id DESC LIMIT 1) w
            WHERE coalesce(w.error_message, w.info) LIKE 'expired: %'))
    FROM file f
    JOIN service_class sc ON sc.id = f.service_class_id
    LEFT JOIN disk_copy dc ON dc.file_id = f.id
    WHERE f.path = p_path
    GROUP BY f.id, sc.name;
    IF NOT FOUND THEN
        -- A write of a new file that failed (a corrupt or truncated upload, a disk server
        -- lost during it, the retry limit) leaves no entry. Its writer is told why, so
        -- that "no such file" after a put is not a riddle: the reason of p_user's last
        -- put or rm of the path, when it is a failed put. Only p_user's own requests, as
        -- they may name what another user may not see. Found by path
        -- (subrequest_path_idx); finished requests leave the hot tables after policy
        -- request_retention_seconds, and their reasons with them.
        SELECT s.request_id, r.type, s.status, s.error_code, s.error_message, s.updated_at
        INTO v_fail
        FROM subrequest s JOIN request r ON r.id = s.request_id
        WHERE s.path = p_path AND r.user_name = p_user AND r.type IN ('PUT', 'RM')
        ORDER BY s.id DESC
        LIMIT 1;
        IF FOUND AND v_fail.type = 'PUT' AND v_fail.status = 'FAILED' THEN
            RAISE EXCEPTION 'no such file: % (your put of it, request %, failed at % UTC: %)', p_path, v_fail.request_id,
                to_char(v_fail.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
                coalesce(v_fail.error_code || ' ', '') || coalesce(v_fail.error_message, 'no reason recorded')
                USING ERRCODE = 'PX001';
        END IF;
        RAISE EXCEPTION 'no such file: %', p_path USING ERRCODE = 'PX001';
    END IF;
END;
$$;

-- file_close_copy makes a written copy the file's content: the copy becomes STAGED, every
-- older STAGED copy INVALID (its disk server deletes it), the file takes the copy's size and
-- checksum, subrequests waiting on the file start again, and the older copies' bytes
-- leave the owner's quota. Locks: the caller holds the file row; the owner's usage row.
-- Raises: conflict (PX003) when the copy is not a finished STAGEOUT copy of the file.
CREATE OR REPLACE FUNCTION file_close_copy(p_file_id bigint, p_disk_copy_id bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_copy disk_copy;
    v_freed bigint;
BEGIN
    SELECT * INTO v_copy FROM disk_copy WHERE id = p_disk_copy_id AND file_id = p_file_id FOR UPDATE;
    IF NOT FOUND OR v_copy.status <> 'STAGEOUT' OR v_copy.size_bytes IS NULL THEN
        RAISE EXCEPTION 'disk copy % is not a finished write of file %', p_disk_copy_id, p_file_id USING ERRCODE = 'PX003';
    END IF;
    WITH superseded AS (
        UPDATE disk_copy SET status = 'INVALID', updated_at = now()
        WHERE file_id = p_file_id AND status = 'STAGED' RETURNING size_bytes)
    SELECT coalesce(sum(size_bytes), 0) INTO v_freed FROM superseded;
    -- The old content's bytes leave the owner's quota; the new copy's were counted when
    -- its upload ended (transfer_put_ended).
    PERFORM file_quota_add(p_file_id, -v_freed, 0);
    UPDATE disk_copy SET status = 'STAGED', updated_at = now() WHERE id = p_disk_copy_id;
    UPDATE file SET size_bytes = v_copy.size_bytes, checksum_adler32 = v_copy.checksum_adler32, updated_at = now()
    WHERE id = p_file_id;
    PERFORM subrequest_wake_waiters(p_file_id);
END;
$$;
