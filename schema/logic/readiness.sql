-- What a daemon's /readyz compares with its binary, read for it: the daemon roles have no
-- privilege on any table (grants_gen.sql), so the bookkeeping of golang-migrate, River and
-- the logic patcher reaches them through this function alone.

-- readiness_versions returns one row: golang-migrate's schema version and dirty flag (0 and
-- false before any migration), the highest River migration of its main line (0 for none),
-- and the installed logic version with its checksums and files (NULL when no logic was
-- ever installed); the files let the caller recompute which functions and triggers the
-- catalogue checksum covers. Reads only; locks nothing; raises nothing.
CREATE OR REPLACE FUNCTION readiness_versions()
RETURNS TABLE (schema_version bigint, schema_dirty boolean, river_version bigint,
               logic_version bigint, logic_checksum text, logic_catalog_checksum text, logic_files jsonb)
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    SELECT coalesce(max(m.version), 0), coalesce(bool_or(m.dirty), false)
    INTO schema_version, schema_dirty FROM schema_migrations m;
    SELECT coalesce(max(r.version), 0) INTO river_version FROM river_migration r WHERE r.line = 'main';
    SELECT b.version, b.checksum, b.catalog_checksum, b.files
    INTO logic_version, logic_checksum, logic_catalog_checksum, logic_files
    FROM logic_bundle b ORDER BY b.version DESC LIMIT 1;
    RETURN NEXT;
END;
$$;

-- logic_history lists the logic versions installed, newest first, with who applied each
-- and when (the web monitor's logic page; its role reads no table). Reads only.
CREATE OR REPLACE FUNCTION logic_history(p_limit integer)
RETURNS TABLE (version bigint, checksum text, applied_at timestamptz, applied_by text, note text)
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN QUERY SELECT b.version, b.checksum, b.applied_at, b.applied_by, b.note
    FROM logic_bundle b ORDER BY b.version DESC LIMIT greatest(p_limit, 0);
END;
$$;
