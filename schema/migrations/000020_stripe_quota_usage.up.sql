-- quota_usage in stripes: eight counters per user and service class, each session adding
-- to its own (quota_usage_add: its backend's pid, modulo 8), and a quota check locking all
-- eight (quota_room). With one row, every put of a user took that row's lock twice, in its
-- decision and at its upload's end, and held it to the end of the transaction: sixteen
-- concurrent puts of one user spent 14-24 ms a statement waiting for it, with no quota set.
-- What a user holds is the sum of its stripes. The rows there are become stripe 0.
ALTER TABLE quota_usage ADD COLUMN stripe integer NOT NULL DEFAULT 0 CHECK (stripe BETWEEN 0 AND 7);
ALTER TABLE quota_usage ALTER COLUMN stripe DROP DEFAULT;
ALTER TABLE quota_usage DROP CONSTRAINT quota_usage_pkey;
ALTER TABLE quota_usage ADD PRIMARY KEY (user_name, service_class_id, stripe);
