package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/raftsnap/testbed/cluster/logstore"
	"github.com/raftsnap/testbed/cluster/snapstore"
	"github.com/raftsnap/testbed/engines"
	"github.com/raftsnap/testbed/engines/bbolt"
	"github.com/raftsnap/testbed/engines/pebble"
)

// Storage is where a node keeps its whole durable state. Open is called at
// every start and restart of the node and opens all of it.
type Storage interface {
	Open() (*Stores, error)
}

// Stores is a node's opened state: the engine behind the state machine,
// raft's log and stable stores, and its snapshot store.
type Stores struct {
	Engine    engines.Engine
	Logs      raft.LogStore
	Stable    raft.StableStore
	Snapshots raft.SnapshotStore
	// CheckpointFS and CheckpointDir are where a checkpoint store keeps
	// the engine's checkpoints: the engine's own filesystem, so that a
	// checkpoint can link the engine's files. Nil for a storage that
	// cannot hold them (the node then runs another store).
	CheckpointFS  vfs.FS
	CheckpointDir string
	// Closers release what Open opened, in order, after raft has shut
	// down.
	Closers []func() error
}

// Close releases everything, returning every error.
func (s *Stores) Close() error {
	var errs []error
	for _, c := range s.Closers {
		errs = append(errs, c())
	}
	return errors.Join(errs...)
}

// snapshotDir is where every storage keeps its snapshot store: under the
// node's directory, or at the root of its snapshot filesystem.
const snapshotDir = "snapshots"

// openSnapshotStores opens the snapshot store under root on fs.
func openSnapshotStores(st *Stores, fs vfs.FS, root string) error {
	snaps, err := snapstore.New(fs, fs.PathJoin(root, snapshotDir), snapshotsRetained)
	if err != nil {
		return err
	}
	st.Snapshots = snaps
	return nil
}

// snapshotsRetained is how many completed snapshots a node keeps: the
// newest plus one, so a snapshot being streamed to a follower is not reaped
// under it by the next one.
const snapshotsRetained = 2

// BoltStorage keeps a node's state in a real directory: the bbolt engine,
// raft-boltdb for the log and stable store, and snapshots beside them. A
// crash is modelled by copying the directory (see CopyDir): a killed process
// keeps every committed bbolt transaction and written file.
type BoltStorage struct {
	Dir string
	// NoSync skips fsyncs: committed writes then survive a process crash
	// but not a power loss.
	NoSync bool
	// FileHook, if set, performs the writes and syncs of the engine's and
	// the log store's bbolt files (see third_party/bbolt); the simulator
	// records there what a power loss would lose (sim/powerloss).
	FileHook bolt.FileHook
	// ArrayFreelist is the engine's bbolt.Options.ArrayFreelist: the
	// simulator wants page numbers that replay.
	ArrayFreelist bool
	// StagingTxBytes is the engine's bbolt.Options.StagingTxBytes; 0 means
	// the engine's default. The simulator makes it small so that even its
	// small snapshots install in several transactions, and a crash in the
	// middle of an install finds some of them committed.
	StagingTxBytes int
	// SnapshotFS, if set, holds the snapshot store instead of Dir/snapshots
	// on the real disk. The simulator keeps snapshots in memory: streaming
	// them makes many small reads and writes, and every real system call
	// is a point where the wall clock could reorder the run's goroutines
	// (see sim.Quiescer).
	SnapshotFS vfs.FS
}

// Open opens or creates the node state under Dir.
func (s BoltStorage) Open() (*Stores, error) {
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return nil, err
	}
	st := &Stores{}
	e, err := bbolt.Open(filepath.Join(s.Dir, "engine.db"), bbolt.Options{NoSync: s.NoSync, StagingTxBytes: s.StagingTxBytes, FileHook: s.FileHook, ArrayFreelist: s.ArrayFreelist})
	if err != nil {
		return nil, err
	}
	return openBesideEngine(st, e, s.Dir, s.SnapshotFS, s.NoSync, s.FileHook)
}

// openBesideEngine completes the stores of a node whose engine e is open:
// raft-boltdb for the log and stable store under dir, and a snapshot store
// in snapFS, or under dir if snapFS is nil. On error it closes everything,
// e included.
func openBesideEngine(st *Stores, e engines.Engine, dir string, snapFS vfs.FS, noSync bool, hook bolt.FileHook) (*Stores, error) {
	st.Engine = e
	st.Closers = append(st.Closers, e.Close)
	logs, err := openLogStore(raftboltdb.Options{
		Path:        filepath.Join(dir, "raft.db"),
		NoSync:      noSync,
		BoltOptions: &bolt.Options{NoSync: noSync, NoGrowSync: noSync, Timeout: 0, FileHook: hook},
	})
	if err != nil {
		return nil, errors.Join(err, st.Close())
	}
	st.Logs, st.Stable = monotonicLogs{logs}, logs
	st.Closers = append(st.Closers, logs.Close)
	root := ""
	if snapFS == nil {
		snapFS, root = vfs.Default, dir
	}
	if err := openSnapshotStores(st, snapFS, root); err != nil {
		return nil, errors.Join(err, st.Close())
	}
	return st, nil
}

