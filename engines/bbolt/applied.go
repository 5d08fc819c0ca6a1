package bbolt

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/raftsnap/testbed/engines"
)

// appliedVersion is the first byte of an encoded Applied. A reader that meets
// another version refuses it rather than guessing at its layout.
const appliedVersion = 1

// appliedHeaderLen is the fixed part of an encoded Applied: version byte,
// index, term and the config length.
const appliedHeaderLen = 1 + 8 + 8 + 4

// encodeApplied lays an Applied out as
//
//	version (1 byte) | index (u64 LE) | term (u64 LE) | len(config) (u32 LE) | config
//
// An empty config and a nil one encode alike; decodeApplied returns nil.
func encodeApplied(a engines.Applied) ([]byte, error) {
	if len(a.Config) > math.MaxUint32 || len(a.Config) > engines.MaxValueLen {
		return nil, fmt.Errorf("bbolt: applied config of %d bytes: %w", len(a.Config), engines.ErrTooLarge)
	}
	buf := make([]byte, appliedHeaderLen, appliedHeaderLen+len(a.Config))
	buf[0] = appliedVersion
	binary.LittleEndian.PutUint64(buf[1:], a.Index)
	binary.LittleEndian.PutUint64(buf[9:], a.Term)
	binary.LittleEndian.PutUint32(buf[17:], uint32(len(a.Config)))
	return append(buf, a.Config...), nil
}

// decodeApplied parses what encodeApplied wrote. It copies the config, so
// the result outlives the transaction buf came from. Anything but exactly
// one well-formed record is ErrCorrupt.
func decodeApplied(buf []byte) (engines.Applied, error) {
	if len(buf) < appliedHeaderLen {
		return engines.Applied{}, fmt.Errorf("bbolt: applied record of %d bytes: %w", len(buf), ErrCorrupt)
	}
	if buf[0] != appliedVersion {
		return engines.Applied{}, fmt.Errorf("bbolt: applied record version %d: %w", buf[0], ErrCorrupt)
	}
	n := binary.LittleEndian.Uint32(buf[17:])
	if uint64(len(buf)-appliedHeaderLen) != uint64(n) {
		return engines.Applied{}, fmt.Errorf("bbolt: applied record says %d config bytes, has %d: %w",
			n, len(buf)-appliedHeaderLen, ErrCorrupt)
	}
	a := engines.Applied{
		Index: binary.LittleEndian.Uint64(buf[1:]),
		Term:  binary.LittleEndian.Uint64(buf[9:]),
	}
	if n > 0 {
		a.Config = append([]byte(nil), buf[appliedHeaderLen:]...)
	}
	return a, nil
}
