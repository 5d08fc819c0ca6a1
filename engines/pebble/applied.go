package pebble

import (
	"encoding/binary"
	"fmt"

	"github.com/raftsnap/testbed/engines"
)

// The applied position is stored as
//
//	version (1 byte) | index (8, LE) | term (8, LE) | config length (4, LE) | config
//
// The version byte lets a later layout be told apart from this one; decoding
// demands the exact length so that garbage is reported, not half-read.
const (
	appliedVersion   = 1
	appliedHeaderLen = 1 + 8 + 8 + 4
)

func encodeApplied(a engines.Applied) ([]byte, error) {
	if len(a.Config) > engines.MaxValueLen {
		return nil, fmt.Errorf("%w: configuration of %d bytes", engines.ErrTooLarge, len(a.Config))
	}
	b := make([]byte, appliedHeaderLen, appliedHeaderLen+len(a.Config))
	b[0] = appliedVersion
	binary.LittleEndian.PutUint64(b[1:], a.Index)
	binary.LittleEndian.PutUint64(b[9:], a.Term)
	binary.LittleEndian.PutUint32(b[17:], uint32(len(a.Config)))
	return append(b, a.Config...), nil
}

// decodeApplied decodes b into a position that shares no memory with b.
func decodeApplied(b []byte) (engines.Applied, error) {
	if len(b) < appliedHeaderLen {
		return engines.Applied{}, fmt.Errorf("%w: %d bytes, want at least %d", ErrCorrupt, len(b), appliedHeaderLen)
	}
	if b[0] != appliedVersion {
		return engines.Applied{}, fmt.Errorf("%w: version %d, want %d", ErrCorrupt, b[0], appliedVersion)
	}
	n := binary.LittleEndian.Uint32(b[17:])
	if uint64(len(b)-appliedHeaderLen) != uint64(n) {
		return engines.Applied{}, fmt.Errorf("%w: configuration length %d, record holds %d", ErrCorrupt, n, len(b)-appliedHeaderLen)
	}
	a := engines.Applied{
		Index: binary.LittleEndian.Uint64(b[1:]),
		Term:  binary.LittleEndian.Uint64(b[9:]),
	}
	if n > 0 {
		a.Config = append([]byte(nil), b[appliedHeaderLen:]...)
	}
	return a, nil
}
