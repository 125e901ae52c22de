// Package hotpatch installs a bundle of SQL logic (PL/pgSQL functions, one topic per file)
// into a live database in one transaction, records every installed version, reports whether
// the database matches a set of files, and rolls back to the previous version.
//
// Life of a bundle version:
//
//	files on disk ──Load──▶ Bundle{files, checksum}
//	                            │
//	                   Apply (one transaction, serialised by a table lock)
//	                            │   for each changed file:
//	                            │     SAVEPOINT; execute
//	                            │     result type or argument names changed (42P13)?
//	                            │       ROLLBACK TO SAVEPOINT; DROP its functions; execute again
//	                            │   DROP functions no file defines any more
//	                            ▼   INSERT bookkeeping row (version, checksum, catalogue checksum)
//	                      installed vN ──Rollback──▶ vN+1 = content of vN-1
//
// Running daemons pick the new logic up at once: PostgreSQL recompiles a PL/pgSQL function
// whose catalogue row changed on its next call in every session. A function whose result
// type changed is dropped and created anew; a prepared statement that selects from it then
// fails once on each connection that cached it with "cached plan must not change result
// type", which framework/pg retries.
// Functions whose signature is unchanged are replaced in place (CREATE OR REPLACE keeps
// their identity), so a patch of a function body never disturbs a caller.
//
// The bookkeeping table belongs to the application's migrations and needs the columns
// version (identity), checksum, catalog_checksum, files (jsonb: name → content),
// applied_at, applied_by, note.
package hotpatch
