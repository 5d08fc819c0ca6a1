package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"

	"pgregory.net/rapid"
)

// closingIter is a sliceIter with the Close a view iterator has.
type closingIter struct {
	sliceIter
	closed bool
}

func (c *closingIter) Close() error { c.closed = true; return nil }

func randomPairs(t *rapid.T) []pair {
	n := rapid.IntRange(0, 3000).Draw(t, "pairs")
	var pairs []pair
	for i := range n {
		pairs = append(pairs, pair{key: fmt.Appendf(nil, "key-%06d", i), value: rapid.SliceOfN(rapid.Byte(), 0, 300).Draw(t, "value")})
	}
	return pairs
}

func kvBytes(pairs []pair) (n uint64) {
	for _, p := range pairs {
		n += uint64(len(p.key) + len(p.value))
	}
	return n
}

// A Reader's stream is byte for byte what Encode writes, read in any
// pattern of reads or all at once through WriteTo, and StreamSize gives
// its length in advance.
func TestReaderStreamsExactlyWhatEncodeWrites(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		pairs := randomPairs(t)
		h := Header{Index: 9, Term: 2, Config: rapid.SliceOfN(rapid.Byte(), 0, 64).Draw(t, "config")}
		want := encode(t, h, pairs)
		size := StreamSize(h, uint64(len(pairs)), kvBytes(pairs))
		if size != int64(len(want)) {
			t.Fatalf("StreamSize = %d, stream has %d bytes", size, len(want))
		}
		it := &closingIter{sliceIter: sliceIter{pairs: pairs}}
		r, err := NewReader(h, it, size)
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		if rapid.Bool().Draw(t, "writeTo") {
			var buf bytes.Buffer
			// A few small reads first, then the rest in one WriteTo.
			head := make([]byte, rapid.IntRange(0, 100).Draw(t, "head"))
			n, _ := io.ReadFull(r, head)
			buf.Write(head[:n])
			if _, err := r.WriteTo(&buf); err != nil {
				t.Fatal(err)
			}
			got = buf.Bytes()
		} else {
			got, err = io.ReadAll(iotest.OneByteReader(r))
			if err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("reader gave %d bytes, Encode %d; they differ", len(got), len(want))
		}
		if err := r.Close(); err != nil || !it.closed {
			t.Fatalf("Close = %v, iterator closed %v", err, it.closed)
		}
	})
}

// Contents that are not what the size was computed from end the stream
// with ErrSizeChanged before its end record, so the receiver never sees a
// whole stream of another size.
func TestReaderRefusesToEndAStreamOfAnotherSize(t *testing.T) {
	pairs := []pair{{[]byte("a"), []byte("1")}, {[]byte("b"), []byte("2")}}
	h := Header{Index: 3, Term: 1}
	for name, size := range map[string]int64{
		"fewer":  StreamSize(h, 1, 2),
		"more":   StreamSize(h, 3, 6),
		"bigger": StreamSize(h, 2, 4) + 1,
	} {
		for _, useWriteTo := range []bool{false, true} {
			r, err := NewReader(h, &closingIter{sliceIter: sliceIter{pairs: pairs}}, size)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if useWriteTo {
				_, err = r.WriteTo(&buf)
			} else {
				_, err = io.Copy(&buf, struct{ io.Reader }{r})
			}
			if !errors.Is(err, ErrSizeChanged) {
				t.Errorf("%s (WriteTo %v): err = %v, want ErrSizeChanged", name, useWriteTo, err)
			}
			if _, _, derr := decodeAll(&buf); derr == nil {
				t.Errorf("%s (WriteTo %v): what was handed out decodes as a whole stream", name, useWriteTo)
			}
		}
	}
}
