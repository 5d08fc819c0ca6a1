package bbolt

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"

	"github.com/raftsnap/testbed/engines"
	bolt "go.etcd.io/bbolt"
)

func TestWriteGetDeleteApplied(t *testing.T) {
	e, path := openTest(t, Options{NoSync: true})

	if a, err := e.Applied(); err != nil || !a.Equal(engines.Applied{}) {
		t.Fatalf("new engine Applied = %+v, %v; want zero", a, err)
	}
	if _, found, err := e.Get([]byte("a")); err != nil || found {
		t.Fatalf("Get on empty engine: found=%v err=%v", found, err)
	}

	a1 := engines.Applied{Index: 7, Term: 2, Config: []byte("cfg-1")}
	var b engines.Batch
	b.Put([]byte("a"), []byte("1"))
	b.Put([]byte("b"), []byte("2"))
	b.Put([]byte("empty"), nil)
	b.Put([]byte("a"), []byte("1bis")) // a later op on the same key wins
	b.Applied = a1
	if err := e.Write(b); err != nil {
		t.Fatalf("Write: %v", err)
	}

	got, found, err := e.Get([]byte("a"))
	if err != nil || !found || string(got) != "1bis" {
		t.Fatalf("Get(a) = %q, %v, %v; want 1bis", got, found, err)
	}
	// The value is a copy: scribbling on it changes nothing stored.
	got[0] = 'X'
	if again, _, _ := e.Get([]byte("a")); string(again) != "1bis" {
		t.Fatalf("Get(a) after modifying a returned value = %q", again)
	}
	if got, found, err := e.Get([]byte("empty")); err != nil || !found || len(got) != 0 {
		t.Fatalf("Get(empty) = %q, %v, %v; want found empty value", got, found, err)
	}

	a2 := engines.Applied{Index: 8, Term: 3}
	b = engines.Batch{Applied: a2}
	b.Delete([]byte("b"))
	b.Delete([]byte("never-there"))
	if err := e.Write(b); err != nil {
		t.Fatalf("Write delete: %v", err)
	}
	if _, found, _ := e.Get([]byte("b")); found {
		t.Fatal("b still present after delete")
	}
	want := []kv{{[]byte("a"), []byte("1bis")}, {[]byte("empty"), []byte{}}}
	checkState(t, e, want, a2)

	// A batch with ops only moves Applied too.
	a3 := engines.Applied{Index: 9, Term: 3, Config: []byte("cfg-3")}
	if err := e.Write(engines.Batch{Applied: a3}); err != nil {
		t.Fatalf("Write empty batch: %v", err)
	}
	checkState(t, e, want, a3)

	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	e2 := openAt(t, path, Options{NoSync: true})
	checkState(t, e2, want, a3)
}

