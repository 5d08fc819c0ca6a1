package snapshot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"testing"
	"testing/iotest"

	"pgregory.net/rapid"
)

type pair struct{ key, value []byte }

// sliceIter is an engines.Iterator over pairs held in memory.
type sliceIter struct {
	pairs []pair
	i     int
}

func (s *sliceIter) Next() bool    { s.i++; return s.i <= len(s.pairs) }
func (s *sliceIter) Key() []byte   { return s.pairs[s.i-1].key }
func (s *sliceIter) Value() []byte { return s.pairs[s.i-1].value }
func (s *sliceIter) Err() error    { return nil }

func encode(t interface{ Fatalf(string, ...any) }, h Header, pairs []pair) []byte {
	var buf bytes.Buffer
	if _, err := Encode(&buf, h, &sliceIter{pairs: pairs}); err != nil {
		t.Fatalf("encode: %v", err)
	}
	return buf.Bytes()
}

// decodeAll reads a whole stream; it returns the pairs read before any error.
func decodeAll(r io.Reader) (Header, []pair, error) {
	d, err := NewDecoder(r)
	if err != nil {
		return Header{}, nil, err
	}
	var pairs []pair
	for d.Next() {
		pairs = append(pairs, pair{bytes.Clone(d.Key()), bytes.Clone(d.Value())})
	}
	return d.Header(), pairs, d.Err()
}

// genPairs draws sorted, distinct, non-empty keys with values of any size up
// to maxValue.
func genPairs(t *rapid.T, maxValue int) []pair {
	keys := rapid.SliceOfNDistinct(rapid.SliceOfN(rapid.Byte(), 1, 24), 0, 60, func(k []byte) string { return string(k) }).Draw(t, "keys")
	slices.SortFunc(keys, bytes.Compare)
	pairs := make([]pair, len(keys))
	for i, k := range keys {
		pairs[i] = pair{k, rapid.SliceOfN(rapid.Byte(), 0, maxValue).Draw(t, "value")}
	}
	return pairs
}

func genHeader(t *rapid.T) Header {
	return Header{
		Index:  rapid.Uint64().Draw(t, "index"),
		Term:   rapid.Uint64().Draw(t, "term"),
		Config: rapid.SliceOfN(rapid.Byte(), 0, 64).Draw(t, "config"),
	}
}

// chunkedReader returns the stream in reads of drawn sizes, as a network or
// a pipe would.
type chunkedReader struct {
	data  []byte
	sizes []int
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(p)
	if len(c.sizes) > 0 {
		n = min(n, c.sizes[0])
		c.sizes = c.sizes[1:]
	}
	n = copy(p, c.data[:min(n, len(c.data))])
	c.data = c.data[n:]
	return n, nil
}

func headersEqual(a, b Header) bool {
	return a.Index == b.Index && a.Term == b.Term && bytes.Equal(a.Config, b.Config)
}

func pairsEqual(a, b []pair) bool {
	return slices.EqualFunc(a, b, func(x, y pair) bool {
		return bytes.Equal(x.key, y.key) && bytes.Equal(x.value, y.value)
	})
}

func TestRoundTripReturnsTheSamePairsAndHeaderWhateverTheReadSizes(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h, pairs := genHeader(t), genPairs(t, 300)
		stream := encode(t, h, pairs)
		sizes := rapid.SliceOfN(rapid.IntRange(1, 4096), 0, 50).Draw(t, "readSizes")
		gotH, got, err := decodeAll(&chunkedReader{data: stream, sizes: sizes})
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if !headersEqual(gotH, h) || !pairsEqual(got, pairs) {
			t.Fatalf("round trip changed the stream: header %+v -> %+v, %d pairs -> %d", h, gotH, len(pairs), len(got))
		}
	})
}

func TestRoundTripOfPairsLargerThanTheBuffers(t *testing.T) {
	big := bytes.Repeat([]byte("v"), 3*readBufSize+17)
	pairs := []pair{
		{[]byte("a"), []byte("small")},
		{[]byte("b"), big},
		{bytes.Repeat([]byte("k"), MaxKeyLen), big[:chunkSize-3]},
		{[]byte("m"), nil},
	}
	h := Header{Index: 7, Term: 2, Config: bytes.Repeat([]byte("c"), MaxConfigLen)}
	stream := encode(t, h, pairs)
	for _, r := range map[string]io.Reader{
		"whole":    bytes.NewReader(stream),
		"one-byte": iotest.OneByteReader(bytes.NewReader(stream)),
		"half":     iotest.HalfReader(bytes.NewReader(stream)),
	} {
		gotH, got, err := decodeAll(r)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if !headersEqual(gotH, h) || !pairsEqual(got, pairs) {
			t.Fatalf("round trip changed the stream")
		}
	}
}

func TestEveryFlippedBitIsDetected(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		stream := encode(t, genHeader(t), genPairs(t, 40))
		pos := rapid.IntRange(0, len(stream)-1).Draw(t, "pos")
		bit := rapid.IntRange(0, 7).Draw(t, "bit")
		bad := bytes.Clone(stream)
		bad[pos] ^= 1 << bit
		if _, _, err := decodeAll(bytes.NewReader(bad)); err == nil {
			t.Fatalf("flipping bit %d of byte %d of %d went unnoticed", bit, pos, len(stream))
		}
	})
}

