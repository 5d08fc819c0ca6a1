package canaries

import (
	"os"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
	bolt "go.etcd.io/bbolt"
)

// noSyncFS loses every fsync: files and directories opened through it
// report success from Sync, SyncData and SyncTo without syncing, like a
// storage layer that forgot to forward them (or a disk that lies about its
// write cache). Nothing changes until the power fails: then every write
// since the node's filesystem was created may be lost, block by block and
// directory entry by directory entry.
type noSyncFS struct{ vfs.FS }

func (fs noSyncFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	return noSync(fs.FS.Create(name, category))
}

func (fs noSyncFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	return noSync(fs.FS.Open(name, opts...))
}

func (fs noSyncFS) OpenReadWrite(name string, category vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return noSync(fs.FS.OpenReadWrite(name, category, opts...))
}

func (fs noSyncFS) OpenDir(name string) (vfs.File, error) { return noSync(fs.FS.OpenDir(name)) }

func (fs noSyncFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	return noSync(fs.FS.ReuseForWrite(oldname, newname, category))
}

// Unwrap returns the wrapped filesystem, as vfs wrappers do.
func (fs noSyncFS) Unwrap() vfs.FS { return fs.FS }

func noSync(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return noSyncFile{f}, nil
}

type noSyncFile struct{ vfs.File }

func (noSyncFile) Sync() error                { return nil }
func (noSyncFile) SyncData() error            { return nil }
func (noSyncFile) SyncTo(int64) (bool, error) { return false, nil }

// lateMetaBolt drops the fsync that makes each bbolt commit durable: bbolt
// writes a commit's pages, syncs, writes its meta page (page 0 or 1) and
// syncs again; this layer reports that last sync done without doing it, as
// a storage layer that acknowledges a barrier early would. Each commit is
// durable only once the next one's first sync goes through, so a commit
// returns (a log entry acknowledged, a vote recorded, a write applied)
// before it is durable, and a power loss then takes the last commit of the
// engine and of the raft log back. bbolt's copy-on-write keeps the file
// consistent either way: what is lost is exactly that commit.
type lateMetaBolt struct {
	bolt.FileHook
	mu sync.Mutex
	// metaLast is true for a file whose last write was to a meta page.
	metaLast map[string]bool
}

func (h *lateMetaBolt) WriteAt(f *os.File, b []byte, off int64) (int, error) {
	h.mu.Lock()
	h.metaLast[f.Name()] = off < 2*int64(os.Getpagesize()) && len(b) <= os.Getpagesize()
	h.mu.Unlock()
	return h.FileHook.WriteAt(f, b, off)
}

func (h *lateMetaBolt) Sync(f *os.File) error {
	h.mu.Lock()
	drop := h.metaLast[f.Name()]
	h.mu.Unlock()
	if drop {
		return nil
	}
	return h.FileHook.Sync(f)
}

// droppedWriteErrorsFS reports every failed write to a file as done: Write
// returns the whole buffer written when the layer below refused it (an
// I/O error, or ENOSPC on a full disk), as code that never looks at
// write(2)'s result does. The file is left short; whoever wrote it is told
// it is whole.
type droppedWriteErrorsFS struct{ vfs.FS }

func (fs droppedWriteErrorsFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	return droppedWriteErrors(fs.FS.Create(name, category))
}

func (fs droppedWriteErrorsFS) OpenReadWrite(name string, category vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return droppedWriteErrors(fs.FS.OpenReadWrite(name, category, opts...))
}

func (fs droppedWriteErrorsFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	return droppedWriteErrors(fs.FS.ReuseForWrite(oldname, newname, category))
}

// Unwrap returns the wrapped filesystem, as vfs wrappers do.
func (fs droppedWriteErrorsFS) Unwrap() vfs.FS { return fs.FS }

func droppedWriteErrors(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return droppedWriteErrorsFile{f}, nil
}

type droppedWriteErrorsFile struct{ vfs.File }

func (f droppedWriteErrorsFile) Write(p []byte) (int, error) {
	_, _ = f.File.Write(p)
	return len(p), nil
}

func (f droppedWriteErrorsFile) WriteAt(p []byte, off int64) (int, error) {
	_, _ = f.File.WriteAt(p, off)
	return len(p), nil
}
