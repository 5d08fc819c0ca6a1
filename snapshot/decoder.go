package snapshot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
)

// readBufSize is the decoder's window over the stream. Pairs that fit are
// served from it without copying; larger ones go through a scratch buffer
// that grows only as their bytes actually arrive, so a corrupt length cannot
// make the decoder allocate more than the stream delivers.
const readBufSize = 256 << 10

// Decoder reads a version-1 stream from any io.Reader in constant memory.
// It is an engines.Iterator over the stream's pairs, so it can feed an
// engine's Install directly: Next returns false either at a verified end
// record (Err is nil) or at the first problem (Err says which). Because the
// checksum, count and trailing-data checks happen before Next reports the
// end, a consumer that commits only after a clean end never commits a bad
// stream.
type Decoder struct {
	r      io.Reader
	buf    []byte
	start  int // first unread byte in buf
	end    int // end of valid data in buf
	crcPos int // buf[:crcPos] is already folded into crc (crcPos <= start)
	crc    uint32
	eof    bool
	// emptyReads counts consecutive reads that returned nothing.
	emptyReads int

	header  Header
	key     []byte
	value   []byte
	scratch []byte
	lastKey []byte
	count   uint64
	kvBytes uint64
	done    bool
	err     error
}

// NewDecoder reads and checks the header of the stream in r. Errors are
// those listed in this package (ErrBadMagic, ErrUnsupportedVersion,
// ErrTruncated, ErrTooLarge) or the reader's own.
func NewDecoder(r io.Reader) (*Decoder, error) {
	d := &Decoder{r: r, buf: make([]byte, readBufSize)}
	if err := d.readHeader(); err != nil {
		return nil, err
	}
	return d, nil
}

// Header is the stream's Raft metadata.
func (d *Decoder) Header() Header { return d.header }

// Count is the number of pairs read so far.
func (d *Decoder) Count() uint64 { return d.count }

// KVBytes is the number of key and value bytes of the pairs read so far;
// with Count it gives the stream's size (StreamSize).
func (d *Decoder) KVBytes() uint64 { return d.kvBytes }

// Key is the current pair's key, valid until the next call to Next.
func (d *Decoder) Key() []byte { return d.key }

// Value is the current pair's value, valid until the next call to Next.
func (d *Decoder) Value() []byte { return d.value }

// Err is nil after a clean, verified end of stream, and otherwise the error
// that stopped the decoder.
func (d *Decoder) Err() error { return d.err }

// Next advances to the next pair. It returns false at the verified end of
// the stream or on error.
func (d *Decoder) Next() bool {
	if d.done {
		return false
	}
	d.key, d.value = nil, nil
	ok, err := d.next()
	if err != nil {
		d.err = err
		d.done = true
		return false
	}
	if !ok {
		d.done = true
	}
	return ok
}

func (d *Decoder) next() (bool, error) {
	tag, err := d.read(1)
	if err != nil {
		return false, err
	}
	switch tag[0] {
	case tagPair:
		lens, err := d.read(8)
		if err != nil {
			return false, err
		}
		keyLen := binary.LittleEndian.Uint32(lens[0:4])
		valueLen := binary.LittleEndian.Uint32(lens[4:8])
		if keyLen == 0 || keyLen > MaxKeyLen || valueLen > MaxValueLen {
			return false, fmt.Errorf("%w: pair %d has key of %d bytes, value of %d bytes", ErrTooLarge, d.count, keyLen, valueLen)
		}
		kv, err := d.read(int(keyLen) + int(valueLen))
		if err != nil {
			return false, err
		}
		key, value := kv[:keyLen:keyLen], kv[keyLen:]
		if d.count > 0 && bytes.Compare(key, d.lastKey) <= 0 {
			return false, fmt.Errorf("%w: pair %d key %q after %q", ErrKeyOrder, d.count, key, d.lastKey)
		}
		d.lastKey = append(d.lastKey[:0], key...)
		d.key, d.value = key, value
		d.count++
		d.kvBytes += uint64(len(kv))
		return true, nil
	case tagEnd:
		countBytes, err := d.read(8)
		if err != nil {
			return false, err
		}
		count := binary.LittleEndian.Uint64(countBytes)
		d.foldCRC()
		crcBytes, err := d.read(4)
		if err != nil {
			return false, err
		}
		d.crcPos = d.start // the stored CRC is not part of what it covers
		if want := binary.LittleEndian.Uint32(crcBytes); want != d.crc {
			return false, fmt.Errorf("%w: stream has %08x, computed %08x", ErrChecksum, want, d.crc)
		}
		if count != d.count {
			return false, fmt.Errorf("%w: end record says %d pairs, read %d", ErrCount, count, d.count)
		}
		if err := d.fill(1); err == nil {
			return false, fmt.Errorf("%w", ErrTrailingData)
		} else if !errors.Is(err, ErrTruncated) {
			return false, err
		}
		return false, nil
	default:
		return false, fmt.Errorf("%w: 0x%02x after pair %d", ErrBadRecord, tag[0], d.count)
	}
}

