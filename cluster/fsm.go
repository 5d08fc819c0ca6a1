// Package cluster owns one Raft node of the testbed: hashicorp/raft over an
// engine, a log/stable store and a snapshot store, and the key-value state
// machine (the seed design's ObjectShardStateMachine) whose snapshots stream
// through package snapshot. Subpackages hold the Pebble-backed log store and
// the snapshot store that work on a vfs.FS.
package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/raftsnap/testbed/engines"
	"github.com/raftsnap/testbed/snapshot"
)

// FSM is the key-value state machine: a raft.BatchingFSM over an Engine.
//
// It is persistent: every batch of entries is written to the engine together
// with the position it reaches, so the node runs with raft's
// NoSnapshotRestoreOnStart and, after a restart, skips the entries at or
// below the engine's recorded index that raft replays (see ApplyBatch and
// RecoverFromSnapshots).
type FSM struct {
	engine engines.Engine
	hooks  FSMHooks

	// write serializes what changes the engine or must see it unchanging
	// (ApplyBatch, Snapshot, Restore, RecoverFromSnapshots on raft's apply
	// goroutine; StreamView and ReachPosition, for a zero-copy store, on
	// its replication and snapshot goroutines). It is held across engine
	// I/O, so it is a channel, not a sync.Mutex: inside a synctest bubble
	// a goroutine waiting on a channel is durably blocked and one waiting
	// on a mutex is not, and a store call that waits for the rest of the
	// bubble to block (sim.Quiescer) while another goroutine waits for
	// write would wait forever.
	write gate
	// mu guards the fields below for readers on other goroutines. It is
	// held only to read or set them, never across engine I/O: a reader of
	// Applied must not wait behind a slow fsync (and inside a synctest
	// bubble a goroutine blocked on a mutex is not durably blocked, so a
	// virtual-time delay in that fsync would never end: the run hangs).
	// Writers hold write as well when they set a field, so they may read
	// the fields under write alone.
	mu sync.Mutex
	// applied mirrors engine.Applied(). Invariant: it never moves
	// backwards; Restore of a snapshot at or below it keeps the engine's
	// newer state.
	applied engines.Applied
	// failed is the first engine error; after it the FSM refuses to
	// apply, because raft would otherwise count entries as applied that
	// the engine never stored.
	failed error

	// contents counts the engine's pairs and their bytes, so that a
	// snapshot streamed from a view knows its size before its first byte
	// (see StreamView). It is guarded by write.
	contents contentSize
	// contentsGen counts the times contents was reset, so that a count of
	// an older view never overwrites a newer reset (see StreamView).
	contentsGen uint64
	// local, if set, takes the state machine's local snapshots instead of
	// a stream of the whole state (see UseLocalSnapshots). Set before raft
	// starts.
	local LocalSnapshotter
}

// contentSize is the number of pairs in the engine and the sum of their
// key and value lengths. ApplyBatch keeps it exact from the old values it
// reads anyway; after a start it is unknown until a view is counted.
type contentSize struct {
	pairs, kvBytes uint64
	known          bool
}

// LocalSnapshotter takes a local Raft snapshot of the state machine
// without copying its state (ZeroCopyStore). FSM.Snapshot calls it on the
// apply goroutine with the engine's position, so it must be O(1).
type LocalSnapshotter interface {
	LocalSnapshot(at engines.Applied) (raft.FSMSnapshot, error)
}

// UseLocalSnapshots makes Snapshot hand out l's snapshots. Call it before
// raft starts.
func (f *FSM) UseLocalSnapshots(l LocalSnapshotter) {
	f.write.Lock()
	defer f.write.Unlock()
	f.local = l
}

