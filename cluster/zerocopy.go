package cluster

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/raftsnap/testbed/engines"
	"github.com/raftsnap/testbed/snapshot"
)

// Snapshot store kinds a node can run (NodeConfig.SnapshotStore).
const (
	// StoreCopy streams the whole state into a snapshot file at every
	// local snapshot (FSMSnapshot.Persist): O(state) time, writes and
	// space each time.
	StoreCopy = "copy"
	// StoreZeroCopy keeps a local snapshot as a reference to the engine's
	// own state (ZeroCopyStore): the engine is made durable and a small
	// record is written; the state is streamed only when a follower needs
	// it, from a fresh point-in-time view.
	StoreZeroCopy = "zero-copy"
)

// StoreKinds lists the snapshot store kinds, the default first.
// StoreCheckpoint needs an engine that is an engines.Checkpointer (Pebble)
// on a storage that gives it a place (Stores.CheckpointFS); a node whose
// engine is not falls back to StoreZeroCopy, or to StoreCopy without
// engines.Syncer (bbolt falls back to zero-copy).
func StoreKinds() []string { return []string{StoreZeroCopy, StoreCopy, StoreCheckpoint} }

// ErrUnknownStore is returned for a snapshot store kind StoreKinds lacks.
var ErrUnknownStore = errors.New("cluster: unknown snapshot store kind")

// refIDPrefix marks the IDs of a ZeroCopyStore's local snapshots, so that
// they never collide with the IDs of its received snapshots.
const refIDPrefix = "ref-"

// ErrNotReference is returned by Close of a sink that had no data written
// and that no local snapshot persisted into.
var ErrNotReference = errors.New("cluster: snapshot sink closed empty and not a local snapshot")

// ZeroCopyStore is a raft.SnapshotStore whose local snapshots cost O(1):
// the seed design's zero-copy local snapshot, on hashicorp/raft.
//
// A local snapshot (raft's takeSnapshot) keeps no copy and no file: the
// engine itself is the snapshot. Persist records raft's snapshot index in
// the engine (FSM.ReachPosition: raft's index counts entries the state
// machine never sees, such as a new leader's no-op and Barrier entries, so
// the state there is the state at the engine's own index) and then makes
// the engine durable (engines.Syncer, the durability barrier). raft
// compacts its log only after Persist returns, so a power loss can never
// leave the engine below a snapshot whose log entries are gone.
//
// List reports the engine's applied position as its newest local snapshot,
// beside the snapshots received from a leader. Open of a local snapshot
// takes a fresh point-in-time view and streams the version-1 format from
// it, with the header and the metadata raft sends read from that same
// view, so header and data always agree. Snapshots received from a leader
// (InstallSnapshot), and anything else written to a sink, are full streams
// kept in files, verified and installed as before.
type ZeroCopyStore struct {
	fsm    *FSM
	engine engines.Syncer
	files  raft.SnapshotStore
	hooks  FSMHooks
	sinks  sinkRegistry
}

// sinkRegistry holds what raft's Create said of each sink not yet closed,
// by ID, so that a local snapshot's Persist knows raft's index.
type sinkRegistry struct {
	mu      sync.Mutex
	created map[string]*zeroCopySink
}

func (r *sinkRegistry) add(k *zeroCopySink) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.created == nil {
		r.created = map[string]*zeroCopySink{}
	}
	r.created[k.id] = k
}

func (r *sinkRegistry) lookup(id string) *zeroCopySink {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.created[id]
}

func (r *sinkRegistry) forget(k *zeroCopySink) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.created[k.id] == k {
		delete(r.created, k.id)
	}
}

// NewZeroCopyStore returns the store for fsm over its engine, with files
// holding the full snapshots received.
func NewZeroCopyStore(fsm *FSM, engine engines.Syncer, files raft.SnapshotStore) *ZeroCopyStore {
	return &ZeroCopyStore{fsm: fsm, engine: engine, files: files, hooks: fsm.hooks}
}

var _ raft.SnapshotStore = (*ZeroCopyStore)(nil)
var _ LocalSnapshotter = (*ZeroCopyStore)(nil)

