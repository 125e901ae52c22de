-- Quotas and the lease of an unclosed write (issue 14; schema/logic/quota.sql).
--   * quota: an operator's limits for one user in one service class, in bytes and in
--     files; NULL is no limit, and no row is no limit on either (pollux-admin quota).
--   * quota_usage: what each user holds in each service class, kept by the logic in the
--     transactions that change it. A put's decision locks the row it checks, so two puts
--     at the limit cannot both pass it (a sum over the user's files would be neither
--     cheap nor safe under concurrency). The files are the namespace entries the user
--     owns (a new file counts from its put's decision); the bytes are the sizes of every
--     copy kept for the user's files: the closed content, and a write that has ended but
--     is not closed yet (it occupies disk too), counted when its upload ends.
--   * policy put_lease_seconds: how long a write may stay unclosed (not uploaded, or
--     uploaded and never closed by putdone) before the job manager fails it and releases
--     what it holds.
--   * policy user_max_transfers: how many transfers one user may have READY (a mover open
--     for it) at once; transfer_claim holds back more.
CREATE TABLE quota (
    user_name        text NOT NULL CHECK (user_name <> ''),
    service_class_id bigint NOT NULL REFERENCES service_class (id) ON DELETE CASCADE,
    max_bytes        bigint CHECK (max_bytes >= 0),
    max_files        bigint CHECK (max_files >= 0),
    set_by           text NOT NULL DEFAULT '',
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_name, service_class_id)
);

CREATE TABLE quota_usage (
    user_name        text NOT NULL,
    service_class_id bigint NOT NULL REFERENCES service_class (id) ON DELETE CASCADE,
    bytes            bigint NOT NULL DEFAULT 0,
    files            bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (user_name, service_class_id)
);

-- What users hold already: their files, and the copies kept for them.
INSERT INTO quota_usage (user_name, service_class_id, bytes, files)
SELECT f.owner, f.service_class_id, coalesce(sum(c.bytes), 0), count(*)
FROM file f
LEFT JOIN LATERAL (SELECT sum(dc.size_bytes) AS bytes FROM disk_copy dc
                   WHERE dc.file_id = f.id AND dc.status IN ('STAGED', 'STAGEOUT')) c ON true
GROUP BY f.owner, f.service_class_id;

-- The lease sweep finds unclosed writes by age without reading the closed copies.
CREATE INDEX disk_copy_stageout_idx ON disk_copy (created_at) WHERE status = 'STAGEOUT';

INSERT INTO policy (name, value, doc) VALUES
    ('put_lease_seconds', 86400, 'How long a write may stay unclosed (never uploaded, or uploaded and never closed by putdone) before the job manager fails it and releases its quota (0: for ever).');
INSERT INTO policy (name, value, doc) VALUES
    ('user_max_transfers', 100, 'Most transfers one user may have in flight (READY, a mover open) at once; a disk server''s claim leaves more SCHEDULED until one ends (0: no limit).');