// FSMHooks are event listeners for the snapshot path, for traces and
// counters. Each may be nil; they run on raft's goroutines and must return
// quickly.
type FSMHooks struct {
	// Persisted is called after every FSMSnapshot.Persist, with the
	// position the snapshot reflects and its error (nil when kept).
	Persisted func(h snapshot.Header, stats snapshot.Stats, err error)
	// Restored is called after every Restore, successful or not. kept
	// reports a snapshot that was at or below the engine's applied index:
	// verified but not installed, the engine keeping its newer state.
	Restored func(h snapshot.Header, kept bool, err error)
	// Referenced is called after every zero-copy local snapshot
	// (ZeroCopyStore), with the engine position it references and its
	// error (nil when the reference was kept).
	Referenced func(at engines.Applied, err error)
	// Served is called when a ZeroCopyStore opens a reference to stream
	// it from a fresh view, with the position it sends and the stream's
	// size, or the error that kept it from serving.
	Served func(h snapshot.Header, size int64, err error)
	// LocalRestored is called after a CheckpointStore restored the engine
	// from a local checkpoint at start, with the checkpoint's position.
	LocalRestored func(at engines.Applied, err error)
	// Applied is called after each batch of entries reaches the engine,
	// with the entries newly applied (not those skipped as replayed).
	Applied func(logs []*raft.Log)
}

// NewFSM returns the state machine over e, resuming from the position e
// recorded.
func NewFSM(e engines.Engine, hooks FSMHooks) (*FSM, error) {
	applied, err := e.Applied()
	if err != nil {
		return nil, fmt.Errorf("cluster: reading applied position: %w", err)
	}
	return &FSM{engine: e, hooks: hooks, applied: applied, write: make(gate, 1)}, nil
}

// gate is a mutex made of a one-slot channel (see FSM.write).
type gate chan struct{}

func (g gate) Lock()   { g <- struct{}{} }
func (g gate) Unlock() { <-g }

// ErrFSMFailed wraps the engine error that stopped the state machine.
var ErrFSMFailed = errors.New("cluster: state machine stopped after an engine error")

// Replayed is the response for a log entry the engine had already applied
// before a restart.
type Replayed struct{ Index uint64 }

// Apply applies one entry; see ApplyBatch.
func (f *FSM) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch applies committed entries in one engine batch. Entries at or
// below the recorded index are skipped (they were applied before a restart
// and raft replays them because it knows only its snapshot's index). Each
// response is a Result, a Replayed, or an error.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	f.write.Lock()
	defer f.write.Unlock()
	resp := make([]any, len(logs))
	if f.failed != nil {
		for i := range resp {
			resp[i] = f.failed
		}
		return resp
	}
	next := f.applied
	contents := f.contents
	batch := engines.Batch{}
	// pending holds the values written earlier in this batch, so a later
	// command in the same batch reads them (nil value with ok = deleted).
	pending := map[string]*[]byte{}
	read := func(key []byte) ([]byte, bool, error) {
		if v, ok := pending[string(key)]; ok {
			return *v, *v != nil, nil
		}
		return f.engine.Get(key)
	}
	for i, l := range logs {
		if l.Index <= next.Index {
			resp[i] = Replayed{Index: l.Index}
			continue
		}
		switch l.Type {
		case raft.LogConfiguration:
			next.Config = bytes.Clone(l.Data)
		case raft.LogCommand:
			res, err := f.applyCommand(l, &batch, pending, read, &contents)
			if err != nil {
				resp[i] = err
			} else {
				resp[i] = res
			}
		default:
			continue // raft sends only commands and configurations
		}
		next.Index, next.Term = l.Index, l.Term
	}
	if next.Index == f.applied.Index {
		return resp
	}
	batch.Applied = next
	if err := f.engine.Write(batch); err != nil {
		failed := fmt.Errorf("%w: %w", ErrFSMFailed, err)
		f.mu.Lock()
		f.failed = failed
		f.mu.Unlock()
		for i := range resp {
			resp[i] = failed
		}
		return resp
	}
	f.contents = contents
	f.mu.Lock()
	f.applied = next
	f.mu.Unlock()
	if f.hooks.Applied != nil {
		var fresh []*raft.Log
		for i, l := range logs {
			if _, replayed := resp[i].(Replayed); !replayed && (l.Type == raft.LogCommand || l.Type == raft.LogConfiguration) {
				fresh = append(fresh, l)
			}
		}
		f.hooks.Applied(fresh)
	}
	return resp
}

