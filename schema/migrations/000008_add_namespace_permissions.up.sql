-- Namespace permissions (issue 14): every file and directory has an owner, a group and
-- POSIX mode bits, checked by the stager's decisions and stager_qry in SQL against the
-- requesting user (schema/logic/permission.sql).
--   * directory: the namespace's directories. The root is world-writable with the sticky
--     bit, as /tmp is, so that any user may create entries under it while only an entry's
--     owner may remove it; homes (pollux-admin ns mkhome) are each user's own.
--   * file.group_name, file.mode: a file's group and mode beside its existing owner.
--     Files written before this migration keep their owner and get 0644, group "".
--   * user_group: which groups a user is in (pollux-admin ns group).
--   * admin_user: the administrators, who may do anything; every use is journaled.
--   * policy namespace_umask: the bits taken away from 0666 (files) and 0777
--     (directories) when an entry is created.

CREATE TABLE directory (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    path       text NOT NULL UNIQUE CHECK (path ~ '^/' AND path !~ '(^|/)\.\.?(/|$)' AND path !~ '//' AND path !~ './$'),
    owner      text NOT NULL,
    group_name text NOT NULL DEFAULT '',
    mode       integer NOT NULL CHECK (mode BETWEEN 0 AND 4095),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- 1023 = 01777: rwx for everyone, sticky.
-- No group: every directory a put makes below inherits it, and a group named here would
-- give its members the group bits of all of them.
INSERT INTO directory (path, owner, group_name, mode) VALUES ('/pollux', 'root', '', 1023);

ALTER TABLE file
    ADD COLUMN group_name text NOT NULL DEFAULT '',
    ADD COLUMN mode integer NOT NULL DEFAULT 420 CHECK (mode BETWEEN 0 AND 4095);

CREATE TABLE user_group (
    user_name  text NOT NULL CHECK (user_name <> ''),
    group_name text NOT NULL CHECK (group_name <> ''),
    added_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_name, group_name)
);

CREATE TABLE admin_user (
    user_name text PRIMARY KEY CHECK (user_name <> ''),
    added_by  text NOT NULL DEFAULT '',
    added_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO policy (name, value, doc) VALUES
    ('namespace_umask', 18, 'Mode bits (18 = octal 022) taken away from 0666 for a new file and from 0777 for a new directory.');

-- file_query now takes the user who asks (schema/logic/namespace.sql). The hot patch drops
-- only functions whose name no logic file defines any more, so the old one-argument form,
-- which would answer anyone, goes here. Run the new logic and rhd with this migration
-- (`pollux-admin migrate` applies both schema and logic).
DROP FUNCTION IF EXISTS file_query(text);
