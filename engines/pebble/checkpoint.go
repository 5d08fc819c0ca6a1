package pebble

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	pdb "github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/atomicfs"

	"github.com/raftsnap/testbed/engines"
)

// Checkpoints (engines.Checkpointer).
//
// A checkpoint is Pebble's own DB.Checkpoint taken with WithFlushedWAL: the
// WAL is synced first (so the live engine is durable up to the checkpoint),
// sstables are hard-linked (Pebble falls back to copying across
// filesystems), the MANIFEST up to the current version, OPTIONS and WAL
// files are copied. Pebble v2.1's checkpoint does not say when it is
// complete in a way that survives a crash (it writes its MANIFEST marker
// before copying the WAL), so callers write their own completion marker
// after Checkpoint returns.
//
// Restoring one swaps the engine's DB for a new one made from the
// checkpoint. The DB lives in the engine's directory itself until the
// first restore, and then in a subdirectory db-<n> named by an atomic
// marker (Pebble's atomicfs.Marker, "engine-dir") in the engine's
// directory: moving the marker is the commit point, and Open removes
// whichever DB the marker does not name.

const (
	engineDirMarker = "engine-dir"
	restoredPrefix  = "db-"
)

var _ engines.Checkpointer = (*Engine)(nil)

// Checkpoint writes the engine's current state into dir (see
// engines.Checkpointer), syncing the engine's WAL first.
func (e *Engine) Checkpoint(dir string) error {
	if err := e.enter(); err != nil {
		return err
	}
	err := e.db.Checkpoint(dir, pdb.WithFlushedWAL())
	if err != nil {
		err = fmt.Errorf("pebble engine: checkpoint %s: %w", dir, err)
	}
	return e.leave(err)
}

// OpenCheckpoint opens the checkpoint in dir as a read-only Pebble DB and
// returns a view of it; closing the view closes the DB. A view reads its
// own copy of the DB's files' contents, so the checkpoint's files may be
// removed only once it is closed.
func (e *Engine) OpenCheckpoint(dir string) (engines.View, error) {
	fatal := &fatalRecorder{next: e.logger}
	popts := pebbleOptions(e.fs, fatal)
	popts.ReadOnly = true
	popts.ErrorIfNotExists = true
	db, err := pdb.Open(dir, popts)
	if err != nil {
		return nil, fmt.Errorf("pebble engine: open checkpoint %s: %w", dir, err)
	}
	g := &gate{}
	v, err := newView(db, g)
	if err == nil {
		err = fatal.failure()
	}
	if err != nil {
		if v != nil {
			err = errors.Join(err, v.Close())
		}
		return nil, errors.Join(fmt.Errorf("pebble engine: open checkpoint %s: %w", dir, err), db.Close())
	}
	return &checkpointView{view: v, db: db}, nil
}

// checkpointView is a view of a checkpoint opened read-only; closing it
// closes the checkpoint's DB.
type checkpointView struct {
	*view
	db *pdb.DB
}

func (v *checkpointView) Close() error {
	return errors.Join(v.view.Close(), v.db.Close())
}

// RestoreCheckpoint makes the checkpoint in dir the engine's contents: it
// builds a new DB directory from the checkpoint (sstables linked, every
// other file copied, all synced), then moves the engine-dir marker to it,
// which is the atomic step, reopens, and removes the old DB. A crash before
// the marker moved leaves the old DB in place, and one after leaves the new
// one; Open removes the other. The engine must have no view open; it
// refuses other operations while it restores.
func (e *Engine) RestoreCheckpoint(dir string) error {
	if err := e.fatal.failure(); err != nil {
		return err
	}
	if err := e.gate.close(); err != nil {
		return err
	}
	defer e.gate.reopen()
	marker, _, err := atomicfs.LocateMarker(e.fs, e.dir, engineDirMarker)
	if err != nil {
		return fmt.Errorf("pebble engine: restore: %w", err)
	}
	defer marker.Close()
	next := restoredPrefix + strconv.FormatUint(marker.NextIter(), 10)
	newDir := e.fs.PathJoin(e.dir, next)
	if err := e.buildFrom(dir, newDir); err != nil {
		return fmt.Errorf("pebble engine: restore from %s: %w", dir, err)
	}
	if err := e.db.Close(); err != nil {
		return fmt.Errorf("pebble engine: restore: close: %w", err)
	}
	old := e.dbDir
	if err := marker.Move(next); err != nil {
		// The marker may or may not have moved (atomicfs says so): the
		// next Open decides; this instance goes on with the old DB.
		return errors.Join(fmt.Errorf("pebble engine: restore: switch to %s: %w", next, err), e.openDB(old))
	}
	if err := e.openDB(newDir); err != nil {
		return fmt.Errorf("pebble engine: restore: %w", err)
	}
	// The old DB is garbage from here on; Open removes it too if this
	// does not finish.
	return removeOtherDBs(e.fs, e.dir, next)
}

