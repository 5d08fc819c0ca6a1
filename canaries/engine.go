package canaries

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/raftsnap/testbed/engines"
)

// The engine wrappers below each break one clause of the engines.Engine
// contract and delegate everything else to the real engine they wrap.

// liveViewEngine's views are not point-in-time: a view records the
// engine's position when it is taken, but its iterators read whatever the
// live engine holds when they reach each pair, like a paginated scan
// without a snapshot. A snapshot built from such a view claims index i and
// carries pairs of later indexes.
type liveViewEngine struct {
	engines.Engine
	// pacePerPair is the virtual time the scan spends on each pair. The
	// simulator's engine work takes no virtual time, so without it the scan
	// would finish before any concurrent apply could run; a production
	// snapshot of a large state scans for seconds while applies go on.
	pacePerPair time.Duration
}

func (e *liveViewEngine) View() (engines.View, error) {
	applied, err := e.Engine.Applied()
	if err != nil {
		return nil, err
	}
	return &liveView{engine: e.Engine, applied: applied, pace: e.pacePerPair}, nil
}

type liveView struct {
	engine  engines.Engine
	applied engines.Applied
	pace    time.Duration
	closed  bool
}

func (v *liveView) Applied() engines.Applied { return v.applied }

func (v *liveView) Iter() (engines.ViewIterator, error) {
	if v.closed {
		return nil, fmt.Errorf("canaries: live view: %w", engines.ErrClosed)
	}
	return &liveIter{engine: v.engine, pace: v.pace}, nil
}

func (v *liveView) Close() error {
	if v.closed {
		return fmt.Errorf("canaries: live view: %w", engines.ErrClosed)
	}
	v.closed = true
	return nil
}

// liveIter yields, at each Next, the first pair of the live engine after
// the previous key.
type liveIter struct {
	engine     engines.Engine
	pace       time.Duration
	started    bool
	done       bool
	key, value []byte
	err        error
}

func (it *liveIter) Next() bool {
	if it.done {
		return false
	}
	if it.pace > 0 {
		time.Sleep(it.pace)
	}
	key, value, found, err := successor(it.engine, it.key, it.started)
	it.started = true
	if err != nil || !found {
		it.err, it.done = err, true
		it.key, it.value = nil, nil
		return false
	}
	it.key, it.value = key, value
	return true
}

func (it *liveIter) Key() []byte   { return it.key }
func (it *liveIter) Value() []byte { return it.value }
func (it *liveIter) Err() error    { return it.err }
func (it *liveIter) Close() error  { it.done = true; return nil }

// successor returns a copy of the first pair of e's current contents whose
// key is above after (the first pair at all when !started).
func successor(e engines.Engine, after []byte, started bool) (key, value []byte, found bool, err error) {
	v, err := e.View()
	if err != nil {
		return nil, nil, false, err
	}
	it, err := v.Iter()
	if err != nil {
		return nil, nil, false, errors.Join(err, v.Close())
	}
	for it.Next() {
		if started && bytes.Compare(it.Key(), after) <= 0 {
			continue
		}
		key, value, found = bytes.Clone(it.Key()), bytes.Clone(it.Value()), true
		break
	}
	if !found {
		err = it.Err()
	}
	return key, value, found, errors.Join(err, it.Close(), v.Close())
}

// staleKeysEngine installs a snapshot by writing its pairs over the old
// contents in one atomic batch: the install is atomic and honours the
// source's error, but keys absent from the snapshot survive it (the seed
// design's defect).
type staleKeysEngine struct{ engines.Engine }

func (e *staleKeysEngine) Install(src engines.Iterator, applied engines.Applied) error {
	var b engines.Batch
	for src.Next() {
		b.Put(bytes.Clone(src.Key()), bytes.Clone(src.Value()))
	}
	if err := src.Err(); err != nil {
		return err
	}
	b.Applied = applied
	return e.Engine.Write(b)
}

// deltaInstallEngine installs a snapshot whose position is at most two
// entries past the engine's as a delta: its pairs written over the current
// contents (staleKeysEngine's install); any other install is the engine's.
type deltaInstallEngine struct{ engines.Engine }

func (e *deltaInstallEngine) Install(src engines.Iterator, applied engines.Applied) error {
	cur, err := e.Engine.Applied()
	if err != nil {
		return err
	}
	if cur.Index > 0 && applied.Index <= cur.Index+2 {
		return (&staleKeysEngine{Engine: e.Engine}).Install(src, applied)
	}
	return e.Engine.Install(src, applied)
}

func (e *deltaInstallEngine) Sync() error { return engines.Sync(e.Engine) }
func (e *deltaInstallEngine) Checkpoint(dir string) error {
	return engines.Checkpoint(e.Engine, dir)
}

// nonAtomicEngine installs a snapshot as a sequence of ordinary batches:
// one that deletes every old key, then one per few pairs. Each batch
// records the snapshot's position, as a naive use of Batch.Applied does, so
// a crash between two of them leaves a node claiming the snapshot's index
// while holding part of it; and a source that fails half-way leaves the
// same mix behind, error or not.
type nonAtomicEngine struct {
	engines.Engine
	pairsPerBatch int
}

