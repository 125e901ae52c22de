DROP INDEX request_user_pending_idx;
DELETE FROM policy WHERE name IN ('transfer_min_bytes_per_second', 'transfer_min_rate_seconds', 'user_max_pending_requests');
