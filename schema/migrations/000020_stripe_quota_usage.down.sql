-- Back to one counter per user and service class: the stripes summed into one row each.
ALTER TABLE quota_usage DROP CONSTRAINT quota_usage_pkey;
WITH striped AS (DELETE FROM quota_usage RETURNING user_name, service_class_id, bytes, files)
INSERT INTO quota_usage (user_name, service_class_id, stripe, bytes, files)
SELECT user_name, service_class_id, 0, sum(bytes), sum(files) FROM striped GROUP BY user_name, service_class_id;
ALTER TABLE quota_usage DROP COLUMN stripe;
ALTER TABLE quota_usage ADD PRIMARY KEY (user_name, service_class_id);
