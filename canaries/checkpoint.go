package canaries

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/raftsnap/testbed/cluster"
	"github.com/raftsnap/testbed/engines"
)

// Planted bugs of the checkpoint path (cluster.CheckpointStore): wrappers
// around the engine's checkpoints (engines.Checkpointer) and around the
// filesystem that holds them.

// liveCheckpointEngine's OpenCheckpoint streams the live engine, not the
// checkpoint, under the checkpoint's position: Vault's just-in-time
// stream of the live file with metadata listed earlier, on a store whose
// listed snapshots are checkpoints. A follower installs the leader's later
// writes as the state at the checkpoint's index.
type liveCheckpointEngine struct{ engines.Engine }

func (e *liveCheckpointEngine) Sync() error { return engines.Sync(e.Engine) }
func (e *liveCheckpointEngine) Checkpoint(dir string) error {
	return engines.Checkpoint(e.Engine, dir)
}
func (e *liveCheckpointEngine) RestoreCheckpoint(dir string) error {
	return engines.RestoreCheckpoint(e.Engine, dir)
}

func (e *liveCheckpointEngine) OpenCheckpoint(dir string) (engines.View, error) {
	ckpt, err := engines.OpenCheckpoint(e.Engine, dir)
	if err != nil {
		return nil, err
	}
	at := ckpt.Applied()
	if err := ckpt.Close(); err != nil {
		return nil, err
	}
	live, err := e.Engine.View()
	if err != nil {
		return nil, err
	}
	return relabelledView{View: live, applied: at}, nil
}

type relabelledView struct {
	engines.View
	applied engines.Applied
}

func (v relabelledView) Applied() engines.Applied { return v.applied }

// walLessCheckpointEngine's checkpoints hold the engine's sstables and
// MANIFEST but not its WAL: a checkpoint of the flushed files only, as a
// hand-made checkpoint that links the tables and forgets the memtable
// (whose writes only the WAL holds) would be. The checkpoint then does not
// hold the position the store recorded for it.
type walLessCheckpointEngine struct {
	engines.Engine
	// fs is the filesystem the checkpoints are on (Stores.CheckpointFS).
	fs vfs.FS
}

func (e *walLessCheckpointEngine) Sync() error { return engines.Sync(e.Engine) }
func (e *walLessCheckpointEngine) OpenCheckpoint(dir string) (engines.View, error) {
	return engines.OpenCheckpoint(e.Engine, dir)
}
func (e *walLessCheckpointEngine) RestoreCheckpoint(dir string) error {
	return engines.RestoreCheckpoint(e.Engine, dir)
}

func (e *walLessCheckpointEngine) Checkpoint(dir string) error {
	if err := engines.Checkpoint(e.Engine, dir); err != nil {
		return err
	}
	fs := e.fs
	if fs == nil {
		return errors.New("canaries: wal-less checkpoint: no filesystem")
	}
	names, err := fs.List(dir)
	if err != nil {
		return err
	}
	for _, n := range names {
		if strings.HasSuffix(n, ".log") {
			if err := fs.Remove(fs.PathJoin(dir, n)); err != nil {
				return fmt.Errorf("canaries: wal-less checkpoint: %w", err)
			}
		}
	}
	return nil
}

// checkpointNoSyncFS drops every fsync of files and directories under the
// checkpoint store's directory, as a storage layer that never forwards the
// syncs of that directory (or a checkpoint written with Pebble's
// NoSyncOnClose) would: the store's completion marker then vouches for a
// checkpoint that is not durable, and raft compacts its log against it. A
// power loss takes the checkpoint, marker included.
type checkpointNoSyncFS struct{ vfs.FS }

func inCheckpoints(name string) bool {
	return name == cluster.PebbleCheckpointDir || strings.HasPrefix(name, cluster.PebbleCheckpointDir+"/")
}

func (fs checkpointNoSyncFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	if err != nil || !inCheckpoints(name) {
		return f, err
	}
	return noSyncFile{f}, nil
}

func (fs checkpointNoSyncFS) OpenReadWrite(name string, category vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, category, opts...)
	if err != nil || !inCheckpoints(name) {
		return f, err
	}
	return noSyncFile{f}, nil
}

func (fs checkpointNoSyncFS) OpenDir(name string) (vfs.File, error) {
	f, err := fs.FS.OpenDir(name)
	if err != nil || !inCheckpoints(name) {
		return f, err
	}
	return noSyncFile{f}, nil
}

// Unwrap returns the wrapped filesystem, as vfs wrappers do.
func (fs checkpointNoSyncFS) Unwrap() vfs.FS { return fs.FS }
