package requesthandler

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// tokens maps static bearer tokens to user names, read from a file of "TOKEN USER" lines
// ('#' starts a comment). The file is looked at again whenever its modification time or
// size changes, so an operator adds or revokes a user by editing it, without a restart.
//
// The table holds SHA-256 hashes only: the clear token exists in the file the operator
// keeps (mode 0600) and in memory only while a line is parsed. The tokens stay out of the
// database on purpose: a table of hashes would add a second source of truth beside the
// file and a command to keep them in step, and rhd would read it on every call.
//
// A reload never keeps a revoked token alive: an empty file revokes everyone; a file with
// a malformed line is refused loudly and leaves in force only the tokens of the previous
// table that the new file still lists, well formed, for the same user; a file that cannot
// be read revokes everyone until it can.
type tokens struct {
	path string
	log  *zap.Logger

	mu    sync.Mutex
	stamp fileStamp
	// digest and read are the content and time of the last read. An edit that keeps the
	// size within the file system's mtime granularity leaves the stamp as it was, so the
	// content is compared again at least every recheck: a revocation never waits for a
	// luckier edit.
	digest [32]byte
	read   time.Time
	// users is keyed by the token's SHA-256, so that a lookup never compares the secret
	// itself byte by byte (no timing side channel) and the table holds no token in clear.
	users map[[32]byte]string
}

// recheck bounds how long an edit the stamp misses goes unnoticed.
const recheck = time.Second

type fileStamp struct {
	mtime time.Time
	size  int64
}

// loadTokens reads the file at start: a malformed line refuses the start, an empty file
// starts with nobody admitted by a static token (JWTs may still be).
func loadTokens(path string, log *zap.Logger) (*tokens, error) {
	t := &tokens{path: path, log: log}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	users, err := parseTokens(path, b)
	if err != nil {
		return nil, err
	}
	t.users, t.stamp, t.digest, t.read = users, stampOf(st), sha256.Sum256(b), time.Now()
	if st.Mode().Perm()&0o077 != 0 {
		log.Warn("the tokens file is readable by other users: chmod 600 it", zap.String("file", path), zap.Stringer("mode", st.Mode().Perm()))
	}
	if len(users) == 0 {
		log.Warn("the tokens file lists no token: no static token is accepted", zap.String("file", path))
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

// reloadIfChanged re-reads the file when it changed (see tokens for what a bad file does).
func (t *tokens) reloadIfChanged() {
	st, err := os.Stat(t.path)
	if err != nil {
		t.unreadable(err)
		return
	}
	if stampOf(st) == t.stamp && time.Since(t.read) < recheck {
		return
	}
	b, err := os.ReadFile(t.path)
	if err != nil {
		t.unreadable(err)
		return
	}
	t.stamp, t.read = stampOf(st), time.Now()
	digest := sha256.Sum256(b)
	if digest == t.digest {
		return
	}
	t.digest = digest
	users, err := parseTokens(t.path, b)
	if err != nil {
		kept := map[[32]byte]string{}
		for key, user := range users {
			if t.users[key] == user {
				kept[key] = user
			}
		}
		t.log.Error("tokens file not reloaded: only the tokens loaded before that it still lists are accepted; fix it",
			zap.String("file", t.path), zap.Error(err), zap.Int("tokens", len(kept)), zap.Int("revoked", len(t.users)-len(kept)))
		t.users = kept
		return
	}
	t.log.Info("tokens reloaded", zap.String("file", t.path), zap.Int("tokens", len(users)), zap.Int("before", len(t.users)))
	t.users = users
}

// unreadable revokes every static token, failing closed: rhd cannot tell which tokens the
// operator meant to revoke. It says so once, until the file is read again.
func (t *tokens) unreadable(err error) {
	if t.stamp == (fileStamp{}) && t.users == nil {
		return
	}
	t.log.Error("tokens file unreadable: no static token is accepted until it is readable", zap.String("file", t.path), zap.Error(err))
	// Forgetting the digest makes the file's return, even unchanged, a reload.
	t.stamp, t.digest, t.users = fileStamp{}, [32]byte{}, nil
}

// parseTokens returns the well-formed lines of the file's content b keyed by the token's
// hash, and an error naming every malformed line, if any. The error never quotes a line:
// it may hold a token.
func parseTokens(path string, b []byte) (map[[32]byte]string, error) {
	users := map[[32]byte]string{}
	var bad []error
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		switch {
		case len(fields) == 0:
			continue
		case len(fields) != 2:
			bad = append(bad, fmt.Errorf("line %d: want \"TOKEN USER\", got %d fields", n, len(fields)))
			continue
		}
		key := sha256.Sum256([]byte(fields[0]))
		if other, dup := users[key]; dup && other != fields[1] {
			// Neither user may keep a token two lines disagree on.
			delete(users, key)
			bad = append(bad, fmt.Errorf("line %d: the token is given to both %s and %s", n, other, fields[1]))
			continue
		}
		users[key] = fields[1]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("tokens file %s: %w", path, err)
	}
	if len(bad) > 0 {
		return users, fmt.Errorf("tokens file %s: %w", path, errors.Join(bad...))
	}
	return users, nil
}
