// Package schema holds every byte of Pollux's SQL: the schema description (pollux.yaml),
// the golang-migrate migrations and the hot-patchable logic, all embedded so that one
// binary can migrate a database and install its logic.
package schema

import (
	"embed"
	"io/fs"
)

//go:embed pollux.yaml
var Description []byte

//go:embed migrations/*.sql
var migrations embed.FS

//go:embed logic/*.sql
var logic embed.FS

// Migrations returns the migration files (NNNNNN_verb_object.{up,down}.sql) at the root of
// the returned file system.
func Migrations() fs.FS { return sub(migrations, "migrations") }

// Logic returns the logic files (one topic per .sql file) at the root of the returned file
// system.
func Logic() fs.FS { return sub(logic, "logic") }

func sub(f embed.FS, dir string) fs.FS {
	s, err := fs.Sub(f, dir)
	if err != nil {
		panic(err) // the directory is embedded at build time; failing here is a build error
	}
	return s
}
