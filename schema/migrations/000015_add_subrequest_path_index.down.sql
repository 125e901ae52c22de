DROP INDEX IF EXISTS subrequest_path_idx;
