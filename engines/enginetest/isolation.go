package enginetest

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"time"

	"pgregory.net/rapid"

	"github.com/raftsnap/testbed/engines"
)

// checkViewIsPointInTime takes a view and iterates it twice while another
// goroutine writes, deletes and installs. The first pass runs in lockstep, one
// engine change after each pair read, so changes land mid-iteration on every
// engine and every run; the second pass races a free-running writer. Both
// must yield exactly the contents when the view was taken.
func checkViewIsPointInTime(tb rapid.TB, storage func() Opener) {
	tb.Helper()
	f := newFixture(tb, storage())
	defer f.release()
	rng := rand.New(rand.NewPCG(1, 2))
	initial := randomPairs(rng, "key", 200)
	applied := engines.Applied{Index: 10, Term: 2, Config: []byte("config at 10")}
	f.install(initial, applied)

	v := f.view()
	c := newChurn(f.eng, rng, initial, applied)

	// Pass 1, lockstep. The view's iterator is open throughout, while the
	// writer changes and finally replaces every key.
	it, err := v.Iter()
	if err != nil {
		tb.Fatalf("view Iter: %v", err)
	}
	const steps = 150 // fewer than the pairs, so every step lands mid-iteration
	todo := make(chan int)
	done := make(chan error, 1) // so that a writer outliving a failed check can exit
	defer close(todo)
	go func() {
		for i := range todo {
			done <- c.step(i, steps/2)
		}
	}()
	var got []Pair
	step := 0
	for it.Next() {
		if got, err = appendPair(got, it); err != nil {
			_ = it.Close()
			tb.Fatalf("first pass over a view, with writes and an install landing mid-iteration: %v", err)
		}
		if step == steps {
			continue
		}
		todo <- step
		step++
		select {
		case err := <-done:
			if err != nil {
				tb.Fatalf("concurrent writer, step %d: %v", step, err)
			}
		case <-time.After(stallTimeout):
			// Closing the iterator unblocks an engine whose writes wait
			// for readers, so that the suite fails instead of hanging.
			_ = it.Close()
			tb.Fatalf("a write or install stalled for %v while a view iterator was open; views must not block writes", stallTimeout)
		}
	}
	if err := it.Err(); err != nil {
		tb.Fatalf("view iterator during concurrent writes: %v", err)
	}
	if err := it.Close(); err != nil {
		tb.Fatalf("view iterator Close: %v", err)
	}
	if step != steps {
		tb.Fatalf("the view yielded %d pairs, want %d; the writer ran only %d of %d steps", len(got), len(initial), step, steps)
	}
	if d := diffPairs(got, initial); d != "" {
		tb.Fatalf("first pass over a view, with writes and an install landing mid-iteration, differs from the contents when it was taken:\n%s", d)
	}

	// Pass 2 races a free-running writer; yielding after every pair gives
	// it the chance to run between them.
	finished := make(chan error, 1)
	go func() {
		for i := range steps {
			if err := c.step(steps+i, steps+steps/2); err != nil {
				finished <- fmt.Errorf("step %d: %w", steps+i, err)
				return
			}
		}
		finished <- nil
	}()
	it, err = v.Iter()
	if err != nil {
		tb.Fatalf("second view Iter: %v", err)
	}
	got = got[:0]
	var iterErr error
	for it.Next() {
		if got, iterErr = appendPair(got, it); iterErr != nil {
			break
		}
		runtime.Gosched()
	}
	if iterErr == nil {
		iterErr = it.Err()
	}
	closeErr := it.Close()
	awaitWriter(tb, finished)
	if iterErr != nil {
		tb.Fatalf("second pass over the view: %v", iterErr)
	}
	if closeErr != nil {
		tb.Fatalf("second view iterator Close: %v", closeErr)
	}
	if d := diffPairs(got, initial); d != "" {
		tb.Fatalf("second pass over a view, racing writes and an install, differs from the contents when it was taken:\n%s", d)
	}
	f.expectView("third pass over the view, after all writes", v, initial, applied)
	f.closeView(v)
	// The writes really happened: the engine now holds the writer's model.
	f.expect("after the concurrent writes", c.pairs(), c.applied)
	f.close()
}

