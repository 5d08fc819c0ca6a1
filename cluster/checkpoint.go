package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"

	"github.com/raftsnap/testbed/engines"
	"github.com/raftsnap/testbed/snapshot"
)

// StoreCheckpoint keeps each local snapshot as a checkpoint of the engine
// (CheckpointStore): an exact, immutable copy of its state that shares the
// engine's immutable files.
const StoreCheckpoint = "checkpoint"

// checkpointIDPrefix marks the IDs (and directory names) of a
// CheckpointStore's local snapshots.
const checkpointIDPrefix = "ckpt-"

// checkpointMarker is the file a CheckpointStore writes into a checkpoint
// directory once the engine's checkpoint is complete and synced; a
// directory without it is an interrupted checkpoint and is removed.
const checkpointMarker = "RAFT-CHECKPOINT-COMPLETE"

// checkpointsRetained is how many complete checkpoints a CheckpointStore
// keeps: only the newest. A checkpoint's disk use grows as compactions
// replace the files it links, and a send that reads an older one keeps it
// until the send ends (reaping waits for its readers).
const checkpointsRetained = 1

// Errors of a CheckpointStore.
var (
	// ErrCheckpointMismatch: a checkpoint does not hold the position its
	// marker records. The store refuses it and removes it.
	ErrCheckpointMismatch = errors.New("cluster: checkpoint does not hold the position its marker records")
	// ErrNoCheckpoint is returned by Open for a checkpoint ID when the
	// store holds no checkpoint at all.
	ErrNoCheckpoint = errors.New("cluster: no checkpoint to open")
)

// CheckpointStore is a raft.SnapshotStore whose local snapshots are
// checkpoints of the engine (engines.Checkpointer; for Pebble,
// DB.Checkpoint with a synced WAL, sstables hard-linked): TiKV's way, on
// hashicorp/raft.
//
// A local snapshot (raft's takeSnapshot) takes nothing in FSM.Snapshot.
// Persist brings the engine to raft's snapshot index (FSM.HoldAt, as the
// zero-copy store's ReachPosition) and takes the checkpoint while no entry
// can apply, so the checkpoint holds exactly that position; then it writes
// and syncs a completion marker into the checkpoint's directory, recording
// the position, configuration and size, and only then returns, so raft
// compacts its log against a checkpoint that is complete and durable. A
// directory without the marker (a crash mid-checkpoint) is removed when
// the store opens. Only the newest checkpoint is kept; one being read by a
// send is reaped when its last reader closes.
//
// List reports the complete checkpoints (and the received snapshots). Open
// of a checkpoint opens it read-only, checks that it holds the position
// its marker records (else the checkpoint is refused, removed, and the node
// asked for a fresh snapshot), and streams format v1 from it, with the
// header read from the checkpoint and the size from the marker. Received
// snapshots are kept in files as on the other stores.
//
// RestoreLocal, at start, restores the engine from the newest checkpoint
// when the engine is below it (the seed design's restore_from_snapshot).
type CheckpointStore struct {
	fsm     *FSM
	engine  engines.Checkpointer
	fs      vfs.FS
	dir     string
	files   raft.SnapshotStore
	hooks   FSMHooks
	sinks   sinkRegistry
	refused func()

	// views serializes opening and closing the checkpoints' shared views.
	// It is a channel, not a sync.Mutex, because it is held across I/O
	// (see FSM.write).
	views gate

	mu sync.Mutex
	// ckpts are the complete checkpoints, by ID.
	ckpts map[string]*checkpoint
}

// checkpoint is one complete checkpoint and its readers.
type checkpoint struct {
	id, dir string
	mark    markerRecord
	// readers counts the open streams of it; view is shared by them
	// (a checkpoint opens once, read-only) and closed with the last.
	readers int
	view    engines.View
	// reap is set when the checkpoint was reaped while read: it is
	// removed when its last reader closes.
	reap bool
}

// markerRecord is the content of a checkpoint's completion marker.
type markerRecord struct {
	Format  int    `json:"format"`
	Index   uint64 `json:"index"`
	Term    uint64 `json:"term"`
	Config  []byte `json:"config,omitempty"`
	Pairs   uint64 `json:"pairs"`
	KVBytes uint64 `json:"kv_bytes"`
	Counted bool   `json:"counted"`
}

const markerFormat = 1

func (m markerRecord) applied() engines.Applied {
	return engines.Applied{Index: m.Index, Term: m.Term, Config: m.Config}
}