func TestBadInputIsRejectedBeforeWriting(t *testing.T) {
	e, _ := openTest(t, Options{NoSync: true})
	base := engines.Applied{Index: 1, Term: 1}
	writePairs(t, e, []kv{{[]byte("k"), []byte("v")}}, base)

	longKey := bytes.Repeat([]byte{'k'}, engines.MaxKeyLen+1)
	longValue := make([]byte, engines.MaxValueLen+1)
	next := engines.Applied{Index: 2, Term: 1}
	cases := []struct {
		name string
		ops  []engines.Op
		want error
	}{
		{"empty put key", []engines.Op{{Kind: engines.OpPut, Key: []byte("new"), Value: []byte("x")}, {Kind: engines.OpPut, Value: []byte("x")}}, engines.ErrEmptyKey},
		{"empty delete key", []engines.Op{{Kind: engines.OpDelete, Key: []byte("k")}, {Kind: engines.OpDelete}}, engines.ErrEmptyKey},
		{"long key", []engines.Op{{Kind: engines.OpPut, Key: []byte("new"), Value: []byte("x")}, {Kind: engines.OpPut, Key: longKey}}, engines.ErrTooLarge},
		{"long delete key", []engines.Op{{Kind: engines.OpDelete, Key: longKey}}, engines.ErrTooLarge},
		{"long value", []engines.Op{{Kind: engines.OpPut, Key: []byte("new"), Value: []byte("x")}, {Kind: engines.OpPut, Key: []byte("big"), Value: longValue}}, engines.ErrTooLarge},
		{"unknown kind", []engines.Op{{Kind: engines.OpDelete, Key: []byte("k")}, {Kind: 99, Key: []byte("z")}}, ErrUnknownOp},
	}
	for _, c := range cases {
		err := e.Write(engines.Batch{Ops: c.ops, Applied: next})
		if !errors.Is(err, c.want) {
			t.Errorf("%s: Write error %v, want %v", c.name, err, c.want)
		}
	}
	// Nothing of the rejected batches landed: not the valid ops before the
	// bad one, not the Applied.
	checkState(t, e, []kv{{[]byte("k"), []byte("v")}}, base)

	if _, _, err := e.Get(nil); !errors.Is(err, engines.ErrEmptyKey) {
		t.Errorf("Get(nil) error %v, want ErrEmptyKey", err)
	}
	if _, _, err := e.Get(longKey); !errors.Is(err, engines.ErrTooLarge) {
		t.Errorf("Get(long key) error %v, want ErrTooLarge", err)
	}
	if err := e.Write(engines.Batch{Applied: engines.Applied{Config: make([]byte, engines.MaxValueLen+1)}}); !errors.Is(err, engines.ErrTooLarge) {
		t.Errorf("Write with huge config: error %v, want ErrTooLarge", err)
	}

	installCases := []struct {
		name  string
		pairs []kv
		want  error
	}{
		{"empty key", []kv{{[]byte("a"), nil}, {nil, []byte("x")}}, engines.ErrEmptyKey},
		{"long key", []kv{{[]byte("a"), nil}, {longKey, nil}}, engines.ErrTooLarge},
		{"long value", []kv{{[]byte("a"), nil}, {[]byte("b"), longValue}}, engines.ErrTooLarge},
	}
	for _, c := range installCases {
		if err := e.Install(newSliceIter(c.pairs), next); !errors.Is(err, c.want) {
			t.Errorf("Install %s: error %v, want %v", c.name, err, c.want)
		}
	}
	checkState(t, e, []kv{{[]byte("k"), []byte("v")}}, base)
	if s := stagingBuckets(t, e); len(s) != 0 {
		t.Fatalf("staging buckets left: %q", s)
	}
}

func TestAppliedEncoding(t *testing.T) {
	for _, a := range []engines.Applied{
		{},
		{Index: 1, Term: 1},
		{Index: 1<<64 - 1, Term: 1<<63 + 5, Config: []byte("some configuration")},
	} {
		enc, err := encodeApplied(a)
		if err != nil {
			t.Fatalf("encode %+v: %v", a, err)
		}
		got, err := decodeApplied(enc)
		if err != nil || !got.Equal(a) {
			t.Fatalf("decode(encode(%+v)) = %+v, %v", a, got, err)
		}
		if a.Config == nil && got.Config != nil {
			t.Fatalf("nil config decoded as %q", got.Config)
		}
	}
	good, _ := encodeApplied(engines.Applied{Index: 3, Term: 4, Config: []byte("abc")})
	bad := map[string][]byte{
		"nil":           nil,
		"short":         good[:appliedHeaderLen-1],
		"truncated":     good[:len(good)-1],
		"trailing byte": append(bytes.Clone(good), 0),
		"version 0":     append([]byte{0}, good[1:]...),
		"version 2":     append([]byte{2}, good[1:]...),
	}
	for name, buf := range bad {
		if _, err := decodeApplied(buf); !errors.Is(err, ErrCorrupt) {
			t.Errorf("decode %s: error %v, want ErrCorrupt", name, err)
		}
	}
}