// checkViewFromAnotherGoroutine takes views in the check's goroutine and
// reads them from another: one only after an install replaced everything
// (its first Iter call comes after the install), one while this goroutine
// keeps writing and installing.
func checkViewFromAnotherGoroutine(tb rapid.TB, storage func() Opener) {
	tb.Helper()
	f := newFixture(tb, storage())
	defer f.release()
	rng := rand.New(rand.NewPCG(3, 4))
	initial := randomPairs(rng, "key", 100)
	applied := engines.Applied{Index: 5, Term: 1, Config: []byte("config at 5")}
	f.install(initial, applied)
	c := newChurn(f.eng, rng, initial, applied)

	before := f.view()
	for i := range 40 {
		if err := c.step(i, 20); err != nil {
			tb.Fatalf("write step %d: %v", i, err)
		}
	}
	want, wantApplied := c.pairs(), c.applied
	after := f.view()

	readBefore := readInGoroutine(before)
	got := awaitRead(tb, readBefore)
	if got.err != nil {
		tb.Fatalf("reading, from another goroutine, a view taken before an install: %v", got.err)
	}
	if d := diffPairs(got.pairs, initial); d != "" {
		tb.Fatalf("a view taken before an install and first iterated after it, from another goroutine, differs from the contents when it was taken:\n%s", d)
	}
	if !got.applied.Equal(applied) {
		tb.Fatalf("view Applied() read from another goroutine = %s, want %s", fmtApplied(got.applied), fmtApplied(applied))
	}

	readAfter := readInGoroutine(after)
	for i := range 40 {
		if err := c.step(40+i, 60); err != nil {
			tb.Fatalf("write step %d: %v", 40+i, err)
		}
	}
	got = awaitRead(tb, readAfter)
	if got.err != nil {
		tb.Fatalf("reading a view from another goroutine during writes: %v", got.err)
	}
	if d := diffPairs(got.pairs, want); d != "" {
		tb.Fatalf("a view read from another goroutine while this one wrote and installed differs from the contents when it was taken:\n%s", d)
	}
	if !got.applied.Equal(wantApplied) {
		tb.Fatalf("view Applied() read from another goroutine = %s, want %s", fmtApplied(got.applied), fmtApplied(wantApplied))
	}
	f.closeView(before)
	f.closeView(after)
	f.expect("after the writes", c.pairs(), c.applied)
	f.close()
}

// viewRead is what a goroutine read from a view.
type viewRead struct {
	pairs   []Pair
	applied engines.Applied
	err     error
}

func readInGoroutine(v engines.View) <-chan viewRead {
	ch := make(chan viewRead, 1)
	go func() {
		pairs, err := Collect(v)
		ch <- viewRead{pairs: pairs, applied: cloneApplied(v.Applied()), err: err}
	}()
	return ch
}

func awaitRead(tb rapid.TB, ch <-chan viewRead) viewRead {
	tb.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(stallTimeout):
		tb.Fatalf("reading a view from another goroutine stalled for %v", stallTimeout)
		return viewRead{}
	}
}

func awaitWriter(tb rapid.TB, finished <-chan error) {
	tb.Helper()
	select {
	case err := <-finished:
		if err != nil {
			tb.Fatalf("concurrent writer: %v", err)
		}
	case <-time.After(stallTimeout):
		tb.Fatalf("concurrent writer stalled for %v", stallTimeout)
	}
}

// churn changes an engine one step at a time and keeps a model of what it
// wrote. Each step is a batch that overwrites one present key, deletes
// another and adds a new one; one chosen step instead installs a new
// generation that keeps about half the keys with new values, drops the rest
// and adds as many new ones.
type churn struct {
	eng     engines.Engine
	rng     *rand.Rand
	model   map[string][]byte
	applied engines.Applied
}

func newChurn(eng engines.Engine, rng *rand.Rand, initial []Pair, applied engines.Applied) *churn {
	c := &churn{eng: eng, rng: rng, model: map[string][]byte{}, applied: cloneApplied(applied)}
	for _, p := range initial {
		c.model[string(p.Key)] = presentValue(p.Value)
	}
	return c
}

func (c *churn) nextApplied() engines.Applied {
	c.applied = engines.Applied{
		Index:  c.applied.Index + 1,
		Term:   c.applied.Term,
		Config: fmt.Appendf(nil, "config at %d", c.applied.Index+1),
	}
	return cloneApplied(c.applied)
}

