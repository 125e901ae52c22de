DELETE FROM policy WHERE name = 'put_lease_seconds';
DROP INDEX disk_copy_stageout_idx;
DROP TABLE quota_usage;
DROP TABLE quota;
