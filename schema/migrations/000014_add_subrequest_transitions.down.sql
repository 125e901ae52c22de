-- The triggers belong to the logic, but they write into the table dropped here: without
-- them every change of a subrequest would fail.
DROP TRIGGER IF EXISTS subrequest_status_history_insert ON subrequest;
DROP TRIGGER IF EXISTS subrequest_status_history_update ON subrequest;
DROP FUNCTION IF EXISTS subrequest_status_history_record();
ALTER TABLE request_archive DROP COLUMN IF EXISTS history;
DROP TABLE IF EXISTS subrequest_transition;
