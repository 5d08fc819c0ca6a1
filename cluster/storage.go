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
	// NoSync skips fsyncs; the simulator uses it because it models process
	// crashes, not power loss, for bbolt nodes.
	NoSync bool
}

// Open opens or creates the node state under Dir.
func (s BoltStorage) Open() (*Stores, error) {
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return nil, err
	}
	st := &Stores{}
	e, err := bbolt.Open(filepath.Join(s.Dir, "engine.db"), bbolt.Options{NoSync: s.NoSync})
	if err != nil {
		return nil, err
	}
	st.Engine = e
	st.Closers = append(st.Closers, e.Close)
	logs, err := raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(s.Dir, "raft.db"),
		NoSync:      s.NoSync,
		BoltOptions: &bolt.Options{NoSync: s.NoSync, NoGrowSync: s.NoSync, Timeout: 0},
	})
	if err != nil {
		return nil, errors.Join(err, st.Close())
	}
	st.Logs, st.Stable = logs, logs
	st.Closers = append(st.Closers, logs.Close)
	snaps, err := snapstore.New(vfs.Default, filepath.Join(s.Dir, "snapshots"), snapshotsRetained)
	if err != nil {
		return nil, errors.Join(err, st.Close())
	}
	st.Snapshots = snaps
	return st, nil
}

// PebbleStorage keeps a node's whole state on one vfs.FS: the Pebble
// engine, a Pebble log and stable store, and snapshots. With
// vfs.NewCrashableMem a crash is a CrashClone of FS.
type PebbleStorage struct {
	FS     vfs.FS
	NoSync bool
}

// Open opens or creates the node state on FS.
func (s PebbleStorage) Open() (*Stores, error) {
	st := &Stores{}
	e, err := pebble.Open("engine", pebble.Options{FS: s.FS, NoSync: s.NoSync})
	if err != nil {
		return nil, err
	}
	st.Engine = e
	st.Closers = append(st.Closers, e.Close)
	logs, err := logstore.Open("raft", logstore.Options{FS: s.FS, NoSync: s.NoSync})
	if err != nil {
		return nil, errors.Join(err, st.Close())
	}
	st.Logs, st.Stable = logs, logs
	st.Closers = append(st.Closers, logs.Close)
	snaps, err := snapstore.New(s.FS, "snapshots", snapshotsRetained)
	if err != nil {
		return nil, errors.Join(err, st.Close())
	}
	st.Snapshots = snaps
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