var _ raft.SnapshotStore = (*CheckpointStore)(nil)
var _ LocalSnapshotter = (*CheckpointStore)(nil)

// IsCheckpoint reports whether id names a local snapshot of a
// CheckpointStore.
func IsCheckpoint(id string) bool { return strings.HasPrefix(id, checkpointIDPrefix) }

func checkpointID(a engines.Applied) string {
	return fmt.Sprintf("%s%d-%d", checkpointIDPrefix, a.Term, a.Index)
}

// OpenCheckpointStore returns the store for fsm over engine, keeping its
// checkpoints under dir on fs (the engine's filesystem, so that
// checkpoints can link the engine's files) and the received snapshots in
// files. It removes every checkpoint directory without a completion marker
// (a checkpoint or a reap a crash interrupted) and reaps checkpoints beyond
// the newest. refused, if set, is called when a checkpoint is refused.
func OpenCheckpointStore(fsm *FSM, engine engines.Checkpointer, fs vfs.FS, dir string, files raft.SnapshotStore, refused func()) (*CheckpointStore, error) {
	c := &CheckpointStore{fsm: fsm, engine: engine, fs: fs, dir: dir, files: files, hooks: fsm.hooks, refused: refused, ckpts: map[string]*checkpoint{}, views: make(gate, 1)}
	// The directory's own entry must be durable before a checkpoint in it
	// is relied on: Pebble's checkpoint syncs only the directories it
	// creates.
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cluster: checkpoint directory: %w", err)
	}
	if err := syncDir(fs, fs.PathDir(dir)); err != nil {
		return nil, fmt.Errorf("cluster: checkpoint directory: %w", err)
	}
	names, err := fs.List(dir)
	if err != nil {
		return nil, fmt.Errorf("cluster: listing checkpoints: %w", err)
	}
	slices.Sort(names)
	for _, name := range names {
		path := fs.PathJoin(dir, name)
		mark, err := readMarker(fs, path)
		if err != nil || !IsCheckpoint(name) || name != checkpointID(mark.applied()) {
			// Unmarked (interrupted), unreadable, or not ours.
			if err := fs.RemoveAll(path); err != nil {
				return nil, fmt.Errorf("cluster: removing interrupted checkpoint %s: %w", name, err)
			}
			continue
		}
		c.ckpts[name] = &checkpoint{id: name, dir: path, mark: mark}
	}
	c.mu.Lock()
	doomed := c.reapLocked()
	c.mu.Unlock()
	if err := c.remove(doomed); err != nil {
		return nil, err
	}
	return c, nil
}

// readMarker reads the completion marker of the checkpoint in dir.
func readMarker(fs vfs.FS, dir string) (markerRecord, error) {
	f, err := fs.Open(fs.PathJoin(dir, checkpointMarker))
	if err != nil {
		return markerRecord{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return markerRecord{}, err
	}
	var m markerRecord
	if err := json.Unmarshal(b, &m); err != nil {
		return markerRecord{}, fmt.Errorf("cluster: checkpoint marker in %s: %w", dir, err)
	}
	if m.Format != markerFormat {
		return markerRecord{}, fmt.Errorf("cluster: checkpoint marker in %s: format %d, want %d", dir, m.Format, markerFormat)
	}
	return m, nil
}

// writeMarker writes the completion marker into dir durably: a temporary
// file synced, renamed into place, the directory synced.
func writeMarker(fs vfs.FS, dir string, m markerRecord) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	tmp := fs.PathJoin(dir, checkpointMarker+".tmp")
	f, err := fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err = errors.Join(err, f.Sync(), f.Close()); err != nil {
		return err
	}
	if err := fs.Rename(tmp, fs.PathJoin(dir, checkpointMarker)); err != nil {
		return err
	}
	return syncDir(fs, dir)
}

// LocalSnapshot is the FSM's snapshot: nothing is taken until Persist.
func (c *CheckpointStore) LocalSnapshot(engines.Applied) (raft.FSMSnapshot, error) {
	return &localCheckpoint{store: c}, nil
}

type localCheckpoint struct{ store *CheckpointStore }

func (*localCheckpoint) Release() {}

