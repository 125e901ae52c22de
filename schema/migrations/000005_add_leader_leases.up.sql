-- Singleton roles: work that must run in exactly one place at a time (the job manager's
-- sweeps) runs only on the instance holding its lease. The lease is a row renewed by its
-- leader; its epoch is the fencing token, raised on every change of holder, and every write
-- a singleton makes checks it in the same transaction (leader_lease_fence), so a leader that
-- was paused past its lease and wakes up believing it still leads changes nothing.
CREATE TABLE leader_lease (
    name             text PRIMARY KEY,
    epoch            bigint NOT NULL DEFAULT 0,
    holder_id        uuid,
    holder_host      text NOT NULL DEFAULT '',
    holder_preferred boolean NOT NULL DEFAULT false,
    acquired_at      timestamptz,
    renewed_at       timestamptz,
    expires_at       timestamptz NOT NULL DEFAULT '-infinity',
    ttl_seconds      double precision NOT NULL DEFAULT 0
);

-- The instances standing by for a lease, as last heard from, so that an operator sees the
-- backups beside the leader (pollux-admin leaders).
CREATE TABLE leader_candidate (
    name        text NOT NULL,
    instance_id uuid NOT NULL,
    host        text NOT NULL DEFAULT '',
    preferred   boolean NOT NULL DEFAULT false,
    seen_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, instance_id)
);

-- One row per singleton step that changed something, with the epoch it ran under: the
-- failure suite proves from it that no singleton work ran twice (epochs never go back in
-- commit order, and each epoch belongs to one instance).
CREATE TABLE leader_work (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL,
    epoch       bigint NOT NULL,
    instance_id uuid NOT NULL,
    rows        integer NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX leader_work_at_idx ON leader_work (at);
