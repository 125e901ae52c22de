DELETE FROM policy WHERE name IN ('put_lease_seconds', 'user_max_transfers');
DROP INDEX disk_copy_stageout_idx;
DROP TABLE quota_usage;
DROP TABLE quota;