func (f *FSM) applyCommand(l *raft.Log, batch *engines.Batch, pending map[string]*[]byte, read func([]byte) ([]byte, bool, error), contents *contentSize) (Result, error) {
	c, err := DecodeCommand(l.Data)
	if err != nil {
		// A malformed entry is applied as a no-op on every node alike.
		return Result{}, err
	}
	old, found, err := read(c.Key)
	if err != nil {
		return Result{}, err
	}
	res := Result{Value: old, Found: found, Index: l.Index}
	put := func(v []byte) {
		contents.replace(c.Key, old, found, v, true)
		v = bytes.Clone(v)
		if v == nil {
			v = []byte{}
		}
		batch.Put(bytes.Clone(c.Key), v)
		pending[string(c.Key)] = &v
	}
	switch c.Op {
	case OpSet:
		put(c.Value)
	case OpDelete:
		contents.replace(c.Key, old, found, nil, false)
		batch.Delete(bytes.Clone(c.Key))
		var gone []byte
		pending[string(c.Key)] = &gone
	case OpGet:
	case OpCAS:
		if (c.ExpectAbsent && !found) || (!c.ExpectAbsent && found && bytes.Equal(old, c.Expected)) {
			put(c.Value)
			res.Swapped = true
		}
	}
	return res, nil
}

// replace accounts for key changing from old (if found) to v (if set).
// A later op on the same key within one batch sees the earlier one's value
// as old (ApplyBatch's pending reads), so the counts stay exact.
func (c *contentSize) replace(key, old []byte, found bool, v []byte, set bool) {
	if found {
		c.pairs--
		c.kvBytes -= uint64(len(key) + len(old))
	}
	if set {
		c.pairs++
		c.kvBytes += uint64(len(key) + len(v))
	}
}

// Snapshot takes the engine's point-in-time view: O(1), because raft calls
// it on the goroutine that applies entries. With UseLocalSnapshots it
// takes no view at all and hands the engine's position to the local
// snapshotter.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.write.Lock()
	defer f.write.Unlock()
	if f.failed != nil {
		return nil, f.failed
	}
	if f.local != nil {
		return f.local.LocalSnapshot(f.applied)
	}
	v, err := f.engine.View()
	if err != nil {
		return nil, err
	}
	return &observedSnapshot{FSMSnapshot: snapshot.NewFSMSnapshot(v), header: snapshot.HeaderFor(v.Applied()), hooks: f.hooks}, nil
}

// observedSnapshot reports each Persist to the hooks.
type observedSnapshot struct {
	*snapshot.FSMSnapshot
	header snapshot.Header
	hooks  FSMHooks
}

func (s *observedSnapshot) Persist(sink raft.SnapshotSink) error {
	err := s.FSMSnapshot.Persist(sink)
	if s.hooks.Persisted != nil {
		s.hooks.Persisted(s.header, s.FSMSnapshot.Stats, err)
	}
	return err
}

// Restore replaces the engine's contents by the snapshot in rc through the
// engine's atomic install. A bad stream leaves the engine as it was.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	f.write.Lock()
	defer f.write.Unlock()
	dec, err := snapshot.NewDecoder(rc)
	if err != nil {
		if f.hooks.Restored != nil {
			f.hooks.Restored(snapshot.Header{}, false, err)
		}
		return fmt.Errorf("cluster: restoring snapshot: %w", err)
	}
	h := dec.Header()
	f.mu.Lock()
	current := f.applied
	failed := f.failed
	f.mu.Unlock()
	if failed == nil && current.Index > 0 && h.Index <= current.Index {
		// hashicorp/raft restores every snapshot it is sent, even one at or
		// below what this state machine already applied (a leader that
		// walked its nextIndex back past its log sends its older snapshot
		// again; see README, hashicorp/raft#205). The engine already holds
		// a longer prefix of the same committed log, so installing would
		// only move the state backwards; raft re-sends the later entries
		// and ApplyBatch skips those it has. Read the stream to the end all
		// the same, so a damaged one is still refused.
		for dec.Next() {
		}
		err := dec.Err()
		if f.hooks.Restored != nil {
			f.hooks.Restored(h, err == nil, err)
		}
		if err != nil {
			return fmt.Errorf("cluster: restoring snapshot: %w", err)
		}
		return nil
	}
	err = f.engine.Install(dec, h.Applied())
	if f.hooks.Restored != nil {
		f.hooks.Restored(h, false, err)
	}
	if err != nil {
		return fmt.Errorf("cluster: restoring snapshot: %w", err)
	}
	f.setContents(contentSize{pairs: dec.Count(), kvBytes: dec.KVBytes(), known: true})
	f.mu.Lock()
	f.applied = h.Applied()
	f.failed = nil // the install replaced whatever state the error left
	f.mu.Unlock()
	return nil
}

