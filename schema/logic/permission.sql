-- Namespace permissions: who may read, write, create and remove what, decided here against
-- the requesting user (request.user_name) so that no daemon can get it wrong.
--
-- Every file and directory has an owner, a group and POSIX mode bits (rwx for owner, group,
-- other; 01000 sticky on a directory). As in POSIX, the class that applies is the first of
-- owner, group member (user_group), other, and only its bits count. Directories that a put
-- needs and that do not exist are created for it ("mkdir -p"), owned by the writer, with
-- the group of their parent and mode 0777 minus policy namespace_umask; a new file gets
-- its directory's group and 0666 minus the umask. A path whose directories were never
-- created (files written before permissions existed) is governed by its nearest existing
-- ancestor. The root /pollux is 01777, as /tmp is.
--
-- Administrators (admin_user) may do anything; each time their role lets through what the
-- bits alone would refuse, system_event gets a namespace_admin entry.
--
-- Actions: read (get, prepareToGet, stager_qry: r on the file), write (put over an existing
-- file, putdone: w on the file), create (put of a new file: wx on its nearest existing
-- directory), remove (rm: wx on the directory and, when it is sticky, owning the file or the
-- directory). Each also needs x (search) on every existing ancestor directory.

-- namespace_mode_text writes mode bits as four octal digits (0644, 1777). Reads nothing.
CREATE OR REPLACE FUNCTION namespace_mode_text(p_mode integer)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = public, pg_temp
AS $$
    SELECT ((p_mode >> 9) & 7)::text || ((p_mode >> 6) & 7)::text || ((p_mode >> 3) & 7)::text || (p_mode & 7)::text
$$;

-- namespace_mode_parse reads octal mode bits ("0755", "755", "1777"). Raises:
-- invalid_argument (PX002) for anything else. Reads nothing.
CREATE OR REPLACE FUNCTION namespace_mode_parse(p_mode text)
RETURNS integer
LANGUAGE plpgsql IMMUTABLE
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v integer := 0;
    c text;
BEGIN
    IF p_mode IS NULL OR p_mode !~ '^[0-7]{1,4}$' THEN
        RAISE EXCEPTION 'mode "%" is not octal mode bits: give 1 to 4 digits 0-7, e.g. 0755', coalesce(p_mode, '')
            USING ERRCODE = 'PX002';
    END IF;
    FOREACH c IN ARRAY regexp_split_to_array(p_mode, '') LOOP
        v := v * 8 + c::integer;
    END LOOP;
    RETURN v;
END;
$$;

-- namespace_ancestors is every directory above a path, from the root down
-- ('/pollux/u/alice/f' → {/pollux, /pollux/u, /pollux/u/alice}). Reads nothing.
CREATE OR REPLACE FUNCTION namespace_ancestors(p_path text)
RETURNS text[]
LANGUAGE plpgsql IMMUTABLE
SET search_path = public, pg_temp
AS $$
DECLARE
    v_parts text[] := coalesce(string_to_array(p_path, '/'), '{}');
    v_dir text := v_parts[1];
    v_out text[] := '{}';
BEGIN
    FOR i IN 2 .. cardinality(v_parts) - 1 LOOP
        v_dir := v_dir || '/' || v_parts[i];
        v_out := v_out || v_dir;
    END LOOP;
    RETURN v_out;
END;
$$;

-- namespace_may says whether p_user may do p_want (4 read, 2 write, 1 search/execute, or a
-- sum) to an entry with this owner, group and mode: the owner's bits for its owner, the
-- group's for a member of its group, the other bits for everyone else. Reads user_group.
CREATE OR REPLACE FUNCTION namespace_may(p_user text, p_owner text, p_group text, p_mode integer, p_want integer)
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    IF p_user = p_owner THEN
        RETURN (p_mode >> 6) & p_want = p_want;
    ELSIF p_group <> '' AND EXISTS (SELECT 1 FROM user_group g WHERE g.user_name = p_user AND g.group_name = p_group) THEN
        RETURN (p_mode >> 3) & p_want = p_want;
    END IF;
    RETURN p_mode & p_want = p_want;
