package enginetest

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/raftsnap/testbed/engines"
)

// memEngine is the suite's reference engine: contents are an immutable
// memState replaced whole on every change (copy-on-write), so a view is just a
// pointer to the state of its time. It is deliberately simple, and strict
// where the contract allows: it rejects closing an engine with open views and
// closing a view twice or with open iterators, which catches suite bugs.
//
// Each field of memBugs plants one contract violation, to show the suite
// reports it.
type memEngine struct {
	storage *memStorage
	bugs    memBugs

	mu       sync.Mutex
	state    *memState
	closed   bool
	views    int
	installs int // installs so far, for installEmptiesViews
	// halfState, under writeVisibleOpByOp, is a state holding part of a
	// batch; View closes halfSeen when it takes a view of it.
	halfState *memState
	halfSeen  chan struct{}
}

// memBugs are planted contract violations; the zero value is a correct engine.
type memBugs struct {
	viewReadsLiveData        bool // a view shows the engine's current state, not its own
	viewTakenAtIter          bool // each Iter shows the state of its own time, not the view's
	installEmptiesViews      bool // views older than an install read empty (Pebble snapshots after an excise)
	installKeepsStaleKeys    bool // install merges into the old contents
	installCommitsOnError    bool // a failing source's pairs so far are committed, the error returned
	installIgnoresSourceErr  bool // src.Err() is never looked at
	installSkipsOrderCheck   bool // unsorted or repeated source keys are accepted
	installDropsConfig       bool // install records Index and Term but not Config
	installNotDurable        bool // install is lost on reopen
	writeIgnoresApplied      bool // Write stores the ops but not b.Applied
	writeFirstOpWins         bool // ops on the same key apply in reverse order
	writeEmptyValueDeletes   bool // a put of an empty value deletes the key
	writeRetainsBuffers      bool // Write keeps the caller's value slices
	writeNotAtomicOnReject   bool // ops before a bad one are committed
	writeVisibleOpByOp       bool // each op of a batch is committed on its own, and a view sees the first alone
	getReturnsInternalSlice  bool // Get's value aliases the stored one
	acceptsEmptyKey          bool // no ErrEmptyKey
	acceptsOversizedKey      bool // no ErrTooLarge for keys
	ignoresClose             bool // operations after Close succeed
	iteratesInInsertionOrder bool // a view yields keys unsorted
	syncIgnoresClose         bool // Sync succeeds after Close
}

// memStorage is what survives a close: the state last committed.
type memStorage struct {
	bugs    memBugs
	mu      sync.Mutex
	durable *memState
}

// memState is one immutable version of the contents.
type memState struct {
	values  map[string][]byte
	keys    []string // sorted, or in insertion order under iteratesInInsertionOrder
	applied engines.Applied
}

var emptyState = &memState{values: map[string][]byte{}}

func newMemStorage(bugs memBugs) *memStorage {
	return &memStorage{bugs: bugs, durable: emptyState}
}

// opener returns an Opener over this storage.
func (s *memStorage) opener() Opener {
	return func() (engines.Engine, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return &memEngine{storage: s, bugs: s.bugs, state: s.durable}, nil
	}
}

func (s *memStorage) commit(st *memState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.durable = st
}

var errMemClosed = fmt.Errorf("memengine: %w", engines.ErrClosed)

// current returns the state to read, or ErrClosed.
func (e *memEngine) current() (*memState, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed && !e.bugs.ignoresClose {
		return nil, errMemClosed
	}
	return e.state, nil
}

func (e *memEngine) checkKey(key []byte) error {
	if len(key) == 0 && !e.bugs.acceptsEmptyKey {
		return engines.ErrEmptyKey
	}
	if len(key) > engines.MaxKeyLen && !e.bugs.acceptsOversizedKey {
		return fmt.Errorf("memengine: key of %d bytes: %w", len(key), engines.ErrTooLarge)
	}
	return nil
}

func checkValue(value []byte) error {
	if len(value) > engines.MaxValueLen {
		return fmt.Errorf("memengine: value of %d bytes: %w", len(value), engines.ErrTooLarge)
	}
	return nil
}

