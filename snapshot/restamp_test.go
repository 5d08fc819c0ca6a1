package snapshot

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"pgregory.net/rapid"
)

type closeCounter struct {
	io.Reader
	closed int
}

func (c *closeCounter) Close() error { c.closed++; return nil }

// A restamped stream is exactly the stream Encode writes for the new
// header and the same pairs, of the size Restamp reports; a stream already
// at the new position comes back byte for byte. Closing it closes the
// source.
func TestRestampIsTheEncodingOfTheNewHeaderAndTheSamePairs(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		pairs := genPairs(t, 100)
		old, h := genHeader(t), genHeader(t)
		if rapid.Bool().Draw(t, "same position") {
			h.Index, h.Term = old.Index, old.Term
		}
		src := encode(t, old, pairs)
		want := encode(t, h, pairs)
		if h.Index == old.Index && h.Term == old.Term {
			want = src
		}
		cc := &closeCounter{Reader: &chunkedReader{data: bytes.Clone(src), sizes: rapid.SliceOf(rapid.IntRange(1, 50)).Draw(t, "reads")}}
		rc, size, err := Restamp(cc, int64(len(src)), h)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) || size != int64(len(want)) {
			t.Fatalf("restamped stream differs from the encoding of the new header (size %d, %d bytes, want %d)", size, len(got), len(want))
		}
		if err := rc.Close(); err != nil || cc.closed != 1 {
			t.Fatalf("close: %v, source closed %d times", err, cc.closed)
		}
	})
}

// A damaged source never yields a restamped stream that ends cleanly: the
// error of the source's checks comes out of the read.
func TestRestampOfADamagedStreamFails(t *testing.T) {
	pairs := []pair{{[]byte("a"), []byte("1")}, {[]byte("b"), []byte("2")}}
	src := encode(t, Header{Index: 5, Term: 1}, pairs)
	src[len(src)-6] ^= 0xff // inside the end record's count
	rc, _, err := Restamp(io.NopCloser(bytes.NewReader(src)), int64(len(src)), Header{Index: 50, Term: 3})
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	if err == nil {
		t.Fatal("a damaged stream was restamped into one that reads to the end")
	}
	if !errors.Is(err, ErrCount) && !errors.Is(err, ErrChecksum) {
		t.Fatalf("error %v, want the decoder's", err)
	}
	if _, _, err := Restamp(io.NopCloser(bytes.NewReader([]byte("garbage"))), 7, Header{Index: 1}); err == nil {
		t.Fatal("a stream with no header was restamped")
	}
}
