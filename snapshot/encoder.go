package snapshot

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/raftsnap/testbed/engines"
)

// chunkSize is how many encoded bytes the encoder gathers before it
// checksums and writes them in one go. Checksumming per field through a
// bufio.Writer measured 0.6-0.7x of raw iteration; one CRC per chunk keeps
// the stream within a few percent of it.
const chunkSize = 256 << 10

// Encoder writes a version-1 stream to any io.Writer in constant memory:
// a chunk buffer and a copy of the last key. Call Add for each pair in
// strictly increasing key order, then Close to write the end record. An
// Encoder that returned an error must not be used further.
type Encoder struct {
	w     io.Writer
	chunk []byte
	crc   uint32
	count uint64
	// The last key added is at chunk[lastKeyAt:lastKeyAt+lastKeyLen], or,
	// when lastKeyAt is -1, in lastKey (copied when the chunk is flushed).
	lastKeyAt, lastKeyLen int
	lastKey               []byte
	// prevPrefix is the first eight bytes of the last key (big-endian), 0
	// if it is shorter.
	prevPrefix uint64
	written    int64
	err        error
}

// NewEncoder writes the header for h to w and returns an encoder for the
// pairs that follow.
func NewEncoder(w io.Writer, h Header) (*Encoder, error) {
	if len(h.Config) > MaxConfigLen {
		return nil, fmt.Errorf("%w: configuration of %d bytes", ErrTooLarge, len(h.Config))
	}
	e := &Encoder{w: w, chunk: make([]byte, 0, chunkSize), lastKeyAt: -1}
	e.chunk = append(e.chunk, Magic[:]...)
	e.chunk = binary.LittleEndian.AppendUint32(e.chunk, Version)
	e.chunk = binary.LittleEndian.AppendUint32(e.chunk, 0) // flags, reserved
	e.chunk = binary.LittleEndian.AppendUint64(e.chunk, h.Index)
	e.chunk = binary.LittleEndian.AppendUint64(e.chunk, h.Term)
	e.chunk = binary.LittleEndian.AppendUint32(e.chunk, uint32(len(h.Config)))
	if len(h.Config) > cap(e.chunk)-len(e.chunk) {
		if err := e.flush(); err != nil {
			return nil, err
		}
		if err := e.writeDirect(h.Config); err != nil {
			return nil, err
		}
	} else {
		e.chunk = append(e.chunk, h.Config...)
	}
	return e, nil
}

// Add appends one pair. Keys must be non-empty, strictly increasing and
// within the format's bounds; the encoder checks, so that it never writes a
// stream the decoder would refuse.
func (e *Encoder) Add(key, value []byte) error {
	if e.err != nil {
		return e.err
	}
	if len(key) == 0 || len(key) > MaxKeyLen || len(value) > MaxValueLen {
		return e.fail(fmt.Errorf("%w: key of %d bytes, value of %d bytes", ErrTooLarge, len(key), len(value)))
	}
	// Order check: random keys almost always differ in their first eight
	// bytes, which one integer comparison against the previous key's
	// prefix decides; otherwise compare the whole keys.
	var prefix uint64
	if len(key) >= 8 {
		prefix = binary.BigEndian.Uint64(key)
	}
	if e.count > 0 && (len(key) < 8 || e.prevPrefix == 0 || prefix <= e.prevPrefix) && !after(key, e.prevKey()) {
		return e.fail(fmt.Errorf("%w: %q after %q", ErrKeyOrder, key, e.prevKey()))
	}
	e.prevPrefix = prefix
	e.count++

	need := pairHeaderLen + len(key) + len(value)
	if need > cap(e.chunk)-len(e.chunk) {
		if err := e.flush(); err != nil {
			return err
		}
	}
	if need <= cap(e.chunk)-len(e.chunk) {
		// The common case: the pair goes into the chunk, and its key stays
		// there for the next order check.
		n := len(e.chunk)
		rec := e.chunk[n : n+need]
		e.chunk = e.chunk[:n+need]
		rec[0] = tagPair
		binary.LittleEndian.PutUint32(rec[1:5], uint32(len(key)))
		binary.LittleEndian.PutUint32(rec[5:9], uint32(len(value)))
		body := rec[pairHeaderLen:]
		if len(key) == 16 {
			// The common key size copies without a call to memmove.
			*(*[16]byte)(body) = [16]byte(key)
		} else {
			copy(body, key)
		}
		copy(body[len(key):], value)
		e.lastKeyAt, e.lastKeyLen = n+pairHeaderLen, len(key)
		return nil
	}
	// A pair larger than a chunk goes straight through, so memory stays
	// bounded by the chunk and not by the largest value.
	e.lastKey = append(e.lastKey[:0], key...)
	e.lastKeyAt = -1
	var head [pairHeaderLen]byte
	head[0] = tagPair
	binary.LittleEndian.PutUint32(head[1:], uint32(len(key)))
	binary.LittleEndian.PutUint32(head[5:], uint32(len(value)))
	if err := e.writeDirect(head[:]); err != nil {
		return err
	}
	if err := e.writeDirect(key); err != nil {
		return err
	}
	return e.writeDirect(value)
}