// ErrDamagedLogStore is returned when raft-boltdb's file is too damaged to
// open: bbolt then panics rather than returning an error (see
// engines/bbolt's notPanicking).
var ErrDamagedLogStore = errors.New("cluster: raft log store damaged")

func openLogStore(opts raftboltdb.Options) (store *raftboltdb.BoltStore, err error) {
	defer func() {
		if r := recover(); r != nil {
			store, err = nil, fmt.Errorf("%w: %s: bbolt panicked: %v", ErrDamagedLogStore, opts.Path, r)
		}
	}()
	return raftboltdb.New(opts)
}

// CustomStorage keeps a node's state in a real directory like BoltStorage,
// with an engine of the caller's choosing: OpenEngine opens (or creates) it
// in Dir/engine, and raft-boltdb and the snapshot store live beside it. It
// is how a user puts their own Engine under the simulator's faults. A crash
// is modelled as for bbolt, by copying Dir (see CopyDir), so the engine
// must keep all its state in regular files under the directory it is given
// and must survive being reopened from whatever it had written when the
// copy was taken.
type CustomStorage struct {
	Dir        string
	OpenEngine func(dir string) (engines.Engine, error)
	// NoSync skips the log store's fsyncs, as for BoltStorage.
	NoSync bool
	// SnapshotFS, if set, holds the snapshot store, as for BoltStorage.
	SnapshotFS vfs.FS
}

// ErrNoEngineFactory is returned by CustomStorage.Open without OpenEngine.
var ErrNoEngineFactory = errors.New("cluster: custom storage has no engine factory")

// Open opens or creates the node state under Dir.
func (s CustomStorage) Open() (*Stores, error) {
	if s.OpenEngine == nil {
		return nil, ErrNoEngineFactory
	}
	dir := filepath.Join(s.Dir, "engine")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	e, err := s.OpenEngine(dir)
	if err != nil {
		return nil, fmt.Errorf("cluster: opening custom engine in %s: %w", dir, err)
	}
	if e == nil {
		return nil, fmt.Errorf("cluster: custom engine factory returned no engine for %s: %w", dir, ErrNoEngineFactory)
	}
	return openBesideEngine(&Stores{}, e, s.Dir, s.SnapshotFS, s.NoSync, nil)
}

// The directories of a PebbleStorage on its FS, for fault injectors that
// treat them differently.
const (
	PebbleEngineDir   = "engine"
	PebbleLogDir      = "raft"
	PebbleSnapshotDir = snapshotDir
	// PebbleCheckpointDir holds a checkpoint store's checkpoints.
	PebbleCheckpointDir = "checkpoints"
)

// PebbleStorage keeps a node's whole state on one vfs.FS: the Pebble
// engine, a Pebble log and stable store, and snapshots. With
// vfs.NewCrashableMem a crash is a CrashClone of FS.
type PebbleStorage struct {
	FS     vfs.FS
	NoSync bool
	// EngineNoSync commits the engine's batches without syncing its WAL
	// (the log and stable store still sync unless NoSync): the state
	// machine's writes then reach the disk in the background, and a power
	// loss may take the engine back to an earlier applied index, from
	// which raft's log replays. A zero-copy store syncs the engine before
	// raft compacts the log (engines.Syncer).
	EngineNoSync bool
	// InstallFileSize is the engine's pebble.Options.InstallFileSize; 0
	// means the engine's default. The simulator makes it small so that an
	// install stages several sstables (see BoltStorage.StagingTxBytes).
	InstallFileSize int64
}

// Open opens or creates the node state on FS.
func (s PebbleStorage) Open() (*Stores, error) {
	st := &Stores{}
	e, err := pebble.Open(PebbleEngineDir, pebble.Options{FS: s.FS, NoSync: s.NoSync || s.EngineNoSync, InstallFileSize: s.InstallFileSize})
	if err != nil {
		return nil, err
	}
	st.Engine = e
	st.Closers = append(st.Closers, e.Close)
	logs, err := logstore.Open(PebbleLogDir, logstore.Options{FS: s.FS, NoSync: s.NoSync})
	if err != nil {
		return nil, errors.Join(err, st.Close())
	}
	st.Logs, st.Stable = logs, logs
	st.Closers = append(st.Closers, logs.Close)
	if err := openSnapshotStores(st, s.FS, ""); err != nil {
		return nil, errors.Join(err, st.Close())
	}
	st.CheckpointFS, st.CheckpointDir = s.FS, PebbleCheckpointDir
	return st, nil
}

// CopyDir copies the regular files under src to dst, as they are on disk
// now: what a process killed at this instant leaves behind.
func CopyDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("cluster: copying %s: not a regular file", path)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
}

// monotonicLogs declares raft-boltdb's log store monotonic, as the Pebble
// log store is (logstore.Store.IsMonotonic). raft then drops the whole log
// after installing a snapshot instead of keeping up to TrailingLogs entries,
// possibly of an older term, above the snapshot's index. Both node stacks
// thus take the same raft path through an install, so one seed can be
// compared across engines (scenarios.Differential): before this, 2 of 20
// snapshot-crash seeds differed because a bbolt follower rejected
// AppendEntries over a hole among the entries it kept where a Pebble one
// had none.
type monotonicLogs struct{ raft.LogStore }

func (monotonicLogs) IsMonotonic() bool { return true }
