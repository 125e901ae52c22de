-- The liveness sweep's own clock. A disk server is judged silent from heartbeats it could
-- not write; while the database itself was away (a failover, a restart) none could write
-- one, and the first sweep after it would find every server silent and fail the transfers
-- they were moving. The sweep records when it last ran and since when it has run without a
-- gap: silence counts only once the database has been available for a whole liveness
-- window.
CREATE TABLE sweep_clock (
    id              integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    last_sweep_at   timestamptz,
    available_since timestamptz
);
INSERT INTO sweep_clock (id) VALUES (1);
