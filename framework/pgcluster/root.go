package pgcluster

import (
	"errors"
	"os"
	"path/filepath"
)

// RepoRoot finds the directory holding go.mod above the working directory: the
// development cluster lives in <root>/var/pg wherever a command or test runs from.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