func TestEveryTruncationIsDetectedAsTruncation(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		stream := encode(t, genHeader(t), genPairs(t, 40))
		cut := rapid.IntRange(0, len(stream)-1).Draw(t, "cut")
		_, _, err := decodeAll(bytes.NewReader(stream[:cut]))
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("stream cut at %d of %d: got %v, want ErrTruncated", cut, len(stream), err)
		}
	})
}

func TestTrailingDataIsRejected(t *testing.T) {
	stream := append(encode(t, Header{Index: 1}, []pair{{[]byte("k"), []byte("v")}}), 0)
	if _, _, err := decodeAll(bytes.NewReader(stream)); !errors.Is(err, ErrTrailingData) {
		t.Fatalf("got %v, want ErrTrailingData", err)
	}
}

// rawStream builds a stream by hand, with a correct checksum, so that each
// malformation is the only thing wrong with it.
type rawStream struct{ b []byte }

func newRawStream(version, flags uint32, configLen uint32) *rawStream {
	r := &rawStream{}
	r.b = append(r.b, Magic[:]...)
	r.b = binary.LittleEndian.AppendUint32(r.b, version)
	r.b = binary.LittleEndian.AppendUint32(r.b, flags)
	r.b = binary.LittleEndian.AppendUint64(r.b, 5)
	r.b = binary.LittleEndian.AppendUint64(r.b, 1)
	r.b = binary.LittleEndian.AppendUint32(r.b, configLen)
	return r
}

func (r *rawStream) pair(keyLen, valueLen uint32, data string) *rawStream {
	r.b = append(r.b, tagPair)
	r.b = binary.LittleEndian.AppendUint32(r.b, keyLen)
	r.b = binary.LittleEndian.AppendUint32(r.b, valueLen)
	r.b = append(r.b, data...)
	return r
}

func (r *rawStream) end(count uint64) []byte {
	r.b = append(r.b, tagEnd)
	r.b = binary.LittleEndian.AppendUint64(r.b, count)
	return binary.LittleEndian.AppendUint32(r.b, crc32.Checksum(r.b, castagnoli))
}

func TestMalformedStreamsGetDistinctTypedErrors(t *testing.T) {
	cases := []struct {
		name   string
		stream []byte
		want   error
	}{
		{"empty stream", nil, ErrTruncated},
		{"bad magic", []byte("NOTASNAPSHOTSTREAM"), ErrBadMagic},
		{"unknown version", newRawStream(2, 0, 0).end(0), ErrUnsupportedVersion},
		{"reserved flags set", newRawStream(1, 4, 0).end(0), ErrUnsupportedVersion},
		{"absurd config length", newRawStream(1, 0, 1<<31).end(0), ErrTooLarge},
		{"keys out of order", newRawStream(1, 0, 0).pair(1, 1, "bB").pair(1, 1, "aA").end(2), ErrKeyOrder},
		{"duplicate key", newRawStream(1, 0, 0).pair(1, 1, "aA").pair(1, 1, "aB").end(2), ErrKeyOrder},
		{"zero-length key", newRawStream(1, 0, 0).pair(0, 1, "A").end(1), ErrTooLarge},
		{"absurd key length", newRawStream(1, 0, 0).pair(MaxKeyLen+1, 0, "").end(1), ErrTooLarge},
		{"absurd value length", newRawStream(1, 0, 0).pair(1, 1<<31, "a").end(1), ErrTooLarge},
		{"unknown record tag", append(newRawStream(1, 0, 0).b, 0x7f), ErrBadRecord},
		{"count mismatch", newRawStream(1, 0, 0).pair(1, 1, "aA").end(3), ErrCount},
		{"bad checksum", func() []byte {
			s := newRawStream(1, 0, 0).pair(1, 1, "aA").end(1)
			s[len(s)-1] ^= 0xff
			return s
		}(), ErrChecksum},
		{"value cut short", newRawStream(1, 0, 0).pair(1, 1000, "a-short-value").b, ErrTruncated},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := decodeAll(bytes.NewReader(c.stream))
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

func TestEncoderRefusesWhatTheDecoderWouldRefuse(t *testing.T) {
	cases := map[string]struct {
		pairs []pair
		want  error
	}{
		"out of order": {[]pair{{[]byte("b"), nil}, {[]byte("a"), nil}}, ErrKeyOrder},
		"duplicate":    {[]pair{{[]byte("a"), nil}, {[]byte("a"), nil}}, ErrKeyOrder},
		"empty key":    {[]pair{{nil, []byte("v")}}, ErrTooLarge},
		"huge key":     {[]pair{{make([]byte, MaxKeyLen+1), nil}}, ErrTooLarge},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Encode(io.Discard, Header{}, &sliceIter{pairs: c.pairs})
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

func TestEncoderReportsWriterErrors(t *testing.T) {
	pairs := make([]pair, 5000)
	for i := range pairs {
		pairs[i] = pair{[]byte(fmt.Sprintf("key-%06d", i)), bytes.Repeat([]byte("v"), 100)}
	}
	boom := errors.New("disk full")
	_, err := Encode(&failingWriter{after: 100 << 10, err: boom}, Header{}, &sliceIter{pairs: pairs})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want the writer's error", err)
	}
}

type failingWriter struct {
	after int
	err   error
}

func (f *failingWriter) Write(p []byte) (int, error) {
	if len(p) > f.after {
		n := f.after
		f.after = 0
		return n, f.err
	}
	f.after -= len(p)
	return len(p), nil
}

func TestDecoderGivesUpOnAReaderThatMakesNoProgress(t *testing.T) {
	_, err := NewDecoder(zeroReader{})
	if !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("got %v, want io.ErrNoProgress", err)
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }
