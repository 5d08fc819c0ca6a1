// Package engines owns the Engine interface: a key-value store whose whole
// contents can be read from a point-in-time view taken in O(1) and replaced
// atomically by a streamed install. It is the Go port of the seed design's
// SnapshotCapableStorage. The bbolt (B-tree) and Pebble (LSM) implementations
// live in the subpackages engines/bbolt and engines/pebble; engines/enginetest
// is a conformance suite any implementation can run with one call.
package engines

import (
	"bytes"
	"errors"
)

// Applied is the Raft position an engine's contents reflect: every command
// at or below Index has been applied, none above it. It is written in the
// same atomic step as the data it describes, so a restarted state machine
// can skip log entries it has already applied.
type Applied struct {
	Index uint64
	Term  uint64
	// Config is the Raft configuration in force at Index, encoded by the
	// caller (for hashicorp/raft, raft.EncodeConfiguration). Engines store it
	// opaquely; nil means none is known.
	Config []byte
}

// Equal reports whether two positions are identical, configuration included.
func (a Applied) Equal(b Applied) bool {
	return a.Index == b.Index && a.Term == b.Term && bytes.Equal(a.Config, b.Config)
}

// OpKind says what an Op does to its key.
type OpKind uint8

const (
	// OpPut sets Key to Value.
	OpPut OpKind = iota + 1
	// OpDelete removes Key; deleting an absent key is not an error.
	OpDelete
)

// Op is one change inside an atomic Batch.
type Op struct {
	Kind  OpKind
	Key   []byte
	Value []byte
}

// Batch is a set of changes applied atomically together with the position
// they bring the engine to. Ops apply in order, so a later op on the same key
// wins. Engines may retain the slices until Write returns, not after.
type Batch struct {
	Ops     []Op
	Applied Applied
}

// Put appends a put to the batch.
func (b *Batch) Put(key, value []byte) {
	b.Ops = append(b.Ops, Op{Kind: OpPut, Key: key, Value: value})
}

// Delete appends a delete to the batch.
func (b *Batch) Delete(key []byte) { b.Ops = append(b.Ops, Op{Kind: OpDelete, Key: key}) }

// Iterator walks key-value pairs in strictly increasing bytewise key order.
// Key and Value are valid only until the next call to Next; callers that keep
// them must copy. The first call to Next positions it on the first pair.
type Iterator interface {
	Next() bool
	Key() []byte
	Value() []byte
	// Err is the error that ended iteration early, or nil once the pairs
	// are exhausted cleanly.
	Err() error
}

// View is a point-in-time view of an engine's whole contents. It is taken in
// O(1) and stays unchanged while the engine goes on taking writes and even
// installs; it may be read from another goroutine than the one that took it.
// Close must be called exactly once, and releases what the view pins.
type View interface {
	// Applied is the position the view's contents reflect.
	Applied() Applied
	// Iter returns an iterator over every pair in the view. A view may be
	// iterated more than once; each iterator must be closed.
	Iter() (ViewIterator, error)
	Close() error
}

// ViewIterator is an Iterator that holds resources until it is closed.
type ViewIterator interface {
	Iterator
	Close() error
}

// Engine is a key-value store with O(1) point-in-time views and atomic
// whole-contents installs. Implementations are safe for concurrent use.
type Engine interface {
	// Get returns a copy of the value stored under key; found is false when
	// the key is absent.
	Get(key []byte) (value []byte, found bool, err error)
	// Write applies a batch atomically and durably (as durable as the
	// engine's sync options make it), recording b.Applied.
	Write(b Batch) error
	// Applied returns the position recorded by the last Write or Install,
	// the zero Applied for a new engine.
	Applied() (Applied, error)
	// View takes a point-in-time view of the whole contents.
	View() (View, error)
	// Install replaces the whole contents by the pairs of src, which must
	// come in strictly increasing key order, and records applied. It is
	// atomic, also across a crash: afterwards the engine holds either its
	// old contents and position or exactly src's pairs and applied, never a
	// mix; keys absent from src are gone. If src.Err() is non-nil once it is
	// exhausted, or anything else fails, nothing is committed, the old
	// contents stay as they were, and the error is returned.
	Install(src Iterator, applied Applied) error
	// Close releases the engine. Views must be closed first.
	Close() error
}

