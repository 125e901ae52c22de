-- Corrupt copies: a copy whose bytes on disk are not the catalogue's (a read found another
-- size or adler32) is marked with the time it was found, not given a status of its own: its
-- status keeps saying what the copy is to its file (the content, superseded, removed), and
-- corrupt_at takes it out of every choice made for reads and of garbage collection, so that
-- the only copy of a file is never deleted behind the operator's back. The operator clears
-- the mark (docs/operations.md, "Corrupt copies").
ALTER TABLE disk_copy ADD COLUMN corrupt_at timestamptz;
-- The operator's list of what to look at; it holds only the marked copies.
CREATE INDEX disk_copy_corrupt_idx ON disk_copy (corrupt_at) WHERE corrupt_at IS NOT NULL;
