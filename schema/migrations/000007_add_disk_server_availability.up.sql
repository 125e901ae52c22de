-- Disk servers that die, are cut off or stop (issue 13): whether a server can take
-- transfers is no longer only its heartbeat's age, read at each decision. It is a state of
-- its own, recorded when it changes, so that operators and clients see since when a
-- server is out ("only copy is on disk2, unavailable since ...") and the sweep that finds
-- a silent server acts on it once:
--   * availability: AVAILABLE, SILENT (the job manager found its heartbeat older than
--     policy disk_server_live_seconds) or STOPPED (its diskserverd was stopped cleanly and
--     left placement before it stopped serving); the operator's status (PRODUCTION,
--     DRAINING, DISABLED) stays the operator's;
--   * unavailable_since: its last heartbeat (SILENT) or the stop (STOPPED).
-- A silent server is found within seconds rather than half a minute: the liveness window
-- goes from 30 to 6 seconds where nobody changed it (disk servers heartbeat four times per
-- window, so three heartbeats in a row must be lost).
CREATE TYPE disk_server_availability AS ENUM ('AVAILABLE', 'SILENT', 'STOPPED');
ALTER TABLE disk_server
    ADD COLUMN availability disk_server_availability NOT NULL DEFAULT 'AVAILABLE',
    ADD COLUMN unavailable_since timestamptz;

UPDATE policy SET value = 6,
    doc = 'A disk server whose last heartbeat is older is marked SILENT: it takes no new transfers, its queued ones are placed elsewhere and those in flight fail. Disk servers heartbeat four times per window.'
WHERE name = 'disk_server_live_seconds' AND value = 30;