// ErrKeyOrder is returned by Install when the source's keys are not strictly
// increasing.
var ErrKeyOrder = errors.New("engines: install source keys not strictly increasing")

// ErrEmptyKey is returned for a zero-length key, which bbolt cannot store
// and which therefore no engine accepts, so that engines stay interchangeable.
var ErrEmptyKey = errors.New("engines: empty key")

// ErrClosed is returned by operations on a closed engine.
var ErrClosed = errors.New("engines: engine closed")

// ErrTooLarge is returned for a key longer than MaxKeyLen or a value longer
// than MaxValueLen.
var ErrTooLarge = errors.New("engines: key or value too large")

// Limits every engine accepts, so that any engine's contents install on any
// other and fit the snapshot format's bounds. MaxKeyLen is bbolt's own limit.
const (
	MaxKeyLen   = 32 << 10
	MaxValueLen = 64 << 20
)

// Syncer is an optional capability: an engine that can make every write it
// has acknowledged durable on demand, whatever its sync options. It is the
// durability barrier that lets a Raft node keep its snapshots as references
// to the engine's own state (cluster.ZeroCopyStore) instead of copies: raft
// compacts its log up to a snapshot's index only after Sync returned, so a
// power loss can never take the engine below a snapshot whose log is gone.
// An engine that syncs every Write may implement Sync as a no-op.
type Syncer interface {
	// Sync makes every Write and Install that returned before it durable.
	Sync() error
}

// ErrNoSync is returned by Sync for an engine that is not a Syncer, such
// as a wrapper around one.
var ErrNoSync = errors.New("engines: engine cannot sync on demand")

// Sync makes e's acknowledged writes durable if e is a Syncer, and returns
// ErrNoSync otherwise. Engine wrappers forward their Sync through it.
func Sync(e Engine) error {
	if s, ok := e.(Syncer); ok {
		return s.Sync()
	}
	return ErrNoSync
}

// Checkpointer is an optional capability: an engine that can keep an
// exact past state of itself cheaply (for an LSM, hard links to its
// immutable files), read it back, and become it again. It is what lets a
// Raft node keep each local snapshot as a checkpoint
// (cluster.CheckpointStore) instead of a copy, stream a follower's snapshot
// from it, and restore the engine from it after losing state
// (the seed design's restore_from_snapshot). Directories are paths on the
// engine's own filesystem.
type Checkpointer interface {
	Syncer
	// Checkpoint writes the engine's current contents and position into
	// dir, which must not exist, as a self-contained engine; every write
	// that returned before it is included, and the engine is durable up
	// to them when it returns. A checkpoint an interrupted call leaves
	// behind may be incomplete: callers mark completion themselves.
	Checkpoint(dir string) error
	// OpenCheckpoint opens the checkpoint in dir read-only, as a view;
	// closing the view releases it. The checkpoint is not changed.
	OpenCheckpoint(dir string) (View, error)
	// RestoreCheckpoint replaces the engine's whole contents and position
	// by those of the checkpoint in dir, atomically across a crash: the
	// engine then reopens either as it was or as the checkpoint. The
	// checkpoint stays as it is. No view may be open.
	RestoreCheckpoint(dir string) error
}

// ErrNoCheckpoint is returned by the checkpoint helpers for an engine that
// is not a Checkpointer, such as a wrapper around one.
var ErrNoCheckpoint = errors.New("engines: engine cannot take checkpoints")

// Checkpoint, OpenCheckpoint and RestoreCheckpoint call e's if e is a
// Checkpointer and return ErrNoCheckpoint otherwise. Engine wrappers
// forward the capability through them.
func Checkpoint(e Engine, dir string) error {
	if c, ok := e.(Checkpointer); ok {
		return c.Checkpoint(dir)
	}
	return ErrNoCheckpoint
}

// OpenCheckpoint: see Checkpoint.
func OpenCheckpoint(e Engine, dir string) (View, error) {
	if c, ok := e.(Checkpointer); ok {
		return c.OpenCheckpoint(dir)
	}
	return nil, ErrNoCheckpoint
}

// RestoreCheckpoint: see Checkpoint.
func RestoreCheckpoint(e Engine, dir string) error {
	if c, ok := e.(Checkpointer); ok {
		return c.RestoreCheckpoint(dir)
	}
	return ErrNoCheckpoint
}