func (e *nonAtomicEngine) Install(src engines.Iterator, applied engines.Applied) error {
	old, err := allKeys(e.Engine)
	if err != nil {
		return err
	}
	wipe := engines.Batch{Applied: applied}
	for _, k := range old {
		wipe.Delete(k)
	}
	if err := e.Engine.Write(wipe); err != nil {
		return err
	}
	b := engines.Batch{Applied: applied}
	for src.Next() {
		b.Put(bytes.Clone(src.Key()), bytes.Clone(src.Value()))
		if len(b.Ops) >= e.pairsPerBatch {
			if err := e.Engine.Write(b); err != nil {
				return err
			}
			b = engines.Batch{Applied: applied}
		}
	}
	if len(b.Ops) > 0 {
		if err := e.Engine.Write(b); err != nil {
			return err
		}
	}
	return src.Err()
}

func allKeys(e engines.Engine) ([][]byte, error) {
	v, err := e.View()
	if err != nil {
		return nil, err
	}
	it, err := v.Iter()
	if err != nil {
		return nil, errors.Join(err, v.Close())
	}
	var keys [][]byte
	for it.Next() {
		keys = append(keys, bytes.Clone(it.Key()))
	}
	return keys, errors.Join(it.Err(), it.Close(), v.Close())
}

// lenientEngine commits whatever pairs the source delivered before it
// failed and reports success: the install behaves as if the stream's
// decoder accepted a damaged or truncated stream (the source is the
// snapshot decoder, whose checksum, count and order errors arrive through
// Err at the end).
type lenientEngine struct{ engines.Engine }

func (e *lenientEngine) Install(src engines.Iterator, applied engines.Applied) error {
	var pairs []pair
	for src.Next() {
		pairs = append(pairs, pair{bytes.Clone(src.Key()), bytes.Clone(src.Value())})
	}
	// src.Err() is ignored: that is the bug.
	return e.Engine.Install(&sliceIter{pairs: pairs}, applied)
}

type pair struct{ key, value []byte }

// sliceIter is an engines.Iterator over pairs held in memory, in order.
type sliceIter struct {
	pairs []pair
	i     int
}

func (s *sliceIter) Next() bool {
	if s.i >= len(s.pairs) {
		return false
	}
	s.i++
	return true
}

func (s *sliceIter) Key() []byte   { return s.pairs[s.i-1].key }
func (s *sliceIter) Value() []byte { return s.pairs[s.i-1].value }
func (s *sliceIter) Err() error    { return nil }

// forgetfulEngine reports the zero position from Applied, as an engine that
// does not read its position record back when it opens. The state machine
// reads it once, at start, to know which replayed log entries to skip; it
// then applies again every entry raft replays after a restart.
type forgetfulEngine struct{ engines.Engine }

func (e *forgetfulEngine) Applied() (engines.Applied, error) { return engines.Applied{}, nil }

// Each planted engine bug keeps the engine's durability barrier
// (engines.Syncer), so that the node still runs the zero-copy store: the
// bug, not a missing capability, is what the checkers must find.

func (e *liveViewEngine) Sync() error  { return engines.Sync(e.Engine) }
func (e *staleKeysEngine) Sync() error { return engines.Sync(e.Engine) }
func (e *nonAtomicEngine) Sync() error { return engines.Sync(e.Engine) }
func (e *lenientEngine) Sync() error   { return engines.Sync(e.Engine) }
func (e *forgetfulEngine) Sync() error { return engines.Sync(e.Engine) }

// ... and its checkpoints (engines.Checkpointer), so that a node still runs
// the checkpoint store when one is asked for.

func (e *liveViewEngine) Checkpoint(dir string) error  { return engines.Checkpoint(e.Engine, dir) }
func (e *staleKeysEngine) Checkpoint(dir string) error { return engines.Checkpoint(e.Engine, dir) }
func (e *nonAtomicEngine) Checkpoint(dir string) error { return engines.Checkpoint(e.Engine, dir) }
func (e *lenientEngine) Checkpoint(dir string) error   { return engines.Checkpoint(e.Engine, dir) }
func (e *forgetfulEngine) Checkpoint(dir string) error { return engines.Checkpoint(e.Engine, dir) }

func (e *liveViewEngine) OpenCheckpoint(dir string) (engines.View, error) {
	return engines.OpenCheckpoint(e.Engine, dir)
}
func (e *staleKeysEngine) OpenCheckpoint(dir string) (engines.View, error) {
	return engines.OpenCheckpoint(e.Engine, dir)
}
func (e *nonAtomicEngine) OpenCheckpoint(dir string) (engines.View, error) {
	return engines.OpenCheckpoint(e.Engine, dir)
}
func (e *lenientEngine) OpenCheckpoint(dir string) (engines.View, error) {
	return engines.OpenCheckpoint(e.Engine, dir)
}
func (e *forgetfulEngine) OpenCheckpoint(dir string) (engines.View, error) {
	return engines.OpenCheckpoint(e.Engine, dir)
}

func (e *liveViewEngine) RestoreCheckpoint(dir string) error {
	return engines.RestoreCheckpoint(e.Engine, dir)
}
func (e *staleKeysEngine) RestoreCheckpoint(dir string) error {
	return engines.RestoreCheckpoint(e.Engine, dir)
}
func (e *nonAtomicEngine) RestoreCheckpoint(dir string) error {
	return engines.RestoreCheckpoint(e.Engine, dir)
}
func (e *lenientEngine) RestoreCheckpoint(dir string) error {
	return engines.RestoreCheckpoint(e.Engine, dir)
}
func (e *forgetfulEngine) RestoreCheckpoint(dir string) error {
	return engines.RestoreCheckpoint(e.Engine, dir)
}
