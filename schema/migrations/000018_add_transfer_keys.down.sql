DROP FUNCTION IF EXISTS request_submit(uuid, request_type, text, text, text, text, text[], boolean, text, text[]);
DROP FUNCTION IF EXISTS transfer_claim(bigint, text, text[]);
ALTER TABLE request DROP COLUMN transfer_key_hash;
ALTER TABLE subrequest DROP COLUMN create_only;
