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
	// (ApplyBatch, Snapshot, Restore, RecoverFromSnapshots). Raft calls
	// them from one goroutine, so it is uncontended; it is held across
	// engine I/O, which is why readers never take it.
	write sync.Mutex
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
	return &FSM{engine: e, hooks: hooks, applied: applied}, nil
}

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
			res, err := f.applyCommand(l, &batch, pending, read)
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

func (f *FSM) applyCommand(l *raft.Log, batch *engines.Batch, pending map[string]*[]byte, read func([]byte) ([]byte, bool, error)) (Result, error) {
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

// Snapshot takes the engine's point-in-time view: O(1), because raft calls
// it on the goroutine that applies entries.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.write.Lock()
	defer f.write.Unlock()
	if f.failed != nil {
		return nil, f.failed
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
	f.mu.Lock()
	f.applied = h.Applied()
	f.failed = nil // the install replaced whatever state the error left
	f.mu.Unlock()
	return nil
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
	f.mu.Lock()
	f.applied = h.Applied()
	f.failed = nil
	f.mu.Unlock()
	return true, nil
}