func TestOpenRejectsCorruptApplied(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	e, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(metaBucket).Put(appliedKey, []byte("garbage"))
	})
	if cerr := db.Close(); err != nil || cerr != nil {
		t.Fatal(err, cerr)
	}
	if e, err := Open(path, Options{}); !errors.Is(err, ErrCorrupt) {
		if e != nil {
			e.Close()
		}
		t.Fatalf("Open with garbage Applied: error %v, want ErrCorrupt", err)
	}
}

func TestClose(t *testing.T) {
	e, _ := openTest(t, Options{NoSync: true})
	writePairs(t, e, []kv{{[]byte("k"), []byte("v")}}, engines.Applied{Index: 1})

	v, err := e.View()
	if err != nil {
		t.Fatal(err)
	}
	it, err := v.Iter()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); !errors.Is(err, ErrViewsOpen) {
		t.Fatalf("Close with a view open: error %v, want ErrViewsOpen", err)
	}
	// The refused Close left the engine working.
	if _, found, err := e.Get([]byte("k")); err != nil || !found {
		t.Fatalf("Get after refused Close: found=%v err=%v", found, err)
	}
	if err := v.Close(); err != nil {
		t.Fatalf("View.Close: %v", err)
	}
	// Using a view after its Close fails cleanly instead of panicking in
	// bbolt's cursor.
	if it.Next() {
		t.Fatal("iterator of a closed view still yields pairs")
	}
	if !errors.Is(it.Err(), engines.ErrClosed) {
		t.Fatalf("iterator of a closed view: Err %v, want ErrClosed", it.Err())
	}
	if _, err := v.Iter(); !errors.Is(err, engines.ErrClosed) {
		t.Fatalf("Iter on closed view: error %v, want ErrClosed", err)
	}
	if err := v.Close(); err == nil {
		t.Fatal("second View.Close returned nil")
	}

	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	checks := map[string]error{
		"Close":   e.Close(),
		"Write":   e.Write(engines.Batch{}),
		"Install": e.Install(newSliceIter(nil), engines.Applied{}),
	}
	_, _, checks["Get"] = e.Get([]byte("k"))
	_, checks["Applied"] = e.Applied()
	_, checks["View"] = e.View()
	for op, err := range checks {
		if !errors.Is(err, engines.ErrClosed) {
			t.Errorf("%s after Close: error %v, want ErrClosed", op, err)
		}
	}
}

func TestViewIterators(t *testing.T) {
	e, _ := openTest(t, Options{NoSync: true})
	pairs := genPairs(300, "k", "v")
	writePairs(t, e, pairs, engines.Applied{Index: 5})
	v, err := e.View()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()

	// Two iterators of one view, stepped alternately, each see everything.
	it1, _ := v.Iter()
	it2, _ := v.Iter()
	for i := range pairs {
		for _, it := range []engines.ViewIterator{it1, it2} {
			if !it.Next() || !bytes.Equal(it.Key(), pairs[i].key) || !bytes.Equal(it.Value(), pairs[i].value) {
				t.Fatalf("pair %d: got %q", i, it.Key())
			}
		}
	}
	for _, it := range []engines.ViewIterator{it1, it2} {
		if it.Next() || it.Err() != nil {
			t.Fatalf("iterator past the end: Next true or Err %v", it.Err())
		}
		if it.Next() {
			t.Fatal("Next true after exhaustion")
		}
		if err := it.Close(); err != nil {
			t.Fatalf("iterator Close: %v", err)
		}
		if err := it.Close(); err == nil {
			t.Fatal("second iterator Close returned nil")
		}
	}

	// A closed iterator stops early without error.
	it3, _ := v.Iter()
	it3.Next()
	it3.Close()
	if it3.Next() {
		t.Fatal("closed iterator yields pairs")
	}

	// Stepping allocates nothing: Key and Value point into the map.
	it4, _ := v.Iter()
	defer it4.Close()
	allocs := testing.AllocsPerRun(200, func() {
		if !it4.Next() {
			t.Fatal("ran out of pairs")
		}
		_, _ = it4.Key(), it4.Value()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per pair, want 0", allocs)
	}
}
