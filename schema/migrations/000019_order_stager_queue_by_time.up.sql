-- The stager's queue in the order subrequests joined it: (type, updated_at, id). Ordered by
-- (type, id), the claim could be answered by the primary key too, and with a long queue the
-- planner took it, estimating that the queued rows lie among the first it reads (its
-- statistics know how many rows wait, not that they are the newest): behind a history of
-- finished subrequests that is a walk of the whole history. No other index is ordered by
-- updated_at, so the claim always reads this one. A subrequest decided again (RESTART,
-- RETRY) joins the back of the queue, as updated_at says when it did.
CREATE INDEX subrequest_queued_idx ON subrequest (type, updated_at, id) WHERE status IN ('START', 'RESTART', 'RETRY');
DROP INDEX subrequest_new_idx;
