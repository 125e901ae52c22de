DROP FUNCTION IF EXISTS request_submit(uuid, request_type, text, text, text, text, text[], boolean, text);
DROP FUNCTION IF EXISTS transfer_claim(bigint, text, text[]);
ALTER TABLE request DROP COLUMN transfer_key_hash;