func (c *churn) keys() []string {
	keys := make([]string, 0, len(c.model))
	for k := range c.model {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (c *churn) pairs() []Pair { return sortedPairs(c.model) }

// step runs step i, which is the install when i == installAt.
func (c *churn) step(i, installAt int) error {
	if i == installAt {
		return c.install(i)
	}
	var b engines.Batch
	if keys := c.keys(); len(keys) >= 2 {
		overwrite := keys[c.rng.IntN(len(keys))]
		value := randomValue(c.rng)
		b.Put([]byte(overwrite), value)
		c.model[overwrite] = presentValue(value)
		del := keys[c.rng.IntN(len(keys))]
		b.Delete([]byte(del))
		delete(c.model, del)
	}
	added := fmt.Sprintf("key+step%04d", i)
	value := randomValue(c.rng)
	b.Put([]byte(added), value)
	c.model[added] = presentValue(value)
	b.Applied = c.nextApplied()
	return c.eng.Write(b)
}

func (c *churn) install(i int) error {
	next := map[string][]byte{}
	for _, k := range c.keys() {
		if c.rng.IntN(2) == 0 {
			next[k] = presentValue(randomValue(c.rng))
			next[fmt.Sprintf("%s/gen%04d", k, i)] = presentValue(randomValue(c.rng))
		}
	}
	c.model = next
	return c.eng.Install(SliceIterator(sortedPairs(next)), c.nextApplied())
}

// randomPairs returns n pairs with sorted keys prefix/00000000, prefix/00000001...
// and random values of 0-100 bytes.
func randomPairs(rng *rand.Rand, prefix string, n int) []Pair {
	pairs := make([]Pair, n)
	for i := range pairs {
		pairs[i] = Pair{Key: fmt.Appendf(nil, "%s/%08d", prefix, i), Value: presentValue(randomValue(rng))}
	}
	return pairs
}

// randomValue returns 0-100 random bytes; one value in ten is empty.
func randomValue(rng *rand.Rand) []byte {
	if rng.IntN(10) == 0 {
		return nil
	}
	v := make([]byte, rng.IntN(101))
	for i := range v {
		v[i] = byte(rng.Uint32())
	}
	return v
}

// checkConcurrentReadersSeeWholeBatches runs one writer, as raft's FSM
// goroutine is, against readers that take views, Get and ask Applied from
// other goroutines, as snapshot streaming and client reads do. Every batch
// and install sets keys "a" and "b" to the same value, its number, and
// records that number as the position, so every view must show a == b ==
// its own Applied().Index: a batch is seen whole or not at all, and a view's
// position is the one its contents reflect.
func checkConcurrentReadersSeeWholeBatches(tb rapid.TB, storage func() Opener) {
	tb.Helper()
	f := newFixture(tb, storage())
	defer f.release()
	const changes, readers = 300, 2
	stop := make(chan struct{})
	results := make(chan error, readers)
	for range readers {
		go func() { results <- readUntil(f.eng, stop) }()
	}
	var writeErr, readErr error
	finished := 0
	for i := uint64(1); i <= changes && writeErr == nil && readErr == nil; i++ {
		value := fmt.Appendf(nil, "%d", i)
		applied := engines.Applied{Index: i, Term: 1}
		if i%50 == 0 {
			writeErr = f.eng.Install(SliceIterator([]Pair{{Key: []byte("a"), Value: value}, {Key: []byte("b"), Value: value}}), applied)
		} else {
			var b engines.Batch
			b.Put([]byte("a"), value)
			b.Put([]byte("b"), value)
			b.Applied = applied
			writeErr = f.eng.Write(b)
		}
		select { // a reader that found a fault ends the check early
		case readErr = <-results:
			finished++
		default:
		}
	}
	close(stop)
	for ; finished < readers; finished++ {
		select {
		case err := <-results:
			if readErr == nil {
				readErr = err
			}
		case <-time.After(stallTimeout):
			tb.Fatalf("a concurrent reader stalled for %v", stallTimeout)
		}
	}
	if readErr != nil {
		tb.Fatalf("concurrent reader: %v", readErr)
	}
	if writeErr != nil {
		tb.Fatalf("writer: %v", writeErr)
	}
	last := fmt.Appendf(nil, "%d", changes)
	f.expect("after concurrent reads", []Pair{{Key: []byte("a"), Value: last}, {Key: []byte("b"), Value: last}}, engines.Applied{Index: changes, Term: 1})
	f.close()
}

// readUntil reads the engine until stop is closed (and at least once more
// after), returning the first inconsistency it sees.
func readUntil(eng engines.Engine, stop <-chan struct{}) error {
	for {
		stopped := false
		select {
		case <-stop:
			stopped = true
		default:
		}
		if _, _, err := eng.Get([]byte("a")); err != nil {
			return fmt.Errorf("Get: %w", err)
		}
		if _, err := eng.Applied(); err != nil {
			return fmt.Errorf("Applied: %w", err)
		}
		v, err := eng.View()
		if err != nil {
			return fmt.Errorf("View: %w", err)
		}
		pairs, err := Collect(v)
		applied := v.Applied()
		if cerr := v.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("view Close: %w", cerr)
		}
		if err != nil {
			return err
		}
		want := []Pair{}
		if applied.Index > 0 {
			value := fmt.Appendf(nil, "%d", applied.Index)
			want = []Pair{{Key: []byte("a"), Value: value}, {Key: []byte("b"), Value: value}}
		}
		if d := diffPairs(pairs, want); d != "" {
			return fmt.Errorf("a view with Applied().Index %d shows other contents than that change (half a batch, or a position out of step with the contents):\n%s", applied.Index, d)
		}
		if stopped {
			return nil
		}
	}
}