// IsReference reports whether id names a local snapshot, one streamed from
// the engine, as opposed to a stored stream.
func IsReference(id string) bool { return strings.HasPrefix(id, refIDPrefix) }

func referenceID(a engines.Applied) string {
	return fmt.Sprintf("%s%d-%d", refIDPrefix, a.Term, a.Index)
}

// LocalSnapshot is the FSM's snapshot: nothing is copied.
func (z *ZeroCopyStore) LocalSnapshot(engines.Applied) (raft.FSMSnapshot, error) {
	return &localReference{store: z}, nil
}

// localReference is a local snapshot that is the engine's own state.
type localReference struct{ store *ZeroCopyStore }

// Persist records raft's index in the engine, then runs the durability
// barrier; the sink publishes nothing.
func (r *localReference) Persist(sink raft.SnapshotSink) error {
	z := r.store
	k := z.sinks.lookup(sink.ID())
	if k == nil {
		return errors.Join(fmt.Errorf("%w: %s is not a sink of this store", ErrNotReference, sink.ID()), sink.Cancel())
	}
	at := engines.Applied{Index: k.index, Term: k.term}
	err := z.fsm.ReachPosition(k.index, k.term)
	if err == nil {
		if err = z.engine.Sync(); err != nil {
			err = fmt.Errorf("cluster: durability barrier of a local snapshot: %w", err)
		}
	}
	if err != nil {
		return z.referenced(at, errors.Join(err, sink.Cancel()))
	}
	k.persisted = true
	if err := sink.Close(); err != nil {
		return z.referenced(at, err)
	}
	return z.referenced(at, nil)
}

func (z *ZeroCopyStore) referenced(at engines.Applied, err error) error {
	if z.hooks.Referenced != nil {
		z.hooks.Referenced(at, err)
	}
	return err
}

// Release has nothing to release: no view was taken.
func (r *localReference) Release() {}

// Create starts a snapshot: a local one if the FSM's Persist takes it, a
// stored stream if data is written to it (InstallSnapshot).
func (z *ZeroCopyStore) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	k := &zeroCopySink{sinks: &z.sinks, id: referenceID(engines.Applied{Index: index, Term: term}), index: index, term: term,
		create: func() (raft.SnapshotSink, error) {
			return z.files.Create(version, index, term, configuration, configurationIndex, trans)
		}}
	z.sinks.add(k)
	return k, nil
}

// zeroCopySink becomes a local snapshot or a stored stream, whichever its
// user makes it.
type zeroCopySink struct {
	sinks       *sinkRegistry
	id          string
	index, term uint64
	create      func() (raft.SnapshotSink, error)
	file        raft.SnapshotSink
	persisted   bool // a local snapshot's Persist ran its barrier
	err         error
	// closed and closeErr make Close idempotent, as raft needs: its
	// takeSnapshot closes the sink after FSMSnapshot.Persist did.
	closed   bool
	closeErr error
}

func (k *zeroCopySink) ID() string {
	if k.file != nil {
		return k.file.ID()
	}
	return k.id
}

// Write turns the sink into a stored stream at its first byte.
func (k *zeroCopySink) Write(p []byte) (int, error) {
	if k.err != nil {
		return 0, k.err
	}
	if k.file == nil {
		if k.persisted {
			k.err = fmt.Errorf("cluster: data written to local snapshot %s", k.id)
			return 0, k.err
		}
		file, err := k.create()
		if err != nil {
			k.err = err
			return 0, err
		}
		k.forget()
		k.file = file
	}
	return k.file.Write(p)
}

func (k *zeroCopySink) forget() { k.sinks.forget(k) }

// Close publishes the stored stream; a local snapshot has nothing to
// publish. A second Close returns what the first returned.
func (k *zeroCopySink) Close() error {
	if !k.closed {
		k.closed, k.closeErr = true, k.close()
	}
	return k.closeErr
}

func (k *zeroCopySink) close() error {
	k.forget()
	if k.file != nil {
		return k.file.Close()
	}
	if !k.persisted {
		return fmt.Errorf("%w: %s", ErrNotReference, k.id)
	}
	return nil
}

