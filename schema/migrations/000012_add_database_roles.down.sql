-- Back to one role doing everything: the functions return to the migrating role, and the
-- roles lose every privilege in this database. The roles themselves stay: they are
-- cluster-wide, and other databases of the server (an instance's test clones, say) may
-- still use them; `DROP ROLE` them by hand once no database does.
DO $down$
DECLARE
    v_role record;
BEGIN
    FOR v_role IN
        SELECT r.kind, r.name FROM db_role r
        WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r.name)
        ORDER BY r.kind = 'owner'
    LOOP
        IF v_role.kind = 'owner' THEN
            EXECUTE format('REASSIGN OWNED BY %I TO %I', v_role.name, current_user);
            EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM %I', v_role.name);
            EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM %I', v_role.name);
        END IF;
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA public FROM %I', v_role.name);
        EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM %I', v_role.name);
        EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM %I', v_role.name);
        EXECUTE format('REVOKE ALL ON SCHEMA public FROM %I', v_role.name);
    END LOOP;
END
$down$;

ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO PUBLIC;
DROP TABLE db_role;
