// Package hotpatch installs a bundle of SQL logic (PL/pgSQL functions and the triggers that
// call them, one topic per file) into a live database in one transaction, records every
// installed version, reports whether the database matches a set of files, and rolls back to
// the previous version.
//
// Life of a bundle version:
//
//	files on disk ──Load──▶ Bundle{files, checksum}
//	                            │
//	                   Apply (one transaction, serialised by a table lock)
//	                            │   for each changed file (the Final one aside):
//	                            │     SAVEPOINT; execute
//	                            │     result type or argument names changed (42P13)?
//	                            │       ROLLBACK TO SAVEPOINT; DROP its triggers and functions;
//	                            │       execute again
//	                            │   the Final file, if any file ran (grants, SECURITY DEFINER)
//	                            │   DROP triggers, then functions, no file defines any more
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
// Triggers are written CREATE OR REPLACE TRIGGER (PostgreSQL 14 and later), so that a file
// runs again without a DROP. Executing a file that defines a trigger takes a SHARE ROW
// EXCLUSIVE lock on its table until the apply commits: writers of that table wait for the
// patch, which is one reason only changed files run. A trigger is identified by its name
// and table; the catalogue checksum covers pg_get_triggerdef and the enabled state of the
// bundle's triggers beside pg_get_functiondef of its functions, so a trigger dropped,
// replaced or disabled by hand shows as hand-edited. Rollback restores the trigger
// functions and triggers of the earlier version like any other file's content, and drops
// the triggers that version did not have before the functions they call.
//
// A Final file (New's option) restates what running the other files undoes: CREATE OR
// REPLACE FUNCTION resets SECURITY DEFINER and other attributes to their defaults (grants
// and owner stay), and a function dropped and created anew has neither. It runs last, in
// the same transaction, whenever any file runs, so no caller ever sees a function without
// them.
//
// The bookkeeping table belongs to the application's migrations and needs the columns
// version (identity), checksum, catalog_checksum, files (jsonb: name → content),
// applied_at, applied_by, note.
package hotpatch