func (k *zeroCopySink) Cancel() error {
	k.forget()
	k.closed, k.closeErr = true, ErrNotReference
	if k.file != nil {
		return k.file.Cancel()
	}
	return nil
}

// List returns the engine's position as its newest local snapshot and the
// stored snapshots, newest first by (term, index). The engine's position
// is what it holds, so the store never lists a local snapshot it cannot
// serve.
func (z *ZeroCopyStore) List() ([]*raft.SnapshotMeta, error) {
	files, err := z.files.List()
	if err != nil {
		return nil, err
	}
	out := make([]*raft.SnapshotMeta, 0, len(files)+1)
	if a := z.fsm.Applied(); a.Index > 0 {
		m, err := referenceMeta(a)
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

// referenceMeta is the metadata of the local snapshot at engine position
// a. The engine keeps the configuration in force but not the index of its
// entry; like a version-0 snapshot's, the configuration index is the
// snapshot's own, which raft treats as committed with it.
func referenceMeta(a engines.Applied) (*raft.SnapshotMeta, error) {
	m := &raft.SnapshotMeta{Version: 1, ID: referenceID(a), Index: a.Index, Term: a.Term, ConfigurationIndex: a.Index}
	if len(a.Config) > 0 {
		c, err := decodeConfiguration(a.Config)
		if err != nil {
			return nil, err
		}
		m.Configuration = c
	}
	return m, nil
}

// Open returns a stored snapshot, or streams a local one from a fresh
// point-in-time view of the engine, whatever position the view is at: the
// header and metadata are the view's own.
func (z *ZeroCopyStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	if !IsReference(id) {
		return z.files.Open(id)
	}
	meta, rc, err := z.openView()
	if z.hooks.Served != nil {
		var h snapshot.Header
		var size int64
		if meta != nil {
			h, size = snapshot.Header{Index: meta.Index, Term: meta.Term}, meta.Size
		}
		z.hooks.Served(h, size, err)
	}
	return meta, rc, err
}

func (z *ZeroCopyStore) openView() (*raft.SnapshotMeta, io.ReadCloser, error) {
	view, pairs, kvBytes, err := z.fsm.StreamView()
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: opening a local snapshot: %w", err)
	}
	meta, err := referenceMeta(view.Applied())
	if err != nil {
		return nil, nil, errors.Join(err, view.Close())
	}
	h := snapshot.HeaderFor(view.Applied())
	it, err := view.Iter()
	if err != nil {
		return nil, nil, errors.Join(err, view.Close())
	}
	meta.Size = snapshot.StreamSize(h, pairs, kvBytes)
	r, err := snapshot.NewReader(h, it, meta.Size)
	if err != nil {
		return nil, nil, errors.Join(err, view.Close())
	}
	return meta, &viewStream{Reader: r, view: view, fsm: z.fsm}, nil
}

// viewStream is an Open stream of a view; closing it closes the view.
type viewStream struct {
	*snapshot.Reader
	view engines.View
	fsm  *FSM
}

func (s *viewStream) Read(p []byte) (int, error) {
	n, err := s.Reader.Read(p)
	if errors.Is(err, snapshot.ErrSizeChanged) {
		s.fsm.ForgetContentSize()
	}
	return n, err
}

func (s *viewStream) WriteTo(w io.Writer) (int64, error) {
	n, err := s.Reader.WriteTo(w)
	if errors.Is(err, snapshot.ErrSizeChanged) {
		s.fsm.ForgetContentSize()
	}
	return n, err
}

func (s *viewStream) Close() error {
	return errors.Join(s.Reader.Close(), s.view.Close())
}

// ErrBadConfiguration: the configuration an engine recorded does not
// decode.
var ErrBadConfiguration = errors.New("cluster: engine's configuration record damaged")

// decodeConfiguration is raft.DecodeConfiguration, which panics on a
// malformed configuration, with the panic turned into an error.
func decodeConfiguration(b []byte) (c raft.Configuration, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", ErrBadConfiguration, p)
		}
	}()
	return raft.DecodeConfiguration(b), nil
}
