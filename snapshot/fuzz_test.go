package snapshot

import (
	"bytes"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the decoder. It must never panic, and
// it must only accept canonical streams: whatever it accepts re-encodes to
// exactly the same bytes. Allocation stays bounded because the decoder grows
// buffers only as bytes arrive (a huge declared length on a short input
// allocates nothing extra).
func FuzzDecode(f *testing.F) {
	f.Add(encode(f, Header{}, nil))
	f.Add(encode(f, Header{Index: 9, Term: 3, Config: []byte("cfg")}, []pair{
		{[]byte("a"), []byte("1")}, {[]byte("b"), nil}, {[]byte("c"), bytes.Repeat([]byte("x"), 300)},
	}))
	f.Add(newRawStream(1, 0, 0).pair(1, 1, "bB").pair(1, 1, "aA").end(2))
	f.Add(newRawStream(1, 0, 0).pair(1, 1<<30, "a").end(1))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, pairs, err := decodeAll(bytes.NewReader(data))
		if err != nil {
			return
		}
		if again := encode(t, h, pairs); !bytes.Equal(again, data) {
			t.Fatalf("decoder accepted a non-canonical stream of %d bytes (re-encodes to %d)", len(data), len(again))
		}
	})
}
