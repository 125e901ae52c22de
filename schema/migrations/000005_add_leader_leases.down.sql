DROP TABLE IF EXISTS leader_work;
DROP TABLE IF EXISTS leader_candidate;
DROP TABLE IF EXISTS leader_lease;