// buildFrom writes a DB directory newDir from the checkpoint in src:
// sstables and blob files (immutable) linked, the rest (MANIFEST, WAL,
// OPTIONS, markers: files a DB writes to) copied, everything synced.
func (e *Engine) buildFrom(src, newDir string) error {
	fs := e.fs
	if err := fs.RemoveAll(newDir); err != nil {
		return err
	}
	if err := fs.MkdirAll(newDir, 0o755); err != nil {
		return err
	}
	names, err := fs.List(src)
	if err != nil {
		return err
	}
	for _, name := range names {
		from, to := fs.PathJoin(src, name), fs.PathJoin(newDir, name)
		st, err := fs.Stat(from)
		if err != nil {
			return err
		}
		switch {
		case st.IsDir() || !dbFile(name):
			// Not the DB's: a lock, or whatever its user keeps beside it.
		case strings.HasSuffix(name, ".sst") || strings.HasSuffix(name, ".blob"):
			if err := vfs.LinkOrCopy(fs, from, to); err != nil {
				return err
			}
		default:
			if err := copySynced(fs, from, to, st.Size() > 0); err != nil {
				return err
			}
		}
	}
	if err := syncDir(fs, newDir); err != nil {
		return err
	}
	return syncDir(fs, e.dir)
}

// dbFile reports whether name is one of the files a Pebble DB keeps in
// its directory (sstables, blob files, WAL, MANIFEST, OPTIONS, markers).
func dbFile(name string) bool {
	for _, suffix := range []string{".sst", ".blob", ".log"} {
		if strings.HasSuffix(name, suffix) {
			return true
		}
	}
	for _, prefix := range []string{"MANIFEST-", "OPTIONS-", "marker.", "CURRENT"} {
		if strings.HasPrefix(name, prefix) {
			return true
		}
	}
	return false
}

// copySynced copies a file and syncs the copy if it holds data (an empty
// file, such as an atomic marker, is made durable by its directory's
// sync).
func copySynced(fs vfs.FS, from, to string, sync bool) error {
	src, err := fs.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := fs.Create(to, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	_, err = io.Copy(dst, src)
	if err == nil && sync {
		err = dst.Sync()
	}
	return errors.Join(err, dst.Close())
}

func syncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// liveDBDir returns where the DB of the engine in dir lives, per its
// engine-dir marker, and removes any other DB a restore left behind.
func liveDBDir(fs vfs.FS, dir string) (string, error) {
	current, err := atomicfs.ReadMarker(fs, dir, engineDirMarker)
	if err != nil {
		return "", fmt.Errorf("pebble engine: read %s marker: %w", engineDirMarker, err)
	}
	if err := removeOtherDBs(fs, dir, current); err != nil {
		return "", fmt.Errorf("pebble engine: remove restore leftovers: %w", err)
	}
	if current == "" {
		return dir, nil
	}
	return fs.PathJoin(dir, current), nil
}

// removeOtherDBs removes every DB under dir other than live ("" for the
// DB in dir itself): restored DB directories, and, once the DB has moved
// to one, the files of the DB that lived in dir itself. It never touches
// the marker or the install staging directory.
func removeOtherDBs(fs vfs.FS, dir, live string) error {
	names, err := fs.List(dir)
	if err != nil {
		return err
	}
	for _, name := range names {
		if name == live || name == stagingDirName || strings.HasPrefix(name, "marker."+engineDirMarker+".") {
			continue
		}
		path := fs.PathJoin(dir, name)
		if strings.HasPrefix(name, restoredPrefix) {
			if err := fs.RemoveAll(path); err != nil {
				return err
			}
			continue
		}
		if live == "" {
			continue // the live DB's own files
		}
		st, err := fs.Stat(path)
		if err != nil {
			return err
		}
		if !st.IsDir() {
			if err := fs.Remove(path); err != nil {
				return err
			}
		}
	}
	return nil
}
