-- stager_qry of a path with no namespace entry says why when its user's last write of it
-- failed (file_query): the failure is found by path, as the entry that would have pointed
-- to it is gone. Without this index that look-up would walk the whole subrequest history.
CREATE INDEX subrequest_path_idx ON subrequest (path, id);
