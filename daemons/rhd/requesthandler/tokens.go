package requesthandler

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// tokens maps bearer tokens to user names, read from a file of "TOKEN USER" lines ('#'
// starts a comment). The file is looked at again whenever its modification time or size
// changes, so an operator adds or revokes a user by editing it, without a restart.
type tokens struct {
	path string
	log  *zap.Logger

	mu    sync.Mutex
	stamp fileStamp
	// users is keyed by the token's SHA-256, so that a lookup never compares the secret
	// itself byte by byte (no timing side channel) and the table holds no token in clear.
	users map[[32]byte]string
}

type fileStamp struct {
	mtime time.Time
	size  int64
}

func loadTokens(path string, log *zap.Logger) (*tokens, error) {
	t := &tokens{path: path, log: log}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	users, err := readTokens(path)
	if err != nil {
		return nil, err
	}
	t.users, t.stamp = users, stampOf(st)
	if st.Mode().Perm()&0o077 != 0 {
		log.Warn("the tokens file is readable by other users: chmod 600 it", zap.String("file", path), zap.Stringer("mode", st.Mode().Perm()))
	}
	log.Info("tokens loaded", zap.String("file", path), zap.Int("tokens", len(users)))
	return t, nil
}

func stampOf(st os.FileInfo) fileStamp { return fileStamp{st.ModTime(), st.Size()} }

// user returns the user a token belongs to, or "" for an unknown token.
func (t *tokens) user(token string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.reloadIfChanged()
	return t.users[sha256.Sum256([]byte(token))]
}

// reloadIfChanged re-reads the file when it changed. A file that became unreadable or
// malformed keeps the previous table in force (and says so): a typo while editing must not
// lock every user out.
func (t *tokens) reloadIfChanged() {
	st, err := os.Stat(t.path)
	if err != nil {
		if t.stamp != (fileStamp{}) {
			t.log.Error("tokens file unreadable; keeping the tokens loaded before", zap.String("file", t.path), zap.Error(err))
			t.stamp = fileStamp{}
		}
		return
	}
	if stampOf(st) == t.stamp {
		return
	}
	t.stamp = stampOf(st)
	users, err := readTokens(t.path)
	if err != nil {
		t.log.Error("tokens file not reloaded; keeping the tokens loaded before", zap.String("file", t.path), zap.Error(err))
		return
	}
	t.users = users
	t.log.Info("tokens reloaded", zap.String("file", t.path), zap.Int("tokens", len(users)))
}

func readTokens(path string) (map[[32]byte]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	defer f.Close()
	users := map[[32]byte]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		switch {
		case len(fields) == 0:
			continue
		case len(fields) != 2:
			return nil, fmt.Errorf("tokens file %s line %d: want \"TOKEN USER\", got %d fields", path, n, len(fields))
		}
		key := sha256.Sum256([]byte(fields[0]))
		if other, dup := users[key]; dup && other != fields[1] {
			return nil, fmt.Errorf("tokens file %s line %d: the token is given to both %s and %s", path, n, other, fields[1])
		}
		users[key] = fields[1]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("tokens file %s: %w", path, err)
	}
	if len(users) == 0 {
		return nil, errors.New("tokens file " + path + " has no token: add lines \"TOKEN USER\"")
	}
	return users, nil
}
