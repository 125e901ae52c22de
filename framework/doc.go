// Package framework is the root of Pollux's reusable daemon framework. Its packages know
// nothing of Pollux's schema or daemons: they take migrations and logic as fs.FS values and
// talk to PostgreSQL through framework/pg.
//
//	daemon    Main(args, Spec): flags, logging, admin HTTP, registration, drain
//	service   the Start/Stop contract of every long-running piece
//	claim     named worker pools claiming work, woken by NOTIFY, polling as a safety net
//	pg        connection pool, retry by SQLSTATE class, LISTEN fan-out
//	migrate   golang-migrate sequence plus River's own migrations, one call
//	hotpatch  apply, status and rollback of the SQL logic on a live database
//	flagenv   flags with POLLUX_* environment fall-backs
//	logging   the zap logger; metrics: the Prometheus registry
//	adler     Adler-32; pump: streams copied and hashed; filemap: files hashed and sent mapped
//	pgcluster a private PostgreSQL under a directory; pgtest: a database per test
package framework