END;
$$;

-- namespace_denial words a refusal: "permission denied: <what><path> is owned by <owner>
-- (group <group>), mode <mode>; you are <user>". Reads nothing.
CREATE OR REPLACE FUNCTION namespace_denial(p_what text, p_path text, p_owner text, p_group text, p_mode integer, p_user text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = public, pg_temp
AS $$
    SELECT format('permission denied: %s%s is owned by %s%s, mode %s; you are %s', p_what, p_path,
                  CASE WHEN p_owner = '' THEN 'nobody' ELSE p_owner END,
                  CASE WHEN p_group = '' THEN '' ELSE format(' (group %s)', p_group) END,
                  namespace_mode_text(p_mode), p_user)
$$;

-- namespace_access_problem says why p_user may not do p_action (read, write, create,
-- remove) to p_path by the mode bits alone, or returns NULL when the bits allow it (or the
-- file to read or write does not exist: the caller says not found). Administrators are not
-- considered here (see namespace_authorise). Reads directory, file, user_group.
-- Raises: invalid_argument (PX002) for an unknown action.
CREATE OR REPLACE FUNCTION namespace_access_problem(p_user text, p_path text, p_action text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_dir directory;
    v_parent directory;
    v_file file;
BEGIN
    IF p_action NOT IN ('read', 'write', 'create', 'remove') THEN
        RAISE EXCEPTION 'unknown namespace action "%": read, write, create or remove', p_action USING ERRCODE = 'PX002';
    END IF;
    -- From the root down, so that the refusal names the highest directory that stops the user.
    FOR v_dir IN
        SELECT d.* FROM directory d WHERE d.path = ANY (namespace_ancestors(p_path)) ORDER BY length(d.path)
    LOOP
        IF NOT namespace_may(p_user, v_dir.owner, v_dir.group_name, v_dir.mode, 1) THEN
            RETURN namespace_denial(format('cannot reach %s: ', p_path), v_dir.path, v_dir.owner, v_dir.group_name, v_dir.mode, p_user);
        END IF;
        v_parent := v_dir;
    END LOOP;
    SELECT * INTO v_file FROM file f WHERE f.path = p_path;
    IF p_action = 'read' AND v_file.id IS NOT NULL AND NOT namespace_may(p_user, v_file.owner, v_file.group_name, v_file.mode, 4) THEN
        RETURN namespace_denial('', v_file.path, v_file.owner, v_file.group_name, v_file.mode, p_user);
    ELSIF p_action = 'write' AND v_file.id IS NOT NULL AND NOT namespace_may(p_user, v_file.owner, v_file.group_name, v_file.mode, 2) THEN
        RETURN namespace_denial('', v_file.path, v_file.owner, v_file.group_name, v_file.mode, p_user);
    ELSIF p_action IN ('create', 'remove') AND v_parent.id IS NOT NULL THEN
        IF NOT namespace_may(p_user, v_parent.owner, v_parent.group_name, v_parent.mode, 3) THEN
            RETURN namespace_denial(format('cannot %s %s: ', p_action, p_path), v_parent.path, v_parent.owner, v_parent.group_name, v_parent.mode, p_user);
        END IF;
        -- Sticky (01000): in a shared directory only the file's or the directory's owner removes.
        IF p_action = 'remove' AND v_file.id IS NOT NULL AND v_parent.mode & 512 <> 0
           AND p_user <> v_file.owner AND p_user <> v_parent.owner THEN
            RETURN format('permission denied: cannot remove %s: it is owned by %s and its directory %s is sticky (owned by %s, mode %s); you are %s',
                v_file.path, CASE WHEN v_file.owner = '' THEN 'nobody' ELSE v_file.owner END, v_parent.path, v_parent.owner,
                namespace_mode_text(v_parent.mode), p_user);
        END IF;
    END IF;
    RETURN NULL;
END;
$$;

-- namespace_authorise decides whether p_user may do p_action to p_path: NULL when allowed,
-- else the refusal (see namespace_access_problem) for the caller to fail with
-- permission_denied (PX004). An administrator is allowed what the bits refuse, and that use
-- of the role is journaled (system_event kind namespace_admin, with the refusal it
-- overrode). Reads directory, file, user_group, admin_user; inserts into system_event.
CREATE OR REPLACE FUNCTION namespace_authorise(p_user text, p_path text, p_action text)
RETURNS text
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_problem text := namespace_access_problem(p_user, p_path, p_action);
BEGIN
    IF v_problem IS NULL THEN
        RETURN NULL;
    ELSIF EXISTS (SELECT 1 FROM admin_user a WHERE a.user_name = p_user) THEN
        PERFORM system_event_record('namespace_admin', '', NULL,
            format('administrator %s may %s %s as an administrator (otherwise: %s)', p_user, p_action, p_path, v_problem),
            jsonb_build_object('user', p_user, 'action', p_action, 'path', p_path, 'overrode', v_problem));
        RETURN NULL;
    END IF;
    RETURN v_problem;
END;
$$;

-- namespace_mkdirs creates the missing directories above p_path from the root down, each
-- owned by p_user, with its parent's group and mode 0777 minus policy namespace_umask, and
-- returns true. It returns false, having created nothing, when another transaction created
-- one of them meanwhile: that directory is somebody else's and the caller must authorise
-- again before it writes below it. (Once this call has created one level, no other
-- transaction can have made a level below it, so a conflict only ever comes first.)
-- Locks: the inserted directory rows; an insert waits for a concurrent insert of the same
-- path to end.
CREATE OR REPLACE FUNCTION namespace_mkdirs(p_path text, p_user text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_path text;
    v_dir directory;
    v_group text := '';
    v_id bigint;
BEGIN
    FOREACH v_path IN ARRAY namespace_ancestors(p_path) LOOP
        SELECT * INTO v_dir FROM directory d WHERE d.path = v_path;
        IF FOUND THEN
            v_group := v_dir.group_name;
            CONTINUE;
        END IF;
        INSERT INTO directory (path, owner, group_name, mode)
        VALUES (v_path, p_user, v_group, 511 & ~policy_value('namespace_umask')::integer)
        ON CONFLICT (path) DO NOTHING RETURNING id INTO v_id;
        IF v_id IS NULL THEN
            RETURN false;
        END IF;
    END LOOP;
    RETURN true;
END;
$$;

-- namespace_file_create creates the namespace entry of a put of a new file, with its
-- directories, and returns it locked: owned by the writer, with its directory's group and
-- 0666 minus policy namespace_umask. Returns no file_id but the refusal when p_user may not
-- create it, or may not write it when another request created it meanwhile; nothing is
-- changed then. A file it creates counts in p_user's file quota (quota_usage_add).
-- Locks: the directories it creates, the file row, p_user's usage row.
CREATE OR REPLACE FUNCTION namespace_file_create(p_path text, p_service_class_id bigint, p_user text)
RETURNS TABLE (file_id bigint, problem text)
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_problem text;
    v_id bigint;
BEGIN
    LOOP
        v_problem := namespace_authorise(p_user, p_path, 'create');
        IF v_problem IS NOT NULL THEN
            RETURN QUERY SELECT NULL::bigint, v_problem;
            RETURN;
        END IF;
        -- Terminates: each false means one more directory exists, and paths are finite.
        EXIT WHEN namespace_mkdirs(p_path, p_user);
    END LOOP;
    INSERT INTO file (path, service_class_id, owner, group_name, mode)
    SELECT p_path, p_service_class_id, p_user,
           coalesce((SELECT d.group_name FROM directory d WHERE d.path = ANY (namespace_ancestors(p_path)) ORDER BY length(d.path) DESC LIMIT 1), ''),
           438 & ~policy_value('namespace_umask')::integer
    ON CONFLICT (path) DO NOTHING RETURNING id INTO v_id;
    IF v_id IS NOT NULL THEN
        -- Its owner's quota counts it from now (schema/logic/quota.sql).
        PERFORM quota_usage_add(p_user, p_service_class_id, 0, 1);
    ELSE
        -- Another request created it first: it is an overwrite now, decided by its bits.
        SELECT f.id INTO v_id FROM file f WHERE f.path = p_path FOR UPDATE;
        v_problem := namespace_authorise(p_user, p_path, 'write');
        IF v_problem IS NOT NULL THEN
            RETURN QUERY SELECT NULL::bigint, v_problem;
            RETURN;
        END IF;
    END IF;
    RETURN QUERY SELECT v_id, NULL::text;
END;
$$;

-- The operator's side (pollux-admin ns): homes, owner, group and mode, group membership and
-- administrators. Each change is journaled in system_event with who made it (p_by).

-- namespace_user_problem says what is wrong with a user or group name, or NULL. Reads nothing.
CREATE OR REPLACE FUNCTION namespace_user_problem(p_what text, p_name text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = public, pg_temp
AS $$
    SELECT CASE WHEN p_name IS NULL OR p_name !~ '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$'
        THEN format('%s name "%s" is not valid: 1 to 64 letters, digits, "_", ".", "@" or "-", not starting with a punctuation mark',
                    p_what, coalesce(p_name, ''))
    END
$$;

-- namespace_mkhome creates p_user's home, namespace_root()/u/<user>, owned by the user, with
-- group p_group ('' for none) and mode 0777 minus policy namespace_umask; namespace_root()/u
-- is created first when missing (owned by root, no group, 0755). A home that exists already
-- and is the user's is returned unchanged, so that running it again is harmless. Returns
-- the path.
-- Locks: the directory rows it inserts. Raises: invalid_argument (PX002) for a bad user or
-- group name; conflict (PX003) when the path exists and belongs to someone else.
CREATE OR REPLACE FUNCTION namespace_mkhome(p_user text, p_group text, p_by text)
RETURNS text
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_home text := namespace_root() || '/u/' || coalesce(p_user, '');
    v_dir directory;
    v_id bigint;
    v_problem text := coalesce(namespace_user_problem('user', p_user),
                               CASE WHEN coalesce(p_group, '') <> '' THEN namespace_user_problem('group', p_group) END);
BEGIN
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION '%', v_problem USING ERRCODE = 'PX002';
    END IF;
    INSERT INTO directory (path, owner, group_name, mode) VALUES (namespace_root() || '/u', 'root', '', 493)
    ON CONFLICT (path) DO NOTHING;
    INSERT INTO directory (path, owner, group_name, mode)
    VALUES (v_home, p_user, coalesce(p_group, ''), 511 & ~policy_value('namespace_umask')::integer)
    ON CONFLICT (path) DO NOTHING RETURNING id INTO v_id;
    SELECT * INTO v_dir FROM directory WHERE path = v_home;
    IF NOT FOUND OR v_dir.owner <> p_user THEN
        RAISE EXCEPTION '% exists and is owned by %: change its owner with pollux-admin ns chown', v_home, v_dir.owner
            USING ERRCODE = 'PX003';
    ELSIF v_id IS NOT NULL THEN
        PERFORM system_event_record('namespace_mkhome', coalesce(p_by, ''), NULL, format('home %s created for %s', v_home, p_user),
            jsonb_build_object('path', v_home, 'owner', p_user, 'group', v_dir.group_name, 'mode', namespace_mode_text(v_dir.mode)));
    END IF;
    RETURN v_home;
END;
$$;

-- namespace_entry_set changes the owner, group and/or mode (each left as it is when NULL)
-- of the directory or file at p_path, journals the change and returns the entry as it is
-- now. A file given to another owner takes what it holds of the quota with it (from the
-- old owner's usage to the new one's). Locks: the entry's row, those usage rows. Raises:
-- invalid_argument (PX002) for a bad path, name or mode; not_found (PX001) when there is
-- no entry at p_path.
CREATE OR REPLACE FUNCTION namespace_entry_set(p_path text, p_owner text, p_group text, p_mode integer, p_by text)
RETURNS TABLE (kind text, path text, owner text, group_name text, mode text, size_bytes bigint, updated_at timestamptz)
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_problem text := coalesce(
        CASE WHEN p_path IS DISTINCT FROM namespace_root() THEN namespace_path_problem(p_path) END,
        CASE WHEN p_owner IS NOT NULL THEN namespace_user_problem('user', p_owner) END,
        CASE WHEN coalesce(p_group, '') <> '' THEN namespace_user_problem('group', p_group) END,
        CASE WHEN p_mode IS NOT NULL AND (p_mode < 0 OR p_mode > 4095) THEN format('mode %s is out of range: 0 to 07777', p_mode) END);
    v_old jsonb;
    v_bytes bigint;
BEGIN
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION '%', v_problem USING ERRCODE = 'PX002';
    END IF;
    SELECT to_jsonb(d) INTO v_old FROM directory d WHERE d.path = p_path FOR UPDATE;
    IF FOUND THEN
        UPDATE directory d SET owner = coalesce(p_owner, d.owner), group_name = coalesce(p_group, d.group_name),
                               mode = coalesce(p_mode, d.mode), updated_at = now()
        WHERE d.path = p_path;
    ELSE
        SELECT to_jsonb(f) INTO v_old FROM file f WHERE f.path = p_path FOR UPDATE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'no such file or directory: %', p_path USING ERRCODE = 'PX001';
        END IF;
        IF p_owner IS NOT NULL AND p_owner <> v_old->>'owner' THEN
            -- What the file holds moves to its new owner's quota (not checked against it:
            -- the operator gives the file on purpose, and quota ls shows the result).
            SELECT coalesce(sum(dc.size_bytes), 0) INTO v_bytes FROM disk_copy dc
            WHERE dc.file_id = (v_old->>'id')::bigint AND dc.status IN ('STAGED', 'STAGEOUT');
            PERFORM quota_usage_add(v_old->>'owner', (v_old->>'service_class_id')::bigint, -v_bytes, -1);
            PERFORM quota_usage_add(p_owner, (v_old->>'service_class_id')::bigint, v_bytes, 1);
        END IF;
        UPDATE file f SET owner = coalesce(p_owner, f.owner), group_name = coalesce(p_group, f.group_name),
                          mode = coalesce(p_mode, f.mode), updated_at = now()
        WHERE f.path = p_path;
    END IF;
    PERFORM system_event_record('namespace_set', coalesce(p_by, ''), NULL,
        format('%s: owner %s, group %s, mode %s (was %s, %s, %s)', p_path,
               coalesce(p_owner, v_old->>'owner'), coalesce(p_group, v_old->>'group_name'),
               namespace_mode_text(coalesce(p_mode, (v_old->>'mode')::integer)),
               v_old->>'owner', v_old->>'group_name', namespace_mode_text((v_old->>'mode')::integer)),
        jsonb_build_object('path', p_path, 'owner', p_owner, 'group', p_group, 'mode', p_mode,
                           'old', jsonb_build_object('owner', v_old->'owner', 'group', v_old->'group_name', 'mode', v_old->'mode')));
    RETURN QUERY SELECT * FROM namespace_list(p_path) l WHERE l.path = p_path;
END;
$$;

-- namespace_list lists p_path: a directory's own entry first, then its directories and
-- files (one level, by name); a file's own entry alone. Files whose directories were never
-- created (written before permissions existed) are listed under their nearest existing
-- ancestor only when they lie directly below it. It walks the file table (an operator's
-- command, not a hot path). Reads only. Raises: not_found (PX001) when nothing is at p_path.
CREATE OR REPLACE FUNCTION namespace_list(p_path text)
RETURNS TABLE (kind text, path text, owner text, group_name text, mode text, size_bytes bigint, updated_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT 'file', f.path, f.owner, f.group_name, namespace_mode_text(f.mode), f.size_bytes, f.updated_at
    FROM file f WHERE f.path = p_path;
    IF FOUND THEN
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM directory d WHERE d.path = p_path) THEN
        RAISE EXCEPTION 'no such file or directory: %', p_path USING ERRCODE = 'PX001';
    END IF;
    RETURN QUERY
    SELECT e.kind, e.path, e.owner, e.group_name, e.mode, e.size_bytes, e.updated_at FROM (
        SELECT 0 AS o, 'dir'::text, d.path, d.owner, d.group_name, namespace_mode_text(d.mode), NULL::bigint, d.updated_at
        FROM directory d WHERE d.path = p_path
        UNION ALL
        SELECT 1, 'dir', d.path, d.owner, d.group_name, namespace_mode_text(d.mode), NULL, d.updated_at
        FROM directory d WHERE left(d.path, length(p_path) + 1) = p_path || '/' AND strpos(substr(d.path, length(p_path) + 2), '/') = 0
        UNION ALL
        SELECT 1, 'file', f.path, f.owner, f.group_name, namespace_mode_text(f.mode), f.size_bytes, f.updated_at
        FROM file f WHERE left(f.path, length(p_path) + 1) = p_path || '/' AND strpos(substr(f.path, length(p_path) + 2), '/') = 0
    ) e (o, kind, path, owner, group_name, mode, size_bytes, updated_at)
    ORDER BY e.o, e.path;
END;
$$;

-- user_group_set adds p_user to p_group (p_member) or takes it out, journals a change and
-- returns whether anything changed. Locks: the membership row. Raises: invalid_argument
-- (PX002) for a bad name.
CREATE OR REPLACE FUNCTION user_group_set(p_user text, p_group text, p_member boolean, p_by text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_problem text := coalesce(namespace_user_problem('user', p_user), namespace_user_problem('group', p_group));
    v_n integer;
BEGIN
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION '%', v_problem USING ERRCODE = 'PX002';
    END IF;
    IF p_member THEN
        INSERT INTO user_group (user_name, group_name) VALUES (p_user, p_group) ON CONFLICT DO NOTHING;
    ELSE
        DELETE FROM user_group WHERE user_name = p_user AND group_name = p_group;
    END IF;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_n > 0 THEN
        PERFORM system_event_record('user_group_set', coalesce(p_by, ''), NULL,
            format('%s %s group %s', p_user, CASE WHEN p_member THEN 'joined' ELSE 'left' END, p_group),
            jsonb_build_object('user', p_user, 'group', p_group, 'member', p_member));
    END IF;
    RETURN v_n > 0;
END;
$$;

-- user_group_list is every membership, by user then group. Reads only.
CREATE OR REPLACE FUNCTION user_group_list()
RETURNS SETOF user_group
LANGUAGE sql STABLE
SET search_path = public, pg_temp
AS $$ SELECT * FROM user_group ORDER BY user_name, group_name $$;

-- admin_user_set makes p_user an administrator (p_admin) or takes the role away, journals
-- a change and returns whether anything changed. Locks: the admin_user row. Raises:
-- invalid_argument (PX002) for a bad name.
CREATE OR REPLACE FUNCTION admin_user_set(p_user text, p_admin boolean, p_by text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_problem text := namespace_user_problem('user', p_user);
    v_n integer;
BEGIN
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION '%', v_problem USING ERRCODE = 'PX002';
    END IF;
    IF p_admin THEN
        INSERT INTO admin_user (user_name, added_by) VALUES (p_user, coalesce(p_by, '')) ON CONFLICT DO NOTHING;
    ELSE
        DELETE FROM admin_user WHERE user_name = p_user;
    END IF;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_n > 0 THEN
        PERFORM system_event_record('admin_user_set', coalesce(p_by, ''), NULL,
            format('%s %s', p_user, CASE WHEN p_admin THEN 'is now an administrator' ELSE 'is no longer an administrator' END),
            jsonb_build_object('user', p_user, 'admin', p_admin));
    END IF;
    RETURN v_n > 0;
END;
$$;

-- admin_user_list is every administrator, by name. Reads only.
CREATE OR REPLACE FUNCTION admin_user_list()
RETURNS SETOF admin_user
LANGUAGE sql STABLE
SET search_path = public, pg_temp
AS $$ SELECT * FROM admin_user ORDER BY user_name $$;