// Persist takes the checkpoint at raft's snapshot index, marks it
// complete, and reaps the older ones.
func (l *localCheckpoint) Persist(sink raft.SnapshotSink) error {
	c := l.store
	k := c.sinks.lookup(sink.ID())
	if k == nil {
		return errors.Join(fmt.Errorf("%w: %s is not a sink of this store", ErrNotReference, sink.ID()), sink.Cancel())
	}
	var at engines.Applied
	err := c.fsm.HoldAt(k.index, k.term, func(a engines.Applied, pairs, kvBytes uint64, counted bool) error {
		at = a
		return c.take(markerRecord{Format: markerFormat, Index: a.Index, Term: a.Term, Config: a.Config, Pairs: pairs, KVBytes: kvBytes, Counted: counted})
	})
	if err != nil {
		return c.referenced(at, errors.Join(err, sink.Cancel()))
	}
	k.persisted = true
	if err := sink.Close(); err != nil {
		return c.referenced(at, err)
	}
	return c.referenced(at, nil)
}

// take writes the checkpoint at the engine's current position m and its
// marker; the caller holds the state machine still.
func (c *CheckpointStore) take(m markerRecord) error {
	id := checkpointID(m.applied())
	c.mu.Lock()
	_, have := c.ckpts[id]
	c.mu.Unlock()
	if have {
		return nil // the same position, already complete
	}
	dir := c.fs.PathJoin(c.dir, id)
	// A directory of that name without a marker is an interrupted
	// checkpoint of this instance; the engine's checkpoint wants none.
	if err := c.fs.RemoveAll(dir); err != nil {
		return fmt.Errorf("cluster: checkpoint %s: %w", id, err)
	}
	if err := c.engine.Checkpoint(dir); err != nil {
		return fmt.Errorf("cluster: checkpoint %s: %w", id, err)
	}
	if err := writeMarker(c.fs, dir, m); err != nil {
		return fmt.Errorf("cluster: marking checkpoint %s complete: %w", id, err)
	}
	c.mu.Lock()
	c.ckpts[id] = &checkpoint{id: id, dir: dir, mark: m}
	doomed := c.reapLocked()
	c.mu.Unlock()
	return c.remove(doomed)
}

func (c *CheckpointStore) referenced(at engines.Applied, err error) error {
	if c.hooks.Referenced != nil {
		c.hooks.Referenced(at, err)
	}
	return err
}

// newestLocked returns the complete checkpoints, newest first.
func (c *CheckpointStore) sortedLocked() []*checkpoint {
	out := make([]*checkpoint, 0, len(c.ckpts))
	for _, k := range c.ckpts {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].mark.Term != out[j].mark.Term {
			return out[i].mark.Term > out[j].mark.Term
		}
		return out[i].mark.Index > out[j].mark.Index
	})
	return out
}

// reapLocked unlists the checkpoints beyond the newest checkpointsRetained
// and returns those nobody reads, for remove; the others are removed when
// their last reader closes.
func (c *CheckpointStore) reapLocked() []*checkpoint {
	var doomed []*checkpoint
	for i, k := range c.sortedLocked() {
		if i < checkpointsRetained {
			continue
		}
		delete(c.ckpts, k.id)
		if k.readers > 0 {
			k.reap = true
			continue
		}
		doomed = append(doomed, k)
	}
	return doomed
}

// remove deletes checkpoints from disk, the marker first. Nothing is
// synced: a crash in the middle may leave the directory, with or without
// its marker and with files missing, but only ever beside a newer complete
// checkpoint (only older ones are reaped, after the newer one's marker was
// synced), and a store reaps everything but the newest when it opens; one
// refused (a marked checkpoint whose files are gone) is removed when
// opened too.
func (c *CheckpointStore) remove(doomed []*checkpoint) error {
	var errs []error
	for _, k := range doomed {
		err := c.fs.Remove(c.fs.PathJoin(k.dir, checkpointMarker))
		if err == nil {
			err = c.fs.RemoveAll(k.dir)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster: reaping checkpoint %s: %w", k.id, err))
		}
	}
	return errors.Join(errs...)
}

// Create starts a snapshot: a checkpoint if the FSM's Persist takes it, a
// stored stream if data is written to it (InstallSnapshot).
func (c *CheckpointStore) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	k := &zeroCopySink{sinks: &c.sinks, id: referenceID(engines.Applied{Index: index, Term: term}), index: index, term: term,
		create: func() (raft.SnapshotSink, error) {
			return c.files.Create(version, index, term, configuration, configurationIndex, trans)
		}}
	c.sinks.add(k)
	return k, nil
}