func (e *memEngine) Get(key []byte) ([]byte, bool, error) {
	st, err := e.current()
	if err != nil {
		return nil, false, err
	}
	if err := e.checkKey(key); err != nil {
		return nil, false, err
	}
	v, ok := st.values[string(key)]
	if e.bugs.getReturnsInternalSlice {
		return v, ok, nil
	}
	return bytes.Clone(v), ok, nil
}

func (e *memEngine) Applied() (engines.Applied, error) {
	st, err := e.current()
	if err != nil {
		return engines.Applied{}, err
	}
	return cloneApplied(st.applied), nil
}

// update replaces the state under the engine's lock.
func (e *memEngine) update(change func(old *memState) (*memState, error)) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed && !e.bugs.ignoresClose {
		return errMemClosed
	}
	next, err := change(e.state)
	if next != nil {
		e.state = next
	}
	return err
}

func (e *memEngine) Write(b engines.Batch) error {
	if e.bugs.writeVisibleOpByOp && len(b.Ops) > 1 {
		for i, op := range b.Ops {
			if err := e.Write(engines.Batch{Ops: []engines.Op{op}, Applied: b.Applied}); err != nil {
				return err
			}
			if i == 0 {
				e.awaitViewOfHalfBatch()
			}
		}
		return nil
	}
	if !e.bugs.writeNotAtomicOnReject {
		if err := e.validate(b.Ops); err != nil {
			return err
		}
	}
	return e.update(func(old *memState) (*memState, error) {
		values := maps.Clone(old.values)
		keys := slices.Clone(old.keys)
		ops := b.Ops
		if e.bugs.writeFirstOpWins {
			ops = slices.Clone(ops)
			slices.Reverse(ops)
		}
		var err error
		for _, op := range ops {
			if err = e.validate([]engines.Op{op}); err != nil {
				break // only reachable under writeNotAtomicOnReject
			}
			k := string(op.Key)
			_, had := values[k]
			if op.Kind == engines.OpDelete || (e.bugs.writeEmptyValueDeletes && len(op.Value) == 0) {
				delete(values, k)
				if had {
					keys = slices.DeleteFunc(keys, func(x string) bool { return x == k })
				}
				continue
			}
			v := bytes.Clone(op.Value)
			if e.bugs.writeRetainsBuffers {
				v = op.Value
			}
			if v == nil {
				v = []byte{}
			}
			values[k] = v
			if !had {
				keys = append(keys, k)
			}
		}
		if !e.bugs.iteratesInInsertionOrder {
			slices.Sort(keys)
		}
		applied := cloneApplied(b.Applied)
		if e.bugs.writeIgnoresApplied {
			applied = old.applied
		}
		next := &memState{values: values, keys: keys, applied: applied}
		e.storage.commit(next)
		return next, err
	})
}

// awaitViewOfHalfBatch waits (a bounded time) for a view of the current
// state, so that the planted writeVisibleOpByOp bug shows on every run
// rather than when the scheduler happens to interleave a reader.
func (e *memEngine) awaitViewOfHalfBatch() {
	seen := make(chan struct{})
	e.mu.Lock()
	e.halfState, e.halfSeen = e.state, seen
	e.mu.Unlock()
	select {
	case <-seen:
	case <-time.After(100 * time.Millisecond):
	}
	e.mu.Lock()
	e.halfState, e.halfSeen = nil, nil
	e.mu.Unlock()
}

func (e *memEngine) validate(ops []engines.Op) error {
	for _, op := range ops {
		if op.Kind != engines.OpPut && op.Kind != engines.OpDelete {
			return fmt.Errorf("memengine: unknown op kind %d", op.Kind)
		}
		if err := e.checkKey(op.Key); err != nil {
			return err
		}
		if err := checkValue(op.Value); err != nil {
			return err
		}
	}
	return nil
}

