-- Least privilege in the database: one role per daemon kind and an owner role. The roles
-- and grants themselves are installed by the generated logic file grants_gen.sql (from
-- database_roles and every function's callers in schema/pollux.yaml), which runs at the
-- end of every logic apply, so that a hot patch adding a function also grants it. This
-- table records the role name chosen for each kind at the first install: role names are
-- cluster-wide, and the prefix in force then (setting pollux.role_prefix, default
-- pollux_) must not change under daemons that already log in with it.
CREATE TABLE db_role (
    kind       text PRIMARY KEY CHECK (kind ~ '^[a-z][a-z0-9_]*$'),
    name       text NOT NULL UNIQUE CHECK (length(name) <= 63),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- PUBLIC may create nothing in the schema and call nothing (PostgreSQL 15 already creates
-- new databases without CREATE for PUBLIC; an older database upgraded in place has it).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;
