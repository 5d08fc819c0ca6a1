package scenarios

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/raftsnap/testbed/cluster"
	"github.com/raftsnap/testbed/sim"
)

// simDisk is the fault injector of one node's memory filesystems (a
// Pebble node's whole state, a bbolt or custom node's snapshot store) as
// vfs/errorfs sees them: while a disk-error fault is on, each write
// operation fails with the fault's probability (see failStop for the files
// Pebble owns), and in the snapshot store half of those failures are a full
// disk (ENOSPC) and reads of a stored snapshot fail too (snapshotReads);
// while a slow-disk fault is on, each sync (Sync, SyncData, SyncTo:
// Pebble's WAL uses SyncData) first waits a virtual delay. Write and sync
// choices are hashed from (seed, path, per-path counter of writes and
// syncs) so that they do not depend on the order in which Pebble's
// goroutines reach the disk; read choices from (seed, path, offset).
type simDisk struct {
	seed      sim.Seed
	errorBits atomic.Uint64 // math.Float64bits of the error probability
	delayMin  atomic.Int64
	delayMax  atomic.Int64
	// injected and delayed count the errors injected and the syncs
	// delayed, for the trace.
	injected atomic.Int64
	delayed  atomic.Int64
	// full and reads count, among the injected errors, the ENOSPC
	// failures and the failed reads.
	full  atomic.Int64
	reads atomic.Int64

	mu     sync.Mutex
	counts map[string]uint64

	// failStop, if set, is called instead of failing a write to a file
	// Pebble owns (the engine's and the raft log store's WAL, MANIFEST,
	// sstables...): Pebble treats an I/O error there as fatal, by
	// panicking (a failed WAL rotation, which may then die of "unlock of
	// unlocked mutex", beyond any recover) or by Logger.Fatalf, and
	// hashicorp/raft panics when it cannot save its term; a real process
	// dies there. failStop crashes the node at that instant and reports
	// true, and the write then goes through on the crashed instance's
	// discarded state; it reports false while the node is not running
	// (starting), and then nothing is injected. Writes that our own code
	// handles fail as they are: the snapshot store's files and the
	// engine's install staging files.
	failStop func() bool
}

func newSimDisk(seed sim.Seed) *simDisk { return &simDisk{seed: seed, counts: map[string]uint64{}} }

func (d *simDisk) setErrorProbability(p float64) { d.errorBits.Store(math.Float64bits(p)) }

func (d *simDisk) setSyncDelay(lo, hi time.Duration) {
	d.delayMin.Store(int64(lo))
	d.delayMax.Store(int64(hi))
}

func (d *simDisk) String() string { return "sim-disk" }

// MaybeError implements errorfs.Injector.
func (d *simDisk) MaybeError(op errorfs.Op) error {
	p := math.Float64frombits(d.errorBits.Load())
	hi := time.Duration(d.delayMax.Load())
	if p == 0 && hi == 0 {
		return nil
	}
	isSync := op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData || op.Kind == errorfs.OpFileSyncTo
	if !isSync && op.Kind.ReadOrWrite() != errorfs.OpIsWrite {
		// Reads are neither failed nor delayed, and must not move the
		// counters: other goroutines read the same files (a snapshot
		// being sent, a directory listed) in an order of their own.
		return nil
	}
	d.mu.Lock()
	n := d.counts[op.Path]
	d.counts[op.Path] = n + 1
	d.mu.Unlock()
	h := d.seed.Hash(fnv(op.Path), n, uint64(op.Kind))
	if hi > 0 && isSync {
		lo := time.Duration(d.delayMin.Load())
		d.delayed.Add(1)
		time.Sleep(lo + time.Duration(h%uint64(hi-lo+1)))
	}
	if p > 0 && op.Kind.ReadOrWrite() == errorfs.OpIsWrite && float64(h>>11)/(1<<53) < p {
		if handledByUs(op.Path) && !(isSync && checkpointDir(op.Path)) {
			d.injected.Add(1)
			if inDir(op.Path, cluster.PebbleSnapshotDir) && op.Kind != errorfs.OpFileClose && h&(1<<10) != 0 {
				d.full.Add(1)
				return errDiskFull
			}
			return errorfs.ErrInjected
		}
		if d.failStop != nil && d.failStop() {
			d.injected.Add(1)
		}
		return nil
	}
	return nil
}

// errDiskFull is the injected out-of-space error: a write into the
// snapshot store (Persist, or an InstallSnapshot body being received)
// that finds the disk full.
var errDiskFull = fmt.Errorf("%w: %w", errorfs.ErrInjected, syscall.ENOSPC)

// readError returns the error a read at off of the snapshot store's file
// path meets, if any. It is keyed by the offset, not by a counter, because
// several goroutines may read one stored snapshot at once (streams to two
// followers) in an order of their own: each sees the same disk.
func (d *simDisk) readError(path string, off int64) error {
	p := math.Float64frombits(d.errorBits.Load())
	if p == 0 || float64(d.seed.Hash(fnv(path), uint64(off), uint64(errorfs.OpFileRead))>>11)/(1<<53) >= p {
		return nil
	}
	d.injected.Add(1)
	d.reads.Add(1)
	return errorfs.ErrInjected
}

// snapshotReads wraps fs so that reads of files in the snapshot store may
// fail while a disk-error fault is on (simDisk.readError). errorfs cannot
// do it: it knows no offset for sequential reads.
func snapshotReads(fs vfs.FS, d *simDisk) vfs.FS { return readFaultFS{FS: fs, d: d} }

type readFaultFS struct {
	vfs.FS
	d *simDisk
}

func (fs readFaultFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.Open(name, opts...)
	if err != nil || !storedSnapshot(name) {
		return f, err
	}
	return &readFaultFile{File: f, d: fs.d, path: name}, nil
}

type readFaultFile struct {
	vfs.File
	d    *simDisk
	path string
	off  int64
}

func (f *readFaultFile) Read(p []byte) (int, error) {
	if err := f.d.readError(f.path, f.off); err != nil {
		return 0, err
	}
	n, err := f.File.Read(p)
	f.off += int64(n)
	return n, err
}

func (f *readFaultFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.d.readError(f.path, off); err != nil {
		return 0, err
	}
	return f.File.ReadAt(p, off)
}

// handledByUs reports whether a write error on path reaches code of ours
// that handles it: the snapshot store, or the staging files of the Pebble
// engine's install (written before Pebble ingests them).
func handledByUs(path string) bool {
	return storedSnapshot(path) || strings.Contains(path, "/install-staging/")
}

// checkpointDir reports whether path is the checkpoint store's directory
// or one checkpoint's: Pebble's checkpoint panics when a sync of one fails
// (its atomic marker's Move), as a real process dies there, so a failed
// sync there is a fail-stop crash, not an error.
func checkpointDir(path string) bool {
	rest, ok := strings.CutPrefix(path, cluster.PebbleCheckpointDir)
	return ok && (rest == "" || (strings.HasPrefix(rest, "/") && !strings.Contains(rest[1:], "/")))
}

// storedSnapshot reports whether path is in the snapshot store: its
// stored streams, or a checkpoint store's checkpoints (whose errors the
// store handles: a failed checkpoint fails the local snapshot, a failed
// read fails the send).
func storedSnapshot(path string) bool {
	return inDir(path, cluster.PebbleSnapshotDir) || inDir(path, cluster.PebbleCheckpointDir)
}

// inDir reports whether path is dir or inside it.
func inDir(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}

func fnv(s string) uint64 {
	h := uint64(0xcbf29ce484222325)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 0x100000001b3
	}
	return h
}
