-- A mover's one-time token was a bearer credential stored in clear in subrequest.token:
-- anyone who could read the table could move another user's data. The credential is now
-- the token and a secret of the client's own, of which the database keeps only the SHA-256
-- (the request's transfer_key_hash, given at submission): the token alone opens nothing.
ALTER TABLE request ADD COLUMN transfer_key_hash text
    CHECK (transfer_key_hash ~ '^[0-9a-f]{64}$');

-- A put under a token that may create but not modify (a WLCG storage.create scope) must not
-- overwrite a file that appeared after rhd looked: the put decision checks it, from this
-- flag, in the transaction that decides.
ALTER TABLE subrequest ADD COLUMN create_only boolean NOT NULL DEFAULT false;

-- request_submit takes the hash and the create-only paths, and transfer_claim returns it to the mover: new
-- signatures, which CREATE OR REPLACE cannot give an existing function.
DROP FUNCTION IF EXISTS request_submit(uuid, request_type, text, text, text, text, text[], boolean);
DROP FUNCTION IF EXISTS transfer_claim(bigint, text, text[]);
