package enginetest

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"

	"pgregory.net/rapid"

	"github.com/raftsnap/testbed/engines"
)

// pairs builds sorted test pairs from alternating keys and values.
func pairs(kv ...string) []Pair {
	if len(kv)%2 != 0 {
		panic("enginetest: pairs needs keys and values in twos")
	}
	ps := make([]Pair, 0, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		ps = append(ps, Pair{Key: []byte(kv[i]), Value: []byte(kv[i+1])})
	}
	return ps
}

// batch builds a batch of puts from alternating keys and values.
func batch(applied engines.Applied, kv ...string) engines.Batch {
	b := engines.Batch{Applied: applied}
	for _, p := range pairs(kv...) {
		b.Put(p.Key, p.Value)
	}
	return b
}

func at(index uint64) engines.Applied {
	return engines.Applied{Index: index, Term: 1, Config: fmt.Appendf(nil, "config at %d", index)}
}

// checkNewEngineIsEmpty: fresh storage holds nothing at the zero position,
// also after a reopen with no writes (an engine must not invent a position).
func checkNewEngineIsEmpty(tb rapid.TB, storage func() Opener) {
	tb.Helper()
	f := newFixture(tb, storage())
	defer f.release()
	f.expect("new engine", nil, engines.Applied{})
	f.expectGet("new engine", []byte("a"), nil, false)
	f.reopen()
	f.expect("new engine reopened without writes", nil, engines.Applied{})
	f.close()
}

// checkInstallRemovesAbsentKeys: install replaces, it does not merge; the
// seed design's install left stale keys behind.
func checkInstallRemovesAbsentKeys(tb rapid.TB, storage func() Opener) {
	tb.Helper()
	f := newFixture(tb, storage())
	defer f.release()
	f.write(batch(at(1), "a", "1", "b", "2", "c", "3", "d", "4"))
	want := pairs("b", "new b", "e", "5")
	f.install(want, at(2))
	f.expect("after installing {b, e} over {a, b, c, d}", want, at(2))
	for _, k := range []string{"a", "c", "d"} {
		f.expectGet("after install", []byte(k), nil, false)
	}
	f.close()
}

// checkInstallEmptySource: a snapshot of an empty state machine is valid and
// empties the engine, which then takes writes as usual.
func checkInstallEmptySource(tb rapid.TB, storage func() Opener) {
	tb.Helper()
	f := newFixture(tb, storage())
	defer f.release()
	f.install(nil, at(1))
	f.expect("empty source installed on an empty engine", nil, at(1))
	f.write(batch(at(2), "a", "1", "b", "2"))
	f.install(nil, at(3))
	f.expect("empty source installed over {a, b}", nil, at(3))
	f.expectGet("after empty install", []byte("a"), nil, false)
	f.write(batch(at(4), "c", "3"))
	f.expect("write after an empty install", pairs("c", "3"), at(4))
	f.close()
}

// checkInstallRecordsApplied: install records the whole position it is given,
// replacing the old configuration even with none.
func checkInstallRecordsApplied(tb rapid.TB, storage func() Opener) {
	tb.Helper()
	f := newFixture(tb, storage())
	defer f.release()
	f.write(batch(engines.Applied{Index: 3, Term: 1, Config: []byte("old config")}, "a", "1"))
	withConfig := engines.Applied{Index: 70, Term: 4, Config: []byte{0, 1, 2, 0xff}}
	f.install(pairs("b", "2"), withConfig)
	f.expect("install with a configuration", pairs("b", "2"), withConfig)
	// A position without a configuration replaces the old one, config too.
	noConfig := engines.Applied{Index: 90, Term: 5}
	f.install(pairs("c", "3"), noConfig)
	f.expect("install without a configuration", pairs("c", "3"), noConfig)
	f.write(batch(engines.Applied{Index: 91, Term: 5, Config: []byte("new config")}, "d", "4"))
	f.expect("write after install", pairs("c", "3", "d", "4"), engines.Applied{Index: 91, Term: 5, Config: []byte("new config")})
	f.close()
}