// prevKey is the last key added: inside the chunk while it is there,
// otherwise the copy taken when the chunk was flushed.
func (e *Encoder) prevKey() []byte {
	if e.lastKeyAt >= 0 {
		return e.chunk[e.lastKeyAt : e.lastKeyAt+e.lastKeyLen]
	}
	return e.lastKey
}

// after reports whether key sorts strictly after prev. Random keys almost
// always differ in their first eight bytes, which one integer comparison
// decides; otherwise bytes.Compare does.
func after(key, prev []byte) bool {
	if len(key) >= 8 && len(prev) >= 8 {
		a, b := binary.BigEndian.Uint64(key), binary.BigEndian.Uint64(prev)
		if a != b {
			return a > b
		}
	}
	return bytes.Compare(key, prev) > 0
}

// Close writes the end record (pair count and CRC32C of everything before
// the CRC) and flushes. It does not close the underlying writer.
func (e *Encoder) Close() error {
	if e.err != nil {
		return e.err
	}
	e.chunk = append(e.chunk, tagEnd)
	e.chunk = binary.LittleEndian.AppendUint64(e.chunk, e.count)
	e.crc = crc32.Update(e.crc, castagnoli, e.chunk)
	e.chunk = binary.LittleEndian.AppendUint32(e.chunk, e.crc)
	if err := e.write(e.chunk); err != nil {
		return err
	}
	e.chunk = e.chunk[:0]
	e.err = errClosed
	return nil
}

var errClosed = fmt.Errorf("snapshot: encoder closed")

// Count is the number of pairs added so far.
func (e *Encoder) Count() uint64 { return e.count }

// Written is the number of bytes handed to the writer so far.
func (e *Encoder) Written() int64 { return e.written }

func (e *Encoder) flush() error {
	if len(e.chunk) == 0 {
		return nil
	}
	if e.lastKeyAt >= 0 {
		e.lastKey = append(e.lastKey[:0], e.prevKey()...)
		e.lastKeyAt = -1
	}
	e.crc = crc32.Update(e.crc, castagnoli, e.chunk)
	err := e.write(e.chunk)
	e.chunk = e.chunk[:0]
	return err
}

func (e *Encoder) writeDirect(p []byte) error {
	e.crc = crc32.Update(e.crc, castagnoli, p)
	return e.write(p)
}

func (e *Encoder) write(p []byte) error {
	n, err := e.w.Write(p)
	e.written += int64(n)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return e.fail(err)
	}
	return nil
}

func (e *Encoder) fail(err error) error {
	e.err = err
	return err
}

// Stats describes an encoded stream.
type Stats struct {
	Pairs uint64
	Bytes int64
}

// Encode writes a whole stream: h, then every pair of it, then the end
// record. It stops at the first error, including it.Err().
func Encode(w io.Writer, h Header, it engines.Iterator) (Stats, error) {
	e, err := NewEncoder(w, h)
	if err != nil {
		return Stats{}, err
	}
	for it.Next() {
		if err := e.Add(it.Key(), it.Value()); err != nil {
			return Stats{e.count, e.written}, err
		}
	}
	if err := it.Err(); err != nil {
		return Stats{e.count, e.written}, fmt.Errorf("snapshot: reading source: %w", err)
	}
	err = e.Close()
	return Stats{e.count, e.written}, err
}
