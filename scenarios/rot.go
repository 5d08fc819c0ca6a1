package scenarios

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/raftsnap/testbed/cluster"
	"github.com/raftsnap/testbed/sim"
	"github.com/raftsnap/testbed/snapshot"
)

// snapRot is corruption at rest in one node's snapshot store: while on,
// each stored snapshot opened for reading (to be sent, or restored) first
// has one byte flipped on disk, durably, at an offset hashed from (seed,
// path). A stored snapshot is a file of the snapshot store that holds a
// stream (it starts with snapshot.Magic), whatever store wrote it; each
// file rots once. It acts below the disk fault injector, on the memory
// filesystem itself, as decay does.
type snapRot struct {
	seed sim.Seed
	on   atomic.Bool
	// rotted counts the files rotted, for the trace.
	rotted atomic.Int64

	mu   sync.Mutex
	done map[string]bool // paths already rotted
}

func newSnapRot(seed sim.Seed) *snapRot { return &snapRot{seed: seed, done: map[string]bool{}} }

// wrap returns fs with the rot applied on every open for reading.
func (r *snapRot) wrap(fs vfs.FS) vfs.FS { return rotFS{FS: fs, r: r} }

type rotFS struct {
	vfs.FS
	r *snapRot
}

func (fs rotFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	if fs.r.on.Load() && inDir(name, cluster.PebbleSnapshotDir) {
		if err := fs.r.rot(fs.FS, name); err != nil {
			return nil, err
		}
	}
	return fs.FS.Open(name, opts...)
}

// rot flips a byte of the stored snapshot at path, once.
func (r *snapRot) rot(fs vfs.FS, path string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done[path] {
		return nil
	}
	f, err := fs.OpenReadWrite(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil // not there, or a directory: the open says so itself
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.IsDir() {
		return nil
	}
	head := make([]byte, len(snapshot.Magic))
	if _, err := f.ReadAt(head, 0); err != nil || !bytes.Equal(head, snapshot.Magic[:]) {
		return nil // not a stream: metadata, or too short to hold one
	}
	off := int64(r.seed.Hash(fnv(path)) % uint64(st.Size()))
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b, off); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	r.done[path] = true
	r.rotted.Add(1)
	return nil
}