// List returns the complete checkpoints and the stored snapshots, newest
// first by (term, index).
func (c *CheckpointStore) List() ([]*raft.SnapshotMeta, error) {
	files, err := c.files.List()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	ckpts := c.sortedLocked()
	c.mu.Unlock()
	out := make([]*raft.SnapshotMeta, 0, len(files)+len(ckpts))
	for _, k := range ckpts {
		m, err := checkpointMeta(k)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	out = append(out, files...)
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Term != out[j].Term {
			return out[i].Term > out[j].Term
		}
		return out[i].Index > out[j].Index
	})
	return out, nil
}

// checkpointMeta is a checkpoint's metadata, with the size of its stream
// when its marker counted its contents (0 otherwise: Open counts them).
func checkpointMeta(k *checkpoint) (*raft.SnapshotMeta, error) {
	m, err := referenceMeta(k.mark.applied())
	if err != nil {
		return nil, err
	}
	m.ID = k.id
	if k.mark.Counted {
		m.Size = snapshot.StreamSize(snapshot.HeaderFor(k.mark.applied()), k.mark.Pairs, k.mark.KVBytes)
	}
	return m, nil
}

// Open streams a checkpoint, or returns a stored snapshot. A checkpoint
// reaped since raft listed it is replaced by the newest one, which holds a
// later state of the same log; raft sends the metadata Open returns. The
// ID of a local snapshot's sink (what raft's Snapshot future opens, for a
// backup) names the checkpoint Persist took, or a newer one: it opens the
// newest.
func (c *CheckpointStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	if !IsCheckpoint(id) && !IsReference(id) {
		return c.files.Open(id)
	}
	meta, rc, err := c.open(id)
	if c.hooks.Served != nil {
		var h snapshot.Header
		var size int64
		if meta != nil {
			h, size = snapshot.Header{Index: meta.Index, Term: meta.Term}, meta.Size
		}
		c.hooks.Served(h, size, err)
	}
	return meta, rc, err
}

func (c *CheckpointStore) open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	c.mu.Lock()
	k := c.ckpts[id]
	if k == nil {
		if all := c.sortedLocked(); len(all) > 0 {
			k = all[0]
		}
	}
	if k == nil {
		c.mu.Unlock()
		return nil, nil, fmt.Errorf("%w (asked for %s)", ErrNoCheckpoint, id)
	}
	k.readers++
	c.mu.Unlock()
	// The first reader opens the checkpoint; readers of one checkpoint
	// share its view (a read-only DB opens once). Its reader count keeps
	// a reap from removing it meanwhile.
	v, size, err := c.viewOf(k)
	if err != nil {
		return nil, nil, errors.Join(err, c.release(k))
	}
	meta, err := referenceMeta(v.Applied())
	if err != nil {
		return nil, nil, errors.Join(err, c.release(k))
	}
	meta.ID, meta.Size = k.id, size
	it, err := v.Iter()
	if err != nil {
		return nil, nil, errors.Join(err, c.release(k))
	}
	r, err := snapshot.NewReader(snapshot.HeaderFor(v.Applied()), it, size)
	if err != nil {
		return nil, nil, errors.Join(err, it.Close(), c.release(k))
	}
	return meta, &checkpointStream{Reader: r, store: c, ckpt: k}, nil
}

// viewOf returns the shared view of k, opening it for the first reader
// and checking that it holds the position its marker records, and the
// size of its stream. The caller counts as one of k's readers.
func (c *CheckpointStore) viewOf(k *checkpoint) (engines.View, int64, error) {
	c.views.Lock()
	defer c.views.Unlock()
	c.mu.Lock()
	v, mark := k.view, k.mark
	c.mu.Unlock()
	if v == nil {
		var err error
		if v, err = c.engine.OpenCheckpoint(k.dir); err != nil {
			return nil, 0, fmt.Errorf("cluster: opening checkpoint %s: %w", k.id, err)
		}
		if got := v.Applied(); !got.Equal(mark.applied()) {
			c.refuse(k)
			return nil, 0, errors.Join(fmt.Errorf("%w: %s holds index %d term %d", ErrCheckpointMismatch, k.id, got.Index, got.Term), v.Close())
		}
		if !mark.Counted {
			pairs, kvBytes, err := countView(v)
			if err != nil {
				return nil, 0, errors.Join(fmt.Errorf("cluster: counting checkpoint %s: %w", k.id, err), v.Close())
			}
			mark.Pairs, mark.KVBytes, mark.Counted = pairs, kvBytes, true
		}
		c.mu.Lock()
		k.view, k.mark = v, mark
		c.mu.Unlock()
	}
	return v, snapshot.StreamSize(snapshot.HeaderFor(mark.applied()), mark.Pairs, mark.KVBytes), nil
}

