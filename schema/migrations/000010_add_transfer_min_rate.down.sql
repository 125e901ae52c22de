DELETE FROM policy WHERE name IN ('transfer_min_bytes_per_second', 'transfer_min_rate_seconds');
