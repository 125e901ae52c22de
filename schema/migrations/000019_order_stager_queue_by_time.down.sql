CREATE INDEX subrequest_new_idx ON subrequest (type, id) WHERE status IN ('START', 'RESTART', 'RETRY');
DROP INDEX subrequest_queued_idx;
