package logstore

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Encoding of one raft.Log, version 1:
//
//	version  1 byte (= 1)
//	flags    1 byte: bit 0 AppendedAt set, bit 1 Data non-nil, bit 2 Extensions non-nil
//	index    8 bytes big-endian
//	term     8 bytes big-endian
//	type     1 byte
//	[appendedAt  8 bytes big-endian int64 UnixNano]  if bit 0
//	data     uvarint length, bytes
//	ext      uvarint length, bytes
//
// Nothing may follow. The flags keep nil and empty slices apart and a zero
// AppendedAt zero, so that an entry reads back exactly as it was stored.
// AppendedAt keeps its instant, not its location or monotonic reading, and
// must lie within UnixNano's range (years 1678-2262), as time.Now does.
const (
	codecVersion = 1

	flagAppendedAt = 1 << 0
	flagData       = 1 << 1
	flagExtensions = 1 << 2
	knownFlags     = flagAppendedAt | flagData | flagExtensions

	fixedHeaderLen = 1 + 1 + 8 + 8 + 1
)

// appendLog appends the encoding of l to buf.
func appendLog(buf []byte, l *raft.Log) []byte {
	var flags byte
	if !l.AppendedAt.IsZero() {
		flags |= flagAppendedAt
	}
	if l.Data != nil {
		flags |= flagData
	}
	if l.Extensions != nil {
		flags |= flagExtensions
	}
	buf = append(buf, codecVersion, flags)
	buf = binary.BigEndian.AppendUint64(buf, l.Index)
	buf = binary.BigEndian.AppendUint64(buf, l.Term)
	buf = append(buf, byte(l.Type))
	if flags&flagAppendedAt != 0 {
		buf = binary.BigEndian.AppendUint64(buf, uint64(l.AppendedAt.UnixNano()))
	}
	buf = binary.AppendUvarint(buf, uint64(len(l.Data)))
	buf = append(buf, l.Data...)
	buf = binary.AppendUvarint(buf, uint64(len(l.Extensions)))
	buf = append(buf, l.Extensions...)
	return buf
}

// decodeLog decodes buf into l, copying every slice out of buf. Any
// malformed input returns an error wrapping ErrCorrupt and leaves l unset.
func decodeLog(buf []byte, l *raft.Log) error {
	if len(buf) < fixedHeaderLen {
		return fmt.Errorf("%w: log record of %d bytes is shorter than its header", ErrCorrupt, len(buf))
	}
	if buf[0] != codecVersion {
		return fmt.Errorf("%w: log record version %d, want %d", ErrCorrupt, buf[0], codecVersion)
	}
	flags := buf[1]
	if flags&^knownFlags != 0 {
		return fmt.Errorf("%w: log record flags %#x", ErrCorrupt, flags)
	}
	var out raft.Log
	out.Index = binary.BigEndian.Uint64(buf[2:])
	out.Term = binary.BigEndian.Uint64(buf[10:])
	out.Type = raft.LogType(buf[18])
	rest := buf[fixedHeaderLen:]
	if flags&flagAppendedAt != 0 {
		if len(rest) < 8 {
			return fmt.Errorf("%w: log record truncated in AppendedAt", ErrCorrupt)
		}
		out.AppendedAt = time.Unix(0, int64(binary.BigEndian.Uint64(rest)))
		rest = rest[8:]
	}
	var err error
	if out.Data, rest, err = decodeBytes(rest, flags&flagData != 0, "data"); err != nil {
		return err
	}
	if out.Extensions, rest, err = decodeBytes(rest, flags&flagExtensions != 0, "extensions"); err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d trailing bytes after log record", ErrCorrupt, len(rest))
	}
	*l = out
	return nil
}

// decodeBytes reads one length-prefixed field and returns a copy of it (nil
// when the field was nil at encoding) and what follows it.
func decodeBytes(buf []byte, present bool, field string) (val, rest []byte, err error) {
	n, w := binary.Uvarint(buf)
	if w <= 0 {
		return nil, nil, fmt.Errorf("%w: bad %s length", ErrCorrupt, field)
	}
	buf = buf[w:]
	if n > uint64(len(buf)) {
		return nil, nil, fmt.Errorf("%w: %s length %d exceeds the %d bytes left", ErrCorrupt, field, n, len(buf))
	}
	if !present {
		if n != 0 {
			return nil, nil, fmt.Errorf("%w: absent %s has length %d", ErrCorrupt, field, n)
		}
		return nil, buf, nil
	}
	return append([]byte{}, buf[:n]...), buf[n:], nil
}
