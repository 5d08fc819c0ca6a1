package snapshot

import (
	"errors"
	"fmt"
	"io"

	"github.com/raftsnap/testbed/engines"
)

// ErrSizeChanged is returned by a Reader whose stream did not come out at
// the size it promised: the contents it was told about (StreamSize) are not
// the contents its iterator yielded.
var ErrSizeChanged = errors.New("snapshot: stream size differs from the size announced")

// StreamSize is the exact length of the version-1 stream of a header and
// pairs pairs whose keys and values add up to kvBytes bytes. hashicorp/raft
// sends a snapshot's size ahead of its body and the receiver refuses a body
// of any other length, so a snapshot produced on the fly from a view must
// know its size before its first byte.
func StreamSize(h Header, pairs, kvBytes uint64) int64 {
	return int64(headerFixedLen+len(h.Config)+endRecordLen) + int64(pairs)*pairHeaderLen + int64(kvBytes)
}

// Reader produces a version-1 stream from an iterator as it is read, in
// constant memory (one encoder chunk): the pull-side twin of Encode, for a
// raft SnapshotStore whose Open streams an engine view instead of a file.
// It checks that the stream comes out at exactly the size it was given
// (StreamSize), failing the last Read with ErrSizeChanged otherwise.
type Reader struct {
	it   engines.ViewIterator
	enc  *Encoder
	buf  chunkQueue
	size int64
	done bool
	err  error
}

// NewReader returns a Reader of the stream of h followed by it's pairs,
// which must come to size bytes in all. The Reader owns it and closes it
// in Close.
func NewReader(h Header, it engines.ViewIterator, size int64) (*Reader, error) {
	r := &Reader{it: it, size: size}
	enc, err := NewEncoder(&r.buf, h)
	if err != nil {
		return nil, errors.Join(err, it.Close())
	}
	r.enc = enc
	return r, nil
}

// chunkQueue holds encoded bytes the reader has not handed out yet, or,
// once WriteTo gave it a writer, passes them straight on.
type chunkQueue struct {
	data   []byte
	off    int
	direct io.Writer
}

func (q *chunkQueue) Write(p []byte) (int, error) {
	if q.direct != nil {
		return q.direct.Write(p)
	}
	if q.off == len(q.data) {
		q.data, q.off = q.data[:0], 0
	}
	q.data = append(q.data, p...)
	return len(p), nil
}

func (q *chunkQueue) empty() bool { return q.off == len(q.data) }

// Read fills p with the next bytes of the stream.
func (r *Reader) Read(p []byte) (int, error) {
	for r.buf.empty() {
		if r.err != nil {
			return 0, r.err
		}
		if r.done {
			return 0, io.EOF
		}
		r.produce()
	}
	n := copy(p, r.buf.data[r.buf.off:])
	r.buf.off += n
	return n, nil
}

// WriteTo writes the rest of the stream to w with no copy in between: the
// encoder's chunks go straight to w. io.Copy uses it.
func (r *Reader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	if !r.buf.empty() {
		n, err := w.Write(r.buf.data[r.buf.off:])
		r.buf.off += n
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
	if r.err != nil {
		return total, r.err
	}
	if r.done {
		return total, nil
	}
	before := r.enc.Written()
	r.buf.direct = w
	r.produce() // the queue stays empty, so this runs to the end
	r.buf.direct = nil
	return total + r.enc.Written() - before, r.err
}

// produce encodes pairs until the encoder hands over a chunk or the
// iterator ends.
func (r *Reader) produce() {
	for r.buf.empty() {
		if !r.it.Next() {
			if err := r.it.Err(); err != nil {
				r.err = fmt.Errorf("snapshot: reading source: %w", err)
				return
			}
			// Check the size before the end record leaves, so that a
			// stream of another size never ends cleanly.
			if got := r.enc.Written() + int64(len(r.enc.chunk)) + endRecordLen; got != r.size {
				r.err = fmt.Errorf("%w: announced %d bytes, produced %d", ErrSizeChanged, r.size, got)
				return
			}
			if err := r.enc.Close(); err != nil {
				r.err = err
				return
			}
			r.done = true
			return
		}
		if err := r.enc.Add(r.it.Key(), r.it.Value()); err != nil {
			r.err = err
			return
		}
		if r.enc.Written() > r.size {
			r.err = fmt.Errorf("%w: announced %d bytes, produced more", ErrSizeChanged, r.size)
			r.buf.data, r.buf.off = nil, 0
			return
		}
	}
}

// Close releases the iterator.
func (r *Reader) Close() error {
	if r.it == nil {
		return nil
	}
	err := r.it.Close()
	r.it = nil
	return err
}