// refuse unlists a checkpoint that is not what its marker says, has it
// removed once nobody reads it, and asks the node for a fresh snapshot.
func (c *CheckpointStore) refuse(k *checkpoint) {
	c.mu.Lock()
	if c.ckpts[k.id] == k {
		delete(c.ckpts, k.id)
	}
	k.reap = true
	c.mu.Unlock()
	if c.refused != nil {
		c.refused()
	}
}

// release ends one reader of k: the last closes the view and removes k if
// it was reaped meanwhile.
func (c *CheckpointStore) release(k *checkpoint) error {
	c.views.Lock()
	defer c.views.Unlock()
	c.mu.Lock()
	k.readers--
	if k.readers > 0 {
		c.mu.Unlock()
		return nil
	}
	v, reap := k.view, k.reap
	k.view = nil
	c.mu.Unlock()
	var err error
	if v != nil {
		err = v.Close()
	}
	if reap {
		err = errors.Join(err, c.remove([]*checkpoint{k}))
	}
	return err
}

// countWrong forgets k's count after its stream came out at another
// size, so the next reader counts it.
func (c *CheckpointStore) countWrong(k *checkpoint) {
	c.mu.Lock()
	k.mark.Counted = false
	c.mu.Unlock()
}

// checkpointStream is an Open stream of a checkpoint.
type checkpointStream struct {
	*snapshot.Reader
	store  *CheckpointStore
	ckpt   *checkpoint
	closed bool
}

func (s *checkpointStream) Read(p []byte) (int, error) {
	n, err := s.Reader.Read(p)
	if errors.Is(err, snapshot.ErrSizeChanged) {
		s.store.countWrong(s.ckpt)
	}
	return n, err
}

func (s *checkpointStream) WriteTo(w io.Writer) (int64, error) {
	n, err := s.Reader.WriteTo(w)
	if errors.Is(err, snapshot.ErrSizeChanged) {
		s.store.countWrong(s.ckpt)
	}
	return n, err
}

func (s *checkpointStream) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	return errors.Join(s.Reader.Close(), s.store.release(s.ckpt))
}

// Newest returns the position of the newest complete checkpoint, if any.
func (c *CheckpointStore) Newest() (engines.Applied, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	all := c.sortedLocked()
	if len(all) == 0 {
		return engines.Applied{}, false
	}
	return all[0].mark.applied(), true
}

// RestoreLocal restores the engine from the newest complete checkpoint if
// the engine is below it (a restarted engine that lost writes the
// checkpoint holds), before raft starts; it returns the position restored,
// or false if the engine was not behind. A checkpoint that does not hold
// the position its marker records is removed and the next one tried.
func (c *CheckpointStore) RestoreLocal() (engines.Applied, bool, error) {
	for {
		c.mu.Lock()
		all := c.sortedLocked()
		c.mu.Unlock()
		if len(all) == 0 || all[0].mark.Index <= c.fsm.Applied().Index {
			return engines.Applied{}, false, nil
		}
		k := all[0]
		ok, err := c.verify(k)
		if err != nil {
			return engines.Applied{}, false, err
		}
		if !ok {
			c.mu.Lock()
			delete(c.ckpts, k.id)
			c.mu.Unlock()
			if err := c.remove([]*checkpoint{k}); err != nil {
				return engines.Applied{}, false, err
			}
			continue
		}
		mark := k.mark
		err = c.fsm.Reload(func() error { return c.engine.RestoreCheckpoint(k.dir) }, mark.Pairs, mark.KVBytes, mark.Counted)
		if c.hooks.LocalRestored != nil {
			c.hooks.LocalRestored(mark.applied(), err)
		}
		if err != nil {
			return engines.Applied{}, false, fmt.Errorf("cluster: restoring the engine from checkpoint %s: %w", k.id, err)
		}
		return mark.applied(), true, nil
	}
}

// verify reports whether checkpoint k opens and holds the position its
// marker records.
func (c *CheckpointStore) verify(k *checkpoint) (bool, error) {
	v, err := c.engine.OpenCheckpoint(k.dir)
	if err != nil {
		return false, nil
	}
	ok := v.Applied().Equal(k.mark.applied())
	return ok, v.Close()
}

func syncDir(fs vfs.FS, dir string) error {
	if dir == "" {
		dir = "."
	}
	d, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