// checkInstallManyKeys installs enough keys to span many pages, blocks or
// batches in a real engine, then replaces half of them.
func checkInstallManyKeys(tb rapid.TB, storage func() Opener) {
	tb.Helper()
	const n = 20000
	f := newFixture(tb, storage())
	defer f.release()
	rng := rand.New(rand.NewPCG(5, 6))
	first := randomPairs(rng, "key", n)
	f.install(first, at(1))
	f.expect(fmt.Sprintf("after installing %d keys", n), first, at(1))
	// Replace it with every other key, new values, and as many new keys.
	var second []Pair
	for i, p := range first {
		if i%2 == 0 {
			second = append(second, Pair{Key: p.Key, Value: presentValue(randomValue(rng))})
		}
	}
	second = append(second, randomPairs(rng, "later", n/2)...)
	f.install(second, at(2))
	f.expect(fmt.Sprintf("after installing %d keys over %d", len(second), n), second, at(2))
	f.close()
}

// seeded writes the contents every error check starts from and must end with.
func seeded(f *fixture) ([]Pair, engines.Applied) {
	f.tb.Helper()
	want := pairs("k", "v", "m", "")
	f.write(batch(at(1), "k", "v", "m", ""))
	return sortedCopy(want), at(1)
}

// sortedCopy sorts a few pairs (test data written in any order).
func sortedCopy(ps []Pair) []Pair {
	m := map[string][]byte{}
	for _, p := range ps {
		m[string(p.Key)] = presentValue(p.Value)
	}
	return sortedPairs(m)
}

// expectRejected checks that err is errors.Is want.
func expectRejected(tb rapid.TB, what string, err, want error) {
	tb.Helper()
	if !errors.Is(err, want) {
		tb.Fatalf("%s = %v, want errors.Is %v", what, err, want)
	}
}

// checkEmptyKeyRejected: the empty key is refused everywhere it can enter,
// with ErrEmptyKey, and nothing changes.
func checkEmptyKeyRejected(tb rapid.TB, storage func() Opener) {
	tb.Helper()
	f := newFixture(tb, storage())
	defer f.release()
	want, applied := seeded(f)

	for _, key := range [][]byte{nil, {}} {
		var b engines.Batch
		b.Put(key, []byte("v"))
		b.Applied = at(2)
		expectRejected(tb, fmt.Sprintf("Write(Put(%#v))", key), f.eng.Write(b), engines.ErrEmptyKey)
		b = engines.Batch{Applied: at(2)}
		b.Delete(key)
		expectRejected(tb, fmt.Sprintf("Write(Delete(%#v))", key), f.eng.Write(b), engines.ErrEmptyKey)
	}
	// The empty key sorts first, so these sources are in order: only the
	// empty key is wrong with them.
	expectRejected(tb, "Install of a source holding only the empty key",
		f.eng.Install(SliceIterator([]Pair{{Key: nil, Value: []byte("v")}}), at(2)), engines.ErrEmptyKey)
	expectRejected(tb, "Install of a source starting with the empty key",
		f.eng.Install(SliceIterator([]Pair{{Key: []byte{}, Value: []byte("v")}, {Key: []byte("a"), Value: []byte("a")}}), at(2)), engines.ErrEmptyKey)
	// Get has nothing to reject: an engine may say ErrEmptyKey or not found.
	if v, found, err := f.eng.Get(nil); found || (err != nil && !errors.Is(err, engines.ErrEmptyKey)) {
		tb.Fatalf("Get(empty key) = %q, %v, %v; want not found, or errors.Is %v", v, found, err, engines.ErrEmptyKey)
	}
	f.expect("after rejected empty keys", want, applied)
	f.reopen()
	f.expect("after rejected empty keys and reopen", want, applied)
	f.close()
}

