package enginetest

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestSliceIteratorYieldsPairsInOrderAndScramblesTheLastOne(t *testing.T) {
	in := pairs("a", "1", "b", "", "c", "333")
	it := SliceIterator(in)
	var kept []byte
	var got []Pair
	for it.Next() {
		if kept == nil {
			kept = it.Key() // kept without copying, as a buggy engine would
		}
		got = append(got, Pair{Key: bytes.Clone(it.Key()), Value: presentValue(it.Value())})
	}
	if it.Err() != nil {
		t.Fatalf("Err() = %v", it.Err())
	}
	if d := diffPairs(got, in); d != "" {
		t.Fatalf("yielded pairs differ:\n%s", d)
	}
	if bytes.Equal(kept, []byte("a")) {
		t.Fatalf("a key kept past Next still reads %q; the source must scramble it", kept)
	}
	if d := diffPairs(in, pairs("a", "1", "b", "", "c", "333")); d != "" {
		t.Fatalf("the caller's pairs changed:\n%s", d)
	}
	if it.Next() {
		t.Fatal("Next after exhaustion returned true")
	}
}

func TestFailingIteratorReportsItsErrorOnlyOnceExhausted(t *testing.T) {
	boom := errors.New("boom")
	it := failingIterator(pairs("a", "1", "b", "2"), 1, boom)
	if !it.Next() || string(it.Key()) != "a" {
		t.Fatal("first pair missing")
	}
	if it.Err() != nil {
		t.Fatalf("Err() before exhaustion = %v", it.Err())
	}
	if it.Next() {
		t.Fatalf("yielded %q after the failure point", it.Key())
	}
	if !errors.Is(it.Err(), boom) {
		t.Fatalf("Err() = %v, want %v", it.Err(), boom)
	}
}

func TestCollectRejectsKeysOutOfOrder(t *testing.T) {
	for _, keys := range [][]string{{"b", "a"}, {"a", "a"}} {
		_, err := collectIter(SliceIterator(pairs(keys[0], "", keys[1], "")))
		if !errors.Is(err, errViewOrder) {
			t.Errorf("collect of keys %q: err = %v, want %v", keys, err, errViewOrder)
		}
	}
}

func TestCollectReadsAViewWithEmptyValuesAsPresent(t *testing.T) {
	eng, _ := newMemStorage(memBugs{}).opener()()
	b := batch(at(1), "a", "")
	b.Put([]byte("b"), nil)
	if err := eng.Write(b); err != nil {
		t.Fatal(err)
	}
	v, err := eng.View()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Collect(v)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Value == nil || got[1].Value == nil {
		t.Fatalf("Collect = %q, want two present, empty values", got)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestDiffPairsNamesEachDifference(t *testing.T) {
	got := pairs("a", "1", "b", "2", "d", "4")
	want := pairs("a", "1", "b", "x", "c", "3")
	d := diffPairs(got, want)
	for _, part := range []string{`key "b" = "2", want "x"`, `missing key "c"`, `extra key "d"`} {
		if !strings.Contains(d, part) {
			t.Errorf("diff lacks %q:\n%s", part, d)
		}
	}
	if diffPairs(want, want) != "" {
		t.Error("diff of equal contents is not empty")
	}
}
