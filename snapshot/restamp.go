package snapshot

import (
	"bytes"
	"errors"
	"io"
)

// Restamp returns the stream in rc (size bytes long) as a stream whose
// header carries h's position and configuration instead of its own, and
// the new stream's size. The pairs are the same; the checksum is the new
// stream's. rc's own checks still hold: its pairs pass through a Decoder,
// so a damaged rc makes the restamped stream fail with the Decoder's error
// before its end record, never end cleanly.
//
// It is for a raft snapshot whose contents stand for another raft position
// than the one they were streamed at: raft's Restore of a user backup
// stores the backup under a new index, above everything in its log, and
// restores the state machine from it; the state machine, which learns its
// position only from the stream, must record raft's index, or it would
// take the backup's own, older one for a snapshot it already passed.
//
// A stream already at h's index and term is handed back byte for byte,
// without decoding it.
func Restamp(rc io.ReadCloser, size int64, h Header) (io.ReadCloser, int64, error) {
	tee := &recordingReader{r: rc}
	dec, err := NewDecoder(tee)
	if err != nil {
		return nil, 0, errors.Join(err, rc.Close())
	}
	old := dec.Header()
	if old.Index == h.Index && old.Term == h.Term {
		return &readCloser{Reader: io.MultiReader(bytes.NewReader(tee.seen), rc), Closer: rc}, size, nil
	}
	tee.seen = nil
	tee.off = true
	newSize := size - int64(len(old.Config)) + int64(len(h.Config))
	r, err := NewReader(h, &decoderIterator{Decoder: dec, closer: rc}, newSize)
	if err != nil {
		return nil, 0, err // NewReader closed the iterator, and so rc
	}
	return r, newSize, nil
}

// recordingReader keeps what it reads until off is set.
type recordingReader struct {
	r    io.Reader
	seen []byte
	off  bool
}

func (t *recordingReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if !t.off {
		t.seen = append(t.seen, p[:n]...)
	}
	return n, err
}

type readCloser struct {
	io.Reader
	io.Closer
}

// decoderIterator is a Decoder as an engines.ViewIterator whose Close
// closes the stream it decodes.
type decoderIterator struct {
	*Decoder
	closer io.Closer
}

func (d *decoderIterator) Close() error { return d.closer.Close() }
