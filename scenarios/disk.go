package scenarios

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/raftsnap/testbed/sim"
)

// simDisk is the fault injector of one Pebble node's filesystem
// (vfs/errorfs): while a disk-error fault is on, each write operation
// fails with errorfs.ErrInjected with the fault's probability; while a
// slow-disk fault is on, each sync first waits a virtual delay. Choices are
// hashed from (seed, path, per-path counter) so that they do not depend on
// the order in which Pebble's goroutines reach the disk.
type simDisk struct {
	seed      sim.Seed
	errorBits atomic.Uint64 // math.Float64bits of the error probability
	delayMin  atomic.Int64
	delayMax  atomic.Int64

	mu     sync.Mutex
	counts map[string]uint64
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
	d.mu.Lock()
	n := d.counts[op.Path]
	d.counts[op.Path] = n + 1
	d.mu.Unlock()
	h := d.seed.Hash(fnv(op.Path), n, uint64(op.Kind))
	if hi > 0 && op.Kind == errorfs.OpFileSync {
		lo := time.Duration(d.delayMin.Load())
		time.Sleep(lo + time.Duration(h%uint64(hi-lo+1)))
	}
	if p > 0 && op.Kind.ReadOrWrite() == errorfs.OpIsWrite && float64(h>>11)/(1<<53) < p {
		return errorfs.ErrInjected
	}
	return nil
}

func fnv(s string) uint64 {
	h := uint64(0xcbf29ce484222325)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 0x100000001b3
	}
	return h
}