func (d *Decoder) readHeader() error {
	if err := d.fill(len(Magic)); err != nil {
		if errors.Is(err, ErrTruncated) && !bytes.HasPrefix(Magic[:], d.buf[d.start:d.end]) {
			return ErrBadMagic
		}
		return err
	}
	if !bytes.Equal(d.buf[d.start:d.start+len(Magic)], Magic[:]) {
		return ErrBadMagic
	}
	fixed, err := d.read(headerFixedLen)
	if err != nil {
		return err
	}
	version := binary.LittleEndian.Uint32(fixed[8:12])
	flags := binary.LittleEndian.Uint32(fixed[12:16])
	if version != Version || flags != 0 {
		return fmt.Errorf("%w: version %d, flags %#x (this reader knows version %d, no flags)", ErrUnsupportedVersion, version, flags, Version)
	}
	d.header.Index = binary.LittleEndian.Uint64(fixed[16:24])
	d.header.Term = binary.LittleEndian.Uint64(fixed[24:32])
	configLen := binary.LittleEndian.Uint32(fixed[32:36])
	if configLen > MaxConfigLen {
		return fmt.Errorf("%w: configuration of %d bytes", ErrTooLarge, configLen)
	}
	if configLen > 0 {
		config, err := d.read(int(configLen))
		if err != nil {
			return err
		}
		d.header.Config = bytes.Clone(config)
	}
	return nil
}

// read consumes the next n bytes and returns them, valid until the next
// read. It reports ErrTruncated if the stream ends first.
func (d *Decoder) read(n int) ([]byte, error) {
	if n <= len(d.buf) {
		if err := d.fill(n); err != nil {
			return nil, err
		}
		p := d.buf[d.start : d.start+n]
		d.start += n
		return p, nil
	}
	// Larger than the window: assemble in scratch, growing it only as
	// bytes arrive.
	d.foldCRC()
	d.scratch = d.scratch[:0]
	take := min(n, d.end-d.start)
	d.scratch = append(d.scratch, d.buf[d.start:d.start+take]...)
	d.start += take
	d.crcPos = d.start
	for len(d.scratch) < n {
		if d.eof {
			return nil, fmt.Errorf("%w: needed %d more bytes", ErrTruncated, n-len(d.scratch))
		}
		if len(d.scratch) == cap(d.scratch) {
			d.scratch = slices.Grow(d.scratch, min(n, max(2*cap(d.scratch), readBufSize))-len(d.scratch))
		}
		m, err := d.r.Read(d.scratch[len(d.scratch):min(n, cap(d.scratch))])
		d.scratch = d.scratch[:len(d.scratch)+m]
		if err := d.readResult(m, err); err != nil {
			return nil, err
		}
	}
	d.crc = crc32.Update(d.crc, castagnoli, d.scratch)
	return d.scratch, nil
}

// fill makes at least n unread bytes available in the window (n <= its
// size), folding consumed bytes into the CRC before they are discarded.
func (d *Decoder) fill(n int) error {
	if d.end-d.start >= n {
		return nil
	}
	d.foldCRC()
	if d.start > 0 {
		d.end = copy(d.buf, d.buf[d.start:d.end])
		d.start, d.crcPos = 0, 0
	}
	for d.end < n {
		if d.eof {
			return fmt.Errorf("%w: needed %d more bytes", ErrTruncated, n-d.end)
		}
		m, err := d.r.Read(d.buf[d.end:])
		d.end += m
		if err := d.readResult(m, err); err != nil {
			return err
		}
	}
	return nil
}

// readResult interprets one Read: EOF marks the end of input; a reader
// that keeps returning nothing without an error would spin forever, so it
// gets io.ErrNoProgress like bufio gives it.
func (d *Decoder) readResult(n int, err error) error {
	switch {
	case err == io.EOF:
		d.eof = true
	case err != nil:
		return fmt.Errorf("snapshot: reading stream: %w", err)
	case n == 0:
		d.emptyReads++
		if d.emptyReads >= 100 {
			return fmt.Errorf("snapshot: reading stream: %w", io.ErrNoProgress)
		}
		return nil
	}
	d.emptyReads = 0
	return nil
}

// foldCRC adds the consumed bytes not yet checksummed to the CRC.
func (d *Decoder) foldCRC() {
	if d.start > d.crcPos {
		d.crc = crc32.Update(d.crc, castagnoli, d.buf[d.crcPos:d.start])
		d.crcPos = d.start
	}
}