// checkTooLargeRejected: a key of MaxKeyLen bytes is accepted; one byte more,
// or a value over MaxValueLen, is refused with ErrTooLarge, by Write and
// Install alike, and nothing changes.
func checkTooLargeRejected(tb rapid.TB, storage func() Opener) {
	tb.Helper()
	f := newFixture(tb, storage())
	defer f.release()
	want, applied := seeded(f)

	// The largest key is accepted and round-trips.
	maxKey := bytes.Repeat([]byte{'x'}, engines.MaxKeyLen)
	f.write(batch(at(2), string(maxKey), "max"))
	f.expectGet("key of exactly MaxKeyLen bytes", maxKey, []byte("max"), true)
	var del engines.Batch
	del.Delete(maxKey)
	del.Applied = at(3)
	f.write(del)
	applied = at(3)
	f.expect("after put and delete of a MaxKeyLen key", want, applied)

	longKey := bytes.Repeat([]byte{'y'}, engines.MaxKeyLen+1)
	var b engines.Batch
	b.Put(longKey, []byte("v"))
	b.Applied = at(4)
	expectRejected(tb, "Write(Put(key of MaxKeyLen+1 bytes))", f.eng.Write(b), engines.ErrTooLarge)
	b = engines.Batch{Applied: at(4)}
	b.Delete(longKey)
	expectRejected(tb, "Write(Delete(key of MaxKeyLen+1 bytes))", f.eng.Write(b), engines.ErrTooLarge)
	expectRejected(tb, "Install of a source with a key of MaxKeyLen+1 bytes",
		f.eng.Install(SliceIterator([]Pair{{Key: []byte("a"), Value: []byte("a")}, {Key: longKey, Value: []byte("v")}}), at(4)), engines.ErrTooLarge)

	// Allocating the value is cheap (fresh zero pages); a conforming engine
	// rejects it before writing any of it.
	longValue := make([]byte, engines.MaxValueLen+1)
	b = engines.Batch{Applied: at(4)}
	b.Put([]byte("big"), longValue)
	expectRejected(tb, "Write(Put(value of MaxValueLen+1 bytes))", f.eng.Write(b), engines.ErrTooLarge)
	expectRejected(tb, "Install of a source with a value of MaxValueLen+1 bytes",
		f.eng.Install(SliceIterator([]Pair{{Key: []byte("big"), Value: longValue}}), at(4)), engines.ErrTooLarge)

	if v, found, err := f.eng.Get(longKey); found || (err != nil && !errors.Is(err, engines.ErrTooLarge)) {
		tb.Fatalf("Get(key of MaxKeyLen+1 bytes) = %q, %v, %v; want not found, or errors.Is %v", v, found, err, engines.ErrTooLarge)
	}
	f.expect("after rejected oversized keys and values", want, applied)
	f.close()
}

// checkRejectedBatchWritesNothing sends batches whose bad op comes last, after
// valid ones: a batch is atomic, so none of it may land, nor its position.
func checkRejectedBatchWritesNothing(tb rapid.TB, storage func() Opener) {
	tb.Helper()
	f := newFixture(tb, storage())
	defer f.release()
	want, applied := seeded(f)

	bad := []struct {
		what string
		last engines.Op
		err  error // nil: any error
	}{
		{"an empty key", engines.Op{Kind: engines.OpPut, Key: nil, Value: []byte("v")}, engines.ErrEmptyKey},
		{"an oversized key", engines.Op{Kind: engines.OpPut, Key: make([]byte, engines.MaxKeyLen+1)}, engines.ErrTooLarge},
		{"an unknown op kind", engines.Op{Kind: 0, Key: []byte("z")}, nil},
	}
	for _, c := range bad {
		b := batch(at(2), "new", "1", "k", "overwritten")
		b.Delete([]byte("m"))
		b.Ops = append(b.Ops, c.last)
		err := f.eng.Write(b)
		what := "Write of a batch ending with " + c.what
		if c.err != nil {
			expectRejected(tb, what, err, c.err)
		} else if err == nil {
			tb.Fatalf("%s succeeded, want an error", what)
		}
		f.expect("after a rejected "+what, want, applied)
	}
	f.reopen()
	f.expect("after rejected batches and reopen", want, applied)
	f.close()
}

// checkClosedEngine: every operation on a closed engine fails with ErrClosed
// and changes nothing; the storage opens again intact.
func checkClosedEngine(tb rapid.TB, storage func() Opener) {
	tb.Helper()
	f := newFixture(tb, storage())
	defer f.release()
	want, applied := seeded(f)
	eng := f.eng
	f.close()

	_, _, err := eng.Get([]byte("k"))
	expectRejected(tb, "Get after Close", err, engines.ErrClosed)
	expectRejected(tb, "Write after Close", eng.Write(batch(at(2), "late", "1")), engines.ErrClosed)
	_, err = eng.Applied()
	expectRejected(tb, "Applied after Close", err, engines.ErrClosed)
	v, err := eng.View()
	if err == nil {
		_ = v.Close()
	}
	expectRejected(tb, "View after Close", err, engines.ErrClosed)
	expectRejected(tb, "Install after Close", eng.Install(SliceIterator(pairs("late", "1")), at(2)), engines.ErrClosed)

	f.open()
	f.expect("reopened after operations on the closed engine", want, applied)
	f.close()
}

