UPDATE policy SET value = 30,
    doc = 'A disk server whose last heartbeat is older takes no new transfers and loses those it holds.'
WHERE name = 'disk_server_live_seconds' AND value = 6;
ALTER TABLE disk_server DROP COLUMN unavailable_since, DROP COLUMN availability;
DROP TYPE disk_server_availability;
