package adler

import (
	"hash/adler32"
	"math/rand/v2"
	"testing"
)

// data of every kind the lanes can overflow on: random bytes, and all 0xFF (the largest
// sums).
func inputs(n int) map[string][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, n)
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	ones := make([]byte, n)
	for i := range ones {
		ones[i] = 0xFF
	}
	return map[string][]byte{"random": random, "0xff": ones}
}

func TestChecksumMatchesTheStandardLibrary(t *testing.T) {
	for name, data := range inputs(1 << 17) {
		for n := 0; n <= len(data); n += 1 + n/13 {
			for _, off := range []int{0, 1, 7} { // unaligned starts too
				if off > n {
					continue
				}
				p := data[off:n]
				if got, want := Checksum(p), adler32.Checksum(p); got != want {
					t.Fatalf("%s, bytes %d to %d: %08x, want %08x", name, off, n, got, want)
				}
			}
		}
	}
}

func TestWritesInPiecesMatchOneWrite(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for name, data := range inputs(1 << 20) {
		for round := range 50 {
			h, want := New(), adler32.New()
			for p := data; len(p) > 0; {
				k := min(len(p), r.IntN(70000))
				h.Write(p[:k])
				want.Write(p[:k])
				p = p[k:]
			}
			if h.Sum32() != want.Sum32() || string(h.Sum(nil)) != string(want.Sum(nil)) {
				t.Fatalf("%s, round %d: %08x, want %08x", name, round, h.Sum32(), want.Sum32())
			}
		}
	}
}

func TestResetAndSizes(t *testing.T) {
	h := New()
	h.Write([]byte("Wikipedia"))
	if h.Sum32() != 0x11e60398 { // the example of the Adler-32 article
		t.Fatalf("Wikipedia: %08x, want 11e60398", h.Sum32())
	}
	h.Reset()
	if h.Sum32() != 1 || Checksum(nil) != 1 {
		t.Fatalf("empty: %08x and %08x, want 1", h.Sum32(), Checksum(nil))
	}
	if h.Size() != 4 || h.BlockSize() != adler32.New().BlockSize() {
		t.Fatalf("Size %d, BlockSize %d", h.Size(), h.BlockSize())
	}
}

func FuzzChecksumMatchesTheStandardLibrary(f *testing.F) {
	f.Add([]byte("Wikipedia"), uint16(3))
	f.Add(make([]byte, 5000), uint16(4095))
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		k := int(split) % (len(data) + 1)
		h := New()
		h.Write(data[:k])
		h.Write(data[k:])
		if want := adler32.Checksum(data); Checksum(data) != want || h.Sum32() != want {
			t.Fatalf("%d bytes split at %d: %08x and %08x, want %08x", len(data), k, Checksum(data), h.Sum32(), want)
		}
	})
}

var sink uint32

func BenchmarkChecksum(b *testing.B) {
	data := inputs(8 << 20)["random"]
	b.Run("adler", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			sink = Checksum(data)
		}
	})
	b.Run("hash/adler32", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			sink = adler32.Checksum(data)
		}
	})
}