// checkWritesSurviveReopen: written contents and position persist across
// close and reopen, twice.
func checkWritesSurviveReopen(tb rapid.TB, storage func() Opener) {
	tb.Helper()
	f := newFixture(tb, storage())
	defer f.release()
	rng := rand.New(rand.NewPCG(7, 8))
	model := map[string][]byte{}
	var applied engines.Applied
	writeSome := func(from uint64) {
		for i := range uint64(30) {
			var b engines.Batch
			for range 1 + rng.IntN(4) {
				key := fmt.Sprintf("key%02d", rng.IntN(40))
				if rng.IntN(4) == 0 {
					b.Delete([]byte(key))
					delete(model, key)
				} else {
					value := randomValue(rng)
					b.Put([]byte(key), value)
					model[key] = presentValue(value)
				}
			}
			b.Applied = at(from + i)
			applied = b.Applied
			f.write(b)
		}
	}
	writeSome(1)
	f.reopen()
	f.expect("after writes and reopen", sortedPairs(model), applied)
	writeSome(100)
	f.reopen()
	f.expect("after more writes and a second reopen", sortedPairs(model), applied)
	f.close()
}

// checkInstallSurvivesReopen: an install persists across reopen, a failed one
// leaves no trace after reopen, and writes after an install persist too.
func checkInstallSurvivesReopen(tb rapid.TB, storage func() Opener) {
	tb.Helper()
	f := newFixture(tb, storage())
	defer f.release()
	f.write(batch(at(1), "a", "1", "b", "2", "c", "3"))
	installed := pairs("b", "new b", "d", "", "e", "5")
	f.install(installed, at(10))
	f.reopen()
	f.expect("after install and reopen", installed, at(10))

	// A failed install leaves no trace, after reopen either.
	err := f.eng.Install(failingIterator(pairs("x", "1", "y", "2", "z", "3"), 2, errSource), at(11))
	expectRejected(tb, "Install from a source failing after 2 pairs", err, errSource)
	f.reopen()
	f.expect("after a failed install and reopen", installed, at(10))

	f.write(batch(at(12), "f", "6"))
	f.reopen()
	f.expect("after install, write and reopen", pairs("b", "new b", "d", "", "e", "5", "f", "6"), at(12))
	f.close()
}

// checkSyncer: an engine with the durability barrier (engines.Syncer)
// syncs on a new engine, after writes and an install, with a view open and
// while another goroutine writes, changes nothing it syncs, and refuses
// with ErrClosed once closed. An engine without the capability skips it:
// nodes run it with the copying snapshot store. (Whether a synced write
// survives a power loss needs a crash the suite cannot make; the
// simulator's power losses check that.)
func checkSyncer(tb rapid.TB, storage func() Opener) {
	tb.Helper()
	f := newFixture(tb, storage())
	defer f.release()
	if _, ok := f.eng.(engines.Syncer); !ok {
		f.close()
		tb.Skip("the engine is not an engines.Syncer")
	}
	sync := func(what string) {
		tb.Helper()
		if err := engines.Sync(f.eng); err != nil {
			tb.Fatalf("Sync %s: %v", what, err)
		}
	}
	sync("on a new engine")
	want, applied := seeded(f)
	sync("after writes")
	f.expect("after Sync", want, applied)
	v := f.view()
	installed := pairs("p", "1", "q", "2")
	f.install(installed, at(20))
	sync("after an install, with a view open")
	f.expectView("a view across Sync", v, want, applied)
	f.closeView(v)
	done := make(chan error, 1)
	go func() {
		var err error
		for i := range uint64(20) {
			if err = f.eng.Write(batch(at(21+i), fmt.Sprintf("w%02d", i), "v")); err != nil {
				break
			}
		}
		done <- err
	}()
	for range 20 {
		sync("while another goroutine writes")
	}
	if err := <-done; err != nil {
		tb.Fatalf("Write beside Sync: %v", err)
	}
	eng := f.eng
	f.close()
	expectRejected(tb, "Sync after Close", engines.Sync(eng), engines.ErrClosed)
}