// ReachPosition records raft index (and its term) in the engine if the
// engine is below it. It is for raft's snapshot index, which counts log
// entries raft never hands the state machine (a new leader's no-op,
// Barrier entries): every command and configuration change at or below it
// has been applied, so the engine's state is already the state at index,
// and recording it lets a restart resume from there, where raft compacted
// its log. The engine's configuration stays as it was.
func (f *FSM) ReachPosition(index, term uint64) error {
	f.write.Lock()
	defer f.write.Unlock()
	return f.reach(index, term)
}

// reach is ReachPosition; the caller holds write.
func (f *FSM) reach(index, term uint64) error {
	if f.failed != nil {
		return f.failed
	}
	if index <= f.applied.Index {
		return nil
	}
	next := engines.Applied{Index: index, Term: term, Config: f.applied.Config}
	if err := f.engine.Write(engines.Batch{Applied: next}); err != nil {
		return fmt.Errorf("cluster: recording snapshot position %d: %w", index, err)
	}
	f.mu.Lock()
	f.applied = next
	f.mu.Unlock()
	return nil
}

// HoldAt brings the engine to raft's snapshot index as ReachPosition does
// and runs fn while no entry can apply, with the engine's exact position
// (index or above: entries raft applied after it took the snapshot stay
// applied) and the count of its pairs and their bytes (counted false if
// the count is not known). A checkpoint taken by fn is the state at that
// position and nothing else.
func (f *FSM) HoldAt(index, term uint64, fn func(at engines.Applied, pairs, kvBytes uint64, counted bool) error) error {
	f.write.Lock()
	defer f.write.Unlock()
	if err := f.reach(index, term); err != nil {
		return err
	}
	f.mu.Lock()
	at := f.applied
	f.mu.Unlock()
	return fn(at, f.contents.pairs, f.contents.kvBytes, f.contents.known)
}

// Reload replaces the engine's state by running replace (a restore from a
// local checkpoint, before raft starts) while no entry can apply, then
// reads the engine's position back; pairs and kvBytes count the new
// contents if counted. A failed replace leaves the state machine as it
// was.
func (f *FSM) Reload(replace func() error, pairs, kvBytes uint64, counted bool) error {
	f.write.Lock()
	defer f.write.Unlock()
	if err := replace(); err != nil {
		return err
	}
	applied, err := f.engine.Applied()
	if err != nil {
		return fmt.Errorf("cluster: reading applied position after a restore: %w", err)
	}
	f.setContents(contentSize{pairs: pairs, kvBytes: kvBytes, known: counted})
	f.mu.Lock()
	f.applied = applied
	f.failed = nil
	f.mu.Unlock()
	return nil
}

// setContents replaces the content count; the caller holds write.
func (f *FSM) setContents(c contentSize) {
	f.contents = c
	f.contentsGen++
}

