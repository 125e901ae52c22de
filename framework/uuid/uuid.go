// Package uuid makes UUIDs: random ones (version 4) for instance ids and probe payloads,
// time-ordered ones (version 7) for request ids.
package uuid

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"time"
)

// New returns a random version 4 UUID in its canonical text form.
func New() string {
	var b [16]byte
	_, _ = rand.Read(b[:])  // crypto/rand.Read never fails (Go 1.24+)
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return format(b)
}

// NewV7 returns a time-ordered version 7 UUID (RFC 9562: the Unix time in milliseconds in
// its first 48 bits, then 74 random bits). Ids made one after the other sort one after the
// other, so a btree keyed by them grows at its right edge: a random id lands on a random
// leaf of every index that holds it (the request's, its subrequests', their transitions'),
// which behind millions of finished requests is a page the cache may no longer hold.
func NewV7() string {
	var b [16]byte
	_, _ = rand.Read(b[6:])
	var ms [8]byte
	binary.BigEndian.PutUint64(ms[:], uint64(time.Now().UnixMilli()))
	copy(b[:6], ms[2:])
	b[6] = b[6]&0x0f | 0x70 // version 7
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return format(b)
}

func format(b [16]byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
