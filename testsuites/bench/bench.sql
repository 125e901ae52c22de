-- Pollux claim benchmark schema: one queue table and its claim function, shaped like the
-- stager's claim of new subrequests (a status column, a partial index that holds only the
-- pending statuses, and a claim that locks with SKIP LOCKED and decides in the same
-- statement). The bench loads this into a scratch database of its own; nothing else uses it.
--
-- bench_item_claim locks: up to p_batch bench_item rows in a pending status (START, RESTART,
-- RETRY), oldest id first, with FOR UPDATE SKIP LOCKED, so rows held by a concurrent claim
-- are passed over rather than waited for; it updates exactly those rows to DONE and takes
-- no other lock. The row locks last until the caller's transaction ends.

CREATE TYPE bench_item_status AS ENUM ('START', 'RESTART', 'RETRY', 'DONE');

CREATE TABLE bench_item (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    path       text NOT NULL,
    status     bench_item_status NOT NULL DEFAULT 'START',
    -- How many claims completed this row; anything but 0 or 1 is double processing.
    claims     integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- As subrequest_queued_idx: the claim's index holds only the pending rows.
CREATE INDEX bench_item_pending_idx ON bench_item (id) WHERE status IN ('START', 'RESTART', 'RETRY');

-- bench_item_claim claims up to p_batch pending rows, marks them DONE and returns their ids.
-- It pins plan_cache_mode to force_generic_plan as the logic's claim functions do (a custom
-- plan, which PostgreSQL prefers while the generic plan's estimate for LIMIT p_batch looks
-- worse, re-plans every call), and locks its rows in a subquery that the UPDATE then reaches
-- by primary key, which keeps that generic plan cheap.
-- Locks: see the header. Raises nothing.
CREATE FUNCTION bench_item_claim(p_batch integer)
RETURNS TABLE (id bigint)
LANGUAGE plpgsql
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN QUERY
    UPDATE bench_item b SET status = 'DONE', claims = b.claims + 1, updated_at = now()
    WHERE b.id = ANY (ARRAY(
        SELECT k.id FROM bench_item k
        WHERE k.status IN ('START', 'RESTART', 'RETRY')
        ORDER BY k.id
        LIMIT p_batch
        FOR UPDATE SKIP LOCKED))
    RETURNING b.id;
END;
$$;
