-- The database roles: what pollux-admin shows of them. The roles and grants themselves
-- are installed by grants_gen.sql, generated from schema/pollux.yaml.

-- db_role_list returns each kind's role, whether it exists in the cluster and may log in,
-- and the functions of this database it may EXECUTE (none for the owner, which owns them
-- all). Reads only; locks nothing; raises nothing.
CREATE OR REPLACE FUNCTION db_role_list()
RETURNS TABLE (kind text, name text, role_exists boolean, can_login boolean, functions text[])
LANGUAGE sql STABLE
SET search_path = public, pg_temp
AS $$
    SELECT r.kind, r.name, a.oid IS NOT NULL, coalesce(a.rolcanlogin, false),
           coalesce((SELECT array_agg(p.proname::text ORDER BY p.proname)
                     FROM pg_catalog.pg_proc p
                     WHERE a.oid IS NOT NULL AND r.kind <> 'owner'
                       AND p.pronamespace = 'public'::regnamespace
                       AND has_function_privilege(a.oid, p.oid, 'EXECUTE')), '{}')
    FROM db_role r
    LEFT JOIN pg_catalog.pg_roles a ON a.rolname = r.name
    ORDER BY r.kind = 'owner' DESC, r.kind;
$$;
