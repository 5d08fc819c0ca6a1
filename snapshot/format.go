// Package snapshot owns the streaming key-value snapshot format (version 1,
// specified in FORMAT.md), its Encoder and Decoder, and the glue between it
// and hashicorp/raft: an FSMSnapshot that streams an engine's point-in-time
// view into a raft sink, and Restore, which streams a snapshot back into an
// engine's atomic install. Both directions run in constant memory, whatever
// the number of keys.
package snapshot

import (
	"errors"
	"hash/crc32"

	"github.com/raftsnap/testbed/engines"
)

// Version is the format version this package writes and the only one it reads.
const Version = 1

// Magic opens every stream.
var Magic = [8]byte{'R', 'A', 'F', 'T', 'S', 'N', 'A', 'P'}

// Record tags.
const (
	tagPair byte = 0x01
	tagEnd  byte = 0x02
)

// Bounds the decoder enforces, so that a corrupt length can never make it
// allocate without limit. Keys and values share the engines' limits so that
// any engine's contents fit.
const (
	MaxKeyLen    = engines.MaxKeyLen
	MaxValueLen  = engines.MaxValueLen
	MaxConfigLen = 1 << 20
)

const (
	headerFixedLen = 8 + 4 + 4 + 8 + 8 + 4 // magic, version, flags, index, term, config length
	pairHeaderLen  = 1 + 4 + 4             // tag, key length, value length
	endRecordLen   = 1 + 8 + 4             // tag, count, crc
)

// castagnoli is the CRC32C table; the stdlib uses SSE4.2 for it on amd64.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Header is the Raft metadata a stream carries, which raft's FSM.Restore does
// not otherwise receive: the position its contents reflect and the
// configuration in force there.
type Header struct {
	Index  uint64
	Term   uint64
	Config []byte
}

// Applied converts the header into the position an engine records.
func (h Header) Applied() engines.Applied {
	return engines.Applied{Index: h.Index, Term: h.Term, Config: h.Config}
}

// HeaderFor is the header describing an engine position.
func HeaderFor(a engines.Applied) Header {
	return Header{Index: a.Index, Term: a.Term, Config: a.Config}
}

// Errors the decoder returns, each wrapped with detail; test with errors.Is.
// The decoder returns them before its last pair is consumed as valid, so an
// install that checks the source's Err commits nothing from a bad stream.
var (
	// ErrBadMagic: the stream does not start with Magic.
	ErrBadMagic = errors.New("snapshot: not a snapshot stream (bad magic)")
	// ErrUnsupportedVersion: a format version this package cannot read,
	// or reserved header flags set.
	ErrUnsupportedVersion = errors.New("snapshot: unsupported format version")
	// ErrTruncated: the stream ended before its end record.
	ErrTruncated = errors.New("snapshot: truncated stream")
	// ErrChecksum: the CRC32C in the end record does not match the stream.
	ErrChecksum = errors.New("snapshot: checksum mismatch")
	// ErrCount: the end record's pair count does not match the pairs read.
	ErrCount = errors.New("snapshot: record count mismatch")
	// ErrKeyOrder: keys not strictly increasing. It is the engines' own
	// sentinel, so either package's name matches.
	ErrKeyOrder = engines.ErrKeyOrder
	// ErrTooLarge: a key, value or configuration length beyond the bounds
	// above, or a zero-length key.
	ErrTooLarge = errors.New("snapshot: absurd length")
	// ErrBadRecord: an unknown record tag.
	ErrBadRecord = errors.New("snapshot: unknown record tag")
	// ErrTrailingData: bytes after the end record.
	ErrTrailingData = errors.New("snapshot: data after end record")
)
