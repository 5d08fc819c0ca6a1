// Package enginetest owns the conformance suite for engines.Engine: one call,
// Run, checks an implementation against every promise engine.go writes down
// (a model-based state machine test driven by rapid, point-in-time views under
// concurrent writes and installs, whole batches under concurrent readers,
// install semantics, typed errors, durability across reopen, and the
// durability barrier of an engine that offers engines.Syncer). It also owns the few helpers other tests need to feed and
// read engines: Pair, SliceIterator and Collect.
//
// The suite's own tests run it against a small in-memory reference engine,
// which must pass, and against planted-bug variants of it, each of which must
// be reported: a checker that cannot fail proves nothing.
package enginetest

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"pgregory.net/rapid"

	"github.com/raftsnap/testbed/engines"
)

// Opener opens the same underlying storage again on each call (used for
// reopen). The suite closes every engine it opens before calling it again.
type Opener func() (engines.Engine, error)

// Run runs the whole suite; newStorage is called once per sub-test and returns
// an Opener over fresh, empty storage. The model-based sub-test also calls it
// once per rapid check, so storage it creates (for example under t.TempDir())
// lives until that sub-test ends. -rapid.checks and -rapid.steps size the
// model-based sub-test (rapid's defaults: 100 checks of about 30 steps);
// -short divides them as rapid does. A failing model run prints the shrunk
// operations and a -rapid.seed to replay it, and saves a rapid fail file under
// the calling package's testdata/rapid unless -rapid.nofailfile is given.
func Run(t *testing.T, newStorage func(t *testing.T) Opener) {
	t.Helper()
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			c.run(t, func() Opener { return newStorage(t) })
		})
	}
}

// check is one property of the suite. It reports through tb, which is the
// sub-test's *testing.T under Run and a recording fake in the suite's own
// tests; storage returns an Opener over fresh, empty storage on each call.
// rapid.TB is the reporter type because *testing.T, *rapid.T and a fake all
// satisfy it, so one check body serves all three.
type check struct {
	name string
	run  func(tb rapid.TB, storage func() Opener)
}

// checks is the suite, in the order Run runs it.
var checks = []check{
	{"NewEngineIsEmptyWithZeroApplied", checkNewEngineIsEmpty},
	{"ModelBasedStateMachine", checkModel},
	{"ViewIsPointInTimeWhileWritesAndInstallRun", checkViewIsPointInTime},
	{"ViewIsReadableFromAnotherGoroutineAfterInstall", checkViewFromAnotherGoroutine},
	{"ConcurrentReadersSeeWholeBatches", checkConcurrentReadersSeeWholeBatches},
	{"InstallRemovesKeysAbsentFromSource", checkInstallRemovesAbsentKeys},
	{"InstallOfEmptySourceLeavesNoKeys", checkInstallEmptySource},
	{"InstallRecordsAppliedIncludingConfig", checkInstallRecordsApplied},
	{"InstallOfManyKeysRoundTrips", checkInstallManyKeys},
	{"EmptyKeyIsRejectedWithErrEmptyKey", checkEmptyKeyRejected},
	{"OversizedKeyOrValueIsRejectedWithErrTooLarge", checkTooLargeRejected},
	{"RejectedBatchWritesNothing", checkRejectedBatchWritesNothing},
	{"ClosedEngineReturnsErrClosed", checkClosedEngine},
	{"WritesSurviveReopen", checkWritesSurviveReopen},
	{"InstallSurvivesReopen", checkInstallSurvivesReopen},
	{"SyncerSyncsAndRefusesWhenClosed", checkSyncer},
}

// Pair is one key-value pair, as SliceIterator yields and Collect returns it.
type Pair struct{ Key, Value []byte }

// SliceIterator returns an install source over pairs, in the order given (the
// caller sorts them; the suite also feeds deliberately unsorted ones). Key and
// Value point into buffers that are scrambled and reused by the next call to
// Next, as the Iterator contract allows, so an engine that keeps them without
// copying is caught. Its Err is always nil.
func SliceIterator(pairs []Pair) engines.Iterator {
	return &sliceIterator{pairs: pairs}
}

// sliceIterator yields pairs, then fails with err after failAfter pairs when
// err is set (failAfter = len(pairs) fails after the last one).
type sliceIterator struct {
	pairs      []Pair
	next       int
	key, value []byte
	failAfter  int
	err        error
	done       bool
}

// failingIterator returns a source that yields the first n pairs and then
// stops with err, as a decoder that hits a corrupt or truncated stream does.
func failingIterator(pairs []Pair, n int, err error) engines.Iterator {
	return &sliceIterator{pairs: pairs, failAfter: n, err: err}
}

func (it *sliceIterator) Next() bool {
	scramble(it.key)
	scramble(it.value)
	if it.done || it.next == len(it.pairs) || (it.err != nil && it.next == it.failAfter) {
		it.done = true
		it.key, it.value = it.key[:0], it.value[:0]
		return false
	}
	p := it.pairs[it.next]
	it.next++
	it.key = append(it.key[:0], p.Key...)
	it.value = append(it.value[:0], p.Value...)
	return true
}

func (it *sliceIterator) Key() []byte   { return it.key }
func (it *sliceIterator) Value() []byte { return it.value }

func (it *sliceIterator) Err() error {
	if it.done {
		return it.err
	}
	return nil
}

// scramble overwrites b so that anyone still holding it reads garbage.
// Flipping every bit guarantees each byte changes.
func scramble(b []byte) {
	for i := range b {
		b[i] ^= 0xff
	}
}

// Collect reads the whole of v through one iterator and returns copies of its
// pairs. It fails if the iterator fails to open, reports an error, yields keys
// that are not strictly increasing, or fails to close.
func Collect(v engines.View) ([]Pair, error) {
	it, err := v.Iter()
	if err != nil {
		return nil, fmt.Errorf("enginetest: view Iter: %w", err)
	}
	pairs, err := collectIter(it)
	if cerr := it.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("enginetest: view iterator Close: %w", cerr)
	}
	return pairs, err
}

// collectIter copies every pair of it, checking strict key order.
func collectIter(it engines.Iterator) ([]Pair, error) {
	var pairs []Pair
	for it.Next() {
		var err error
		if pairs, err = appendPair(pairs, it); err != nil {
			return pairs, err
		}
	}
	if err := it.Err(); err != nil {
		return pairs, fmt.Errorf("enginetest: view iterator: %w", err)
	}
	return pairs, nil
}

// appendPair appends a copy of it's current pair to pairs, failing if its
// key is not above the last one. An empty value is stored non-nil, so that a
// Pair's Value is nil only for a pair that was never read.
func appendPair(pairs []Pair, it engines.Iterator) ([]Pair, error) {
	p := Pair{Key: bytes.Clone(it.Key()), Value: bytes.Clone(it.Value())}
	if p.Value == nil {
		p.Value = []byte{}
	}
	if n := len(pairs); n > 0 && bytes.Compare(pairs[n-1].Key, p.Key) >= 0 {
		return pairs, fmt.Errorf("%w: view iterator yielded key %q after %q", errViewOrder, p.Key, pairs[n-1].Key)
	}
	return append(pairs, p), nil
}

// errViewOrder marks a view whose iterator broke strict key order.
var errViewOrder = errors.New("enginetest: view keys not strictly increasing")
