-- A minimum transfer rate: a mover drops a transfer that moves fewer than
-- transfer_min_bytes_per_second bytes per second on average over any window of
-- transfer_min_rate_seconds once its client connected (0 turns the check off). A stalled or
-- trickling client otherwise holds a mover, its disk space reservation and a connection
-- until transfer_seconds (an hour) ends it. Read by transfer_claim.
INSERT INTO policy (name, value, doc) VALUES
    ('transfer_min_bytes_per_second', 1024, 'A transfer moving fewer bytes per second than this, averaged over transfer_min_rate_seconds, is dropped by its mover (0: never).'),
    ('transfer_min_rate_seconds', 60, 'The window over which a transfer''s rate is measured against transfer_min_bytes_per_second.');

-- A bound on one user's pending requests (0: none), checked by request_submit: each
-- pending request holds rows the stager and the long polls work on, so one user (a
-- runaway script, a stolen token) could otherwise fill the queues everyone shares. The
-- index answers the count from the pending requests alone, whatever the history.
INSERT INTO policy (name, value, doc) VALUES
    ('user_max_pending_requests', 10000, 'Most requests one user may have pending at once; request_submit refuses one more as unavailable (0: no limit).');
CREATE INDEX request_user_pending_idx ON request (user_name) WHERE status = 'PENDING';
