package fuzz

import (
	"encoding/binary"
)

// minPayload is the smallest payload a history writes: an id and a length.
const minPayload = 12

// payloadMagic is mixed into every payload byte so that zeros or stale
// bytes never decode as a record.
const payloadMagic = 0x9e3779b97f4a7c15

// makePayload returns the payload of record id, n bytes (n >= minPayload):
// the id, the length, then bytes derived from both. Every byte depends on the
// id, so a record that is not exactly what was appended is told apart.
func makePayload(id uint64, n int) []byte {
	p := make([]byte, n)
	fillPayload(p, id)
	return p
}

func fillPayload(p []byte, id uint64) {
	binary.LittleEndian.PutUint64(p, id)
	binary.LittleEndian.PutUint32(p[8:], uint32(len(p)))
	x := id*payloadMagic + uint64(len(p))
	for i := minPayload; i < len(p); i += 8 {
		x ^= x >> 31
		x *= 0xbf58476d1ce4e5b9
		x ^= x >> 29
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], x)
		copy(p[i:], w[:])
	}
}

// payloadID returns the id a payload claims and whether the payload is
// exactly the one makePayload gives for that id and length.
func payloadID(p []byte) (uint64, bool) {
	if len(p) < minPayload {
		return 0, false
	}
	id := binary.LittleEndian.Uint64(p)
	if binary.LittleEndian.Uint32(p[8:]) != uint32(len(p)) {
		return id, false
	}
	x := id*payloadMagic + uint64(len(p))
	for i := minPayload; i < len(p); i += 8 {
		x ^= x >> 31
		x *= 0xbf58476d1ce4e5b9
		x ^= x >> 29
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], x)
		if string(p[i:min(i+8, len(p))]) != string(w[:min(8, len(p)-i)]) {
			return id, false
		}
	}
	return id, true
}
