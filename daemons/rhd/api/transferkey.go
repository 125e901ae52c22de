package api

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"
)

// A mover's one-time token is not a credential on its own: the database holds it, and
// anyone who can read a table (an operator, a stolen daemon credential, a backup) could
// otherwise move another user's data. A client that submits a request that moves data
// makes a transfer secret, keeps it, and sends only its SHA-256 (SubmitRequest's
// TransferKeyHash); the mover serves a transfer only to a caller presenting
// "<token>.<secret>" whose secret hashes to the request's key. The token still fences one
// claim of the transfer from the next; the secret proves the caller is the client.

// NewTransferSecret returns a fresh secret: 32 random bytes, hex.
func NewTransferSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("transfer secret: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// TransferKeyHash is what the database keeps of a secret.
func TransferKeyHash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// ValidTransferKeyHash says whether h has the shape of a TransferKeyHash.
func ValidTransferKeyHash(h string) bool {
	if len(h) != 64 {
		return false
	}
	for _, c := range h {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// TransferCredential is what a client presents to a mover: the token with its secret.
func TransferCredential(token, secret string) string { return token + "." + secret }

// CheckTransferCredential checks what a caller presented against the transfer's token and
// its request's key hash (empty: the token alone, for requests stored without a key), in
// constant time. The error says what was wrong, never what was expected.
func CheckTransferCredential(presented, token, keyHash string) error {
	got, secret, hasSecret := strings.Cut(presented, ".")
	if token == "" || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
		return fmt.Errorf("the transfer token does not check: it is wrong")
	}
	if keyHash == "" {
		return nil
	}
	if !hasSecret || secret == "" {
		return fmt.Errorf("the transfer token comes without its secret: present \"<token>.<secret>\"; only the client that submitted the request holds the secret")
	}
	if subtle.ConstantTimeCompare([]byte(TransferKeyHash(secret)), []byte(keyHash)) != 1 {
		return fmt.Errorf("the transfer secret does not check: it is not the one the request was submitted with")
	}
	return nil
}

// NeedsTransferKey says whether requests of this type move data, so carry a key.
func NeedsTransferKey(requestType string) bool { return requestType == "PUT" || requestType == "GET" }
