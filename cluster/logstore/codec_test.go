package logstore

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestCodecRoundTrip(t *testing.T) {
	for _, l := range []raft.Log{
		{},
		{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte("x")},
		{Index: 2, Term: 1, Data: []byte{}, Extensions: []byte{}},
		{Index: 3, Term: 2, Type: raft.LogConfiguration, Data: []byte("cfg"), Extensions: []byte("ext"),
			AppendedAt: time.Unix(1700000000, 123456789)},
		{Index: ^uint64(0), Term: ^uint64(0), Type: 255, AppendedAt: time.Unix(0, -1)},
	} {
		var got raft.Log
		if err := decodeLog(appendLog(nil, &l), &got); err != nil {
			t.Fatalf("decode(%+v): %v", l, err)
		}
		if !sameLog(&got, &l) {
			t.Fatalf("round trip of %#v gave %#v", l, got)
		}
		if (got.Data == nil) != (l.Data == nil) || (got.Extensions == nil) != (l.Extensions == nil) {
			t.Fatalf("round trip of %#v lost nil-ness: %#v", l, got)
		}
	}
}

// TestCodecRejectsDamage checks every truncation and every single-byte
// change of a valid record: each must decode to an ErrCorrupt error or to
// a record (a changed length byte can still be well formed), never panic.
func TestCodecRejectsDamage(t *testing.T) {
	l := raft.Log{Index: 9, Term: 4, Type: raft.LogCommand, Data: []byte("payload"),
		Extensions: []byte("ext"), AppendedAt: time.Unix(1, 2)}
	enc := appendLog(nil, &l)
	for n := 0; n < len(enc); n++ {
		var got raft.Log
		if err := decodeLog(enc[:n], &got); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncation to %d bytes: %v, want ErrCorrupt", n, err)
		}
		if !reflect.DeepEqual(got, raft.Log{}) {
			t.Fatalf("a failed decode wrote %+v", got)
		}
	}
	if err := decodeLog(append(append([]byte{}, enc...), 0), new(raft.Log)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("trailing byte: %v, want ErrCorrupt", err)
	}
	for i := range enc {
		for _, b := range []byte{0, 1, 0x7f, 0x80, 0xff} {
			bad := append([]byte{}, enc...)
			bad[i] = b
			var got raft.Log
			if err := decodeLog(bad, &got); err != nil && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("byte %d = %#x: %v is not ErrCorrupt", i, b, err)
			}
		}
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for range 10000 {
		junk := make([]byte, rng.IntN(64))
		for i := range junk {
			junk[i] = byte(rng.Uint32())
		}
		if err := decodeLog(junk, new(raft.Log)); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("junk %x: %v is not ErrCorrupt", junk, err)
		}
	}
}

// FuzzDecodeLog: decoding never panics, and whatever decodes re-encodes to
// something that decodes to the same entry.
func FuzzDecodeLog(f *testing.F) {
	f.Add(appendLog(nil, &raft.Log{Index: 1, Term: 1, Data: []byte("a")}))
	f.Add(appendLog(nil, &raft.Log{Index: 2, AppendedAt: time.Unix(5, 5), Extensions: []byte{}}))
	f.Add([]byte{1, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var l raft.Log
		if err := decodeLog(b, &l); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%v is not ErrCorrupt", err)
			}
			return
		}
		var again raft.Log
		if err := decodeLog(appendLog(nil, &l), &again); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !sameLog(&l, &again) {
			t.Fatalf("%+v re-decoded as %+v", l, again)
		}
	})
}
