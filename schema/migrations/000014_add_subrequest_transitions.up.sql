-- A request's whole story (issue 16): every change of every subrequest's status, with who
-- made it and why, written by the generated trigger subrequest_status_history_record
-- (schema/logic/transitions_gen.sql) in the transaction of the change. No foreign keys:
-- each would add a look-up and a lock of the parent to every change on the hot path; the
-- archive sweep (request_archive_finished) deletes a request's rows with it and keeps them
-- in request_archive.history.

CREATE TABLE subrequest_transition (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subrequest_id bigint NOT NULL,
    request_id    uuid NOT NULL,
    from_status   subrequest_status,
    to_status     subrequest_status NOT NULL,
    at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    daemon        text NOT NULL DEFAULT '',
    instance_id   uuid,
    host          text NOT NULL DEFAULT '',
    reason        text NOT NULL DEFAULT ''
);
-- One request's story in order, and its deletion by the archive sweep, by one index.
CREATE INDEX subrequest_transition_request_id_idx ON subrequest_transition (request_id, id);

ALTER TABLE request_archive ADD COLUMN history jsonb NOT NULL DEFAULT '[]';
-- The monitor's claim rates read the last minutes of changes. BRIN, because rows arrive in
-- time order: it costs next to nothing on the INSERT of each change, where a btree on at
-- would add a second index write to the hot path.
CREATE INDEX subrequest_transition_at_idx ON subrequest_transition USING brin (at);
