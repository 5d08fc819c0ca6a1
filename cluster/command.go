package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Op is what a Command does.
type Op uint8

const (
	// OpSet stores Value under Key.
	OpSet Op = iota + 1
	// OpDelete removes Key.
	OpDelete
	// OpGet reads Key through the log, so the read is linearizable.
	OpGet
	// OpCAS stores Value under Key only if the current value equals
	// Expected (or, with ExpectAbsent, if the key is absent).
	OpCAS
)

func (o Op) String() string {
	switch o {
	case OpSet:
		return "set"
	case OpDelete:
		return "delete"
	case OpGet:
		return "get"
	case OpCAS:
		return "cas"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Command is one client operation as it travels through the Raft log.
type Command struct {
	Op           Op
	Key          []byte
	Value        []byte
	Expected     []byte
	ExpectAbsent bool
}

// Result is what applying a Command returns through raft's ApplyFuture.
type Result struct {
	// Value and Found are the key's value before the command (for a get,
	// its value).
	Value []byte
	Found bool
	// Swapped reports whether a CAS stored its value.
	Swapped bool
	// Index is the log index at which the command was applied.
	Index uint64
}

const commandVersion = 1

// ErrBadCommand is returned for a log entry that does not decode.
var ErrBadCommand = errors.New("cluster: malformed command")

// Encode serializes c: a version byte, the op, a flags byte, then key,
// value and expected value, each with a little-endian u32 length.
func (c Command) Encode() []byte {
	b := make([]byte, 0, 3+12+len(c.Key)+len(c.Value)+len(c.Expected))
	var flags byte
	if c.ExpectAbsent {
		flags |= 1
	}
	b = append(b, commandVersion, byte(c.Op), flags)
	for _, field := range [][]byte{c.Key, c.Value, c.Expected} {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(field)))
		b = append(b, field...)
	}
	return b
}

// DecodeCommand parses what Encode wrote. The returned slices alias data.
func DecodeCommand(data []byte) (Command, error) {
	if len(data) < 3 || data[0] != commandVersion {
		return Command{}, fmt.Errorf("%w: bad header", ErrBadCommand)
	}
	c := Command{Op: Op(data[1]), ExpectAbsent: data[2]&1 != 0}
	if c.Op < OpSet || c.Op > OpCAS || data[2]&^1 != 0 {
		return Command{}, fmt.Errorf("%w: op %d, flags %#x", ErrBadCommand, data[1], data[2])
	}
	rest := data[3:]
	fields := []*[]byte{&c.Key, &c.Value, &c.Expected}
	for _, f := range fields {
		if len(rest) < 4 {
			return Command{}, fmt.Errorf("%w: truncated", ErrBadCommand)
		}
		n := binary.LittleEndian.Uint32(rest)
		rest = rest[4:]
		if uint64(n) > uint64(len(rest)) {
			return Command{}, fmt.Errorf("%w: truncated", ErrBadCommand)
		}
		*f = rest[:n:n]
		rest = rest[n:]
	}
	if len(rest) != 0 {
		return Command{}, fmt.Errorf("%w: %d trailing bytes", ErrBadCommand, len(rest))
	}
	return c, nil
}