func (e *memEngine) Install(src engines.Iterator, applied engines.Applied) error {
	return e.update(func(old *memState) (*memState, error) {
		values := map[string][]byte{}
		var keys []string
		if e.bugs.installKeepsStaleKeys {
			values = maps.Clone(old.values)
			keys = slices.Clone(old.keys)
		}
		var last []byte
		var err error
		for src.Next() {
			k, v := src.Key(), src.Value()
			if err = e.checkKey(k); err != nil {
				break
			}
			if err = checkValue(v); err != nil {
				break
			}
			if last != nil && bytes.Compare(last, k) >= 0 && !e.bugs.installSkipsOrderCheck {
				err = fmt.Errorf("memengine: key %q after %q: %w", k, last, engines.ErrKeyOrder)
				break
			}
			last = bytes.Clone(k)
			if _, had := values[string(k)]; !had {
				keys = append(keys, string(k))
			}
			values[string(k)] = presentValue(v)
		}
		if err == nil && !e.bugs.installIgnoresSourceErr {
			err = src.Err()
		}
		if err != nil && !e.bugs.installCommitsOnError {
			return nil, err
		}
		if !e.bugs.iteratesInInsertionOrder {
			slices.Sort(keys)
		}
		applied = cloneApplied(applied)
		if e.bugs.installDropsConfig {
			applied.Config = nil
		}
		next := &memState{values: values, keys: keys, applied: applied}
		e.installs++
		if !e.bugs.installNotDurable {
			e.storage.commit(next)
		}
		return next, err
	})
}

func (e *memEngine) View() (engines.View, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed && !e.bugs.ignoresClose {
		return nil, errMemClosed
	}
	e.views++
	if e.halfSeen != nil && e.state == e.halfState {
		close(e.halfSeen)
		e.halfSeen = nil
	}
	return &memView{engine: e, state: e.state, installs: e.installs}, nil
}

// Sync is the durability barrier: every commit of the reference engine is
// durable already, so it only checks that the engine is open.
func (e *memEngine) Sync() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed && !e.bugs.syncIgnoresClose {
		return errMemClosed
	}
	return nil
}

func (e *memEngine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed && !e.bugs.ignoresClose {
		return errMemClosed
	}
	if e.views != 0 {
		return fmt.Errorf("memengine: Close with %d views open", e.views)
	}
	e.closed = true
	return nil
}

type memView struct {
	engine   *memEngine
	state    *memState
	installs int // the engine's installs when the view was taken

	mu     sync.Mutex
	iters  int
	closed bool
}

// read returns the state the view shows.
func (v *memView) read() *memState {
	v.engine.mu.Lock()
	defer v.engine.mu.Unlock()
	switch {
	case v.engine.bugs.viewReadsLiveData, v.engine.bugs.viewTakenAtIter:
		return v.engine.state
	case v.engine.bugs.installEmptiesViews && v.engine.installs != v.installs:
		return &memState{values: map[string][]byte{}, applied: v.state.applied}
	}
	return v.state
}

func (v *memView) Applied() engines.Applied {
	if v.engine.bugs.viewReadsLiveData {
		return v.read().applied
	}
	return v.state.applied
}

func (v *memView) Iter() (engines.ViewIterator, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil, errViewClosed
	}
	v.iters++
	return &memIterator{view: v, state: v.read(), next: -1}, nil
}

var errViewClosed = errors.New("memengine: view closed")

func (v *memView) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return errViewClosed
	}
	if v.iters != 0 {
		return fmt.Errorf("memengine: view Close with %d iterators open", v.iters)
	}
	v.closed = true
	v.engine.mu.Lock()
	v.engine.views--
	v.engine.mu.Unlock()
	return nil
}

type memIterator struct {
	view   *memView
	state  *memState
	next   int
	closed bool
}

func (it *memIterator) Next() bool {
	if it.view.engine.bugs.viewReadsLiveData {
		// A live view follows the engine even mid-iteration.
		it.state = it.view.read()
	}
	it.next++
	return it.next < len(it.state.keys)
}

func (it *memIterator) Key() []byte   { return []byte(it.state.keys[it.next]) }
func (it *memIterator) Value() []byte { return it.state.values[it.state.keys[it.next]] }
func (it *memIterator) Err() error    { return nil }

func (it *memIterator) Close() error {
	if it.closed {
		return errors.New("memengine: iterator closed twice")
	}
	it.closed = true
	it.view.mu.Lock()
	it.view.iters--
	it.view.mu.Unlock()
	return nil
}
