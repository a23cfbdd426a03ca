package fuzz

import (
	"encoding/binary"
	"math/rand/v2"
)

// Source is where a history and its crash choices come from: a seeded
// generator for exploration, or the bytes of a fuzz input.
type Source interface {
	// Intn returns a value in [0, n); n must be positive.
	Intn(n int) int
}

// rngSource draws from a PCG generator.
type rngSource struct{ r *rand.Rand }

func newRNG(seed, stream uint64) rngSource {
	return rngSource{rand.New(rand.NewPCG(seed, stream))}
}

func (s rngSource) Intn(n int) int { return s.r.IntN(n) }

// byteSource decodes values from a fuzz input: one byte for n <= 256, two for
// n <= 65536, four above. Once the input is used up it yields zeros, so every
// input, however short, decodes to a (small) history.
type byteSource struct {
	b []byte
}

func (s *byteSource) Intn(n int) int {
	if n <= 1 {
		return 0
	}
	var v uint64
	switch {
	case n <= 1<<8:
		v = uint64(s.take(1)[0])
	case n <= 1<<16:
		v = uint64(binary.LittleEndian.Uint16(s.take(2)))
	default:
		v = uint64(binary.LittleEndian.Uint32(s.take(4)))
	}
	return int(v % uint64(n))
}

func (s *byteSource) take(k int) []byte {
	var out [4]byte
	n := copy(out[:k], s.b)
	s.b = s.b[n:]
	return out[:k]
}

// chance is true with probability num/den.
func chance(s Source, num, den int) bool { return s.Intn(den) < num }

// between returns a value in [lo, hi].
func between(s Source, lo, hi int) int {
	if hi <= lo {
		return lo
	}
	return lo + s.Intn(hi-lo+1)
}