// StreamView takes a point-in-time view of the engine together with the
// number of pairs in it and the sum of their key and value lengths, which
// give the size of the view's stream (snapshot.StreamSize). The counts are
// kept exact as entries apply; when they are unknown (after a start) the
// view is counted once, outside the lock, and the changes applied
// meanwhile are added on. The caller owns the view.
func (f *FSM) StreamView() (v engines.View, pairs, kvBytes uint64, err error) {
	f.write.Lock()
	if f.failed != nil {
		f.write.Unlock()
		return nil, 0, 0, f.failed
	}
	v, err = f.engine.View()
	if err != nil {
		f.write.Unlock()
		return nil, 0, 0, err
	}
	c := f.contents
	if c.known {
		f.write.Unlock()
		return v, c.pairs, c.kvBytes, nil
	}
	// From here on ApplyBatch accumulates the changes after this view.
	f.setContents(contentSize{})
	gen := f.contentsGen
	f.write.Unlock()
	pairs, kvBytes, err = countView(v)
	if err != nil {
		return nil, 0, 0, errors.Join(err, v.Close())
	}
	f.write.Lock()
	if f.contentsGen == gen {
		// Unsigned arithmetic wraps, so the accumulated (possibly
		// negative) changes add on exactly.
		f.setContents(contentSize{pairs: pairs + f.contents.pairs, kvBytes: kvBytes + f.contents.kvBytes, known: true})
	}
	f.write.Unlock()
	return v, pairs, kvBytes, nil
}

// ForgetContentSize drops the content count, so the next StreamView
// recounts: for a stream that did not come out at the size the count
// gave (snapshot.ErrSizeChanged), which means something changed the engine
// behind the state machine's back.
func (f *FSM) ForgetContentSize() {
	f.write.Lock()
	defer f.write.Unlock()
	f.setContents(contentSize{})
}

// countView counts the pairs of v and their key and value bytes.
func countView(v engines.View) (pairs, kvBytes uint64, err error) {
	it, err := v.Iter()
	if err != nil {
		return 0, 0, err
	}
	for it.Next() {
		pairs++
		kvBytes += uint64(len(it.Key()) + len(it.Value()))
	}
	return pairs, kvBytes, errors.Join(it.Err(), it.Close())
}

// Applied is the position the engine's contents reflect.
func (f *FSM) Applied() engines.Applied {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}

// Get reads key from the local engine, without any leadership check.
func (f *FSM) Get(key []byte) ([]byte, bool, error) { return f.engine.Get(key) }

// Failed returns the engine error that stopped the state machine, if any.
func (f *FSM) Failed() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

// RecoverFromSnapshots brings the engine up to the newest snapshot in store
// before raft starts. With NoSnapshotRestoreOnStart raft trusts that the
// state machine already holds its newest snapshot and replays the log from
// there; that is false after a crash between the snapshot store keeping a
// received snapshot and the engine's install committing, and the log below
// that snapshot may already be compacted away. So: if the newest snapshot is
// ahead of the engine, install it now. It returns whether it installed one.
//
// A stored snapshot the store refuses (snapshot.ErrRefused: it rotted on
// disk) is skipped for the next newest, as raft's own restore does.
func RecoverFromSnapshots(f *FSM, store raft.SnapshotStore) (bool, error) {
	metas, err := store.List()
	if err != nil {
		return false, fmt.Errorf("cluster: listing snapshots: %w", err)
	}
	var rc io.ReadCloser
	for len(metas) > 0 && metas[0].Index > f.Applied().Index {
		_, rc, err = store.Open(metas[0].ID)
		if !errors.Is(err, snapshot.ErrRefused) {
			break
		}
		metas = metas[1:]
	}
	if len(metas) == 0 || metas[0].Index <= f.Applied().Index {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("cluster: opening snapshot %s: %w", metas[0].ID, err)
	}
	defer rc.Close()
	dec, err := snapshot.NewDecoder(rc)
	if err != nil {
		return false, fmt.Errorf("cluster: reading snapshot %s: %w", metas[0].ID, err)
	}
	// Raft's snapshot index counts no-op entries the FSM never sees, so
	// compare with the position inside the stream.
	h := dec.Header()
	f.write.Lock()
	defer f.write.Unlock()
	if h.Index <= f.applied.Index {
		return false, nil
	}
	err = f.engine.Install(dec, h.Applied())
	if f.hooks.Restored != nil {
		f.hooks.Restored(h, false, err)
	}
	if err != nil {
		return false, fmt.Errorf("cluster: restoring snapshot %s: %w", metas[0].ID, err)
	}
	f.setContents(contentSize{pairs: dec.Count(), kvBytes: dec.KVBytes(), known: true})
	f.mu.Lock()
	f.applied = h.Applied()
	f.failed = nil
	f.mu.Unlock()
	return true, nil
}
