package pebble

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

const crashSeed = 20240601

// crashImage is a filesystem as a power loss could have left it.
type crashImage struct {
	fs *vfs.MemFS
	// at names the operation about to run when the image was taken.
	at string
	// installDone is set for images taken after Install returned: they must
	// hold the new state.
	installDone bool
	unsyncedPct int
}

// crashRecorder is an errorfs injector that never fails an operation but,
// while armed, takes crash images of the memory filesystem just before every
// write-class operation (create, write, sync, link, rename, remove, ...):
// one with no unsynced data kept and one keeping a seeded-random share.
type crashRecorder struct {
	mem         *vfs.MemFS
	armed       atomic.Bool
	installDone atomic.Bool

	mu     sync.Mutex // guards images; Pebble's background goroutines call in too
	images []crashImage
}

func (r *crashRecorder) MaybeError(op errorfs.Op) error {
	if !r.armed.Load() || op.Kind.ReadOrWrite() != errorfs.OpIsWrite {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	at := fmt.Sprintf("op %d (kind %d) on %s", len(r.images)/2, op.Kind, op.Path)
	done := r.installDone.Load()
	// Each image has its own generator, derived from the seed and its
	// position, so that which unsynced data survives does not depend on
	// how goroutines interleave elsewhere.
	rng := rand.New(rand.NewPCG(crashSeed, uint64(len(r.images))))
	pct := 1 + rng.IntN(100)
	r.images = append(r.images,
		crashImage{fs: r.mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0}), at: at, installDone: done},
		crashImage{fs: r.mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: pct, RNG: rng}), at: at, installDone: done, unsyncedPct: pct},
	)
	return nil
}

func (r *crashRecorder) String() string { return "crashRecorder" }

// TestInstallIsAtomicAcrossCrashes crashes (by crash-cloning the memory
// filesystem) before every write, sync, create, link, rename and remove an
// install performs, including the engine's Close afterwards, and checks that
// each image reopens to exactly the old or exactly the new state, the new
// one once Install has returned, with no staging leftovers.
func TestInstallIsAtomicAcrossCrashes(t *testing.T) {
	rec := &crashRecorder{mem: vfs.NewCrashableMem()}
	fs := errorfs.Wrap(rec.mem, rec)
	// Small staged tables so the crash points include several of them.
	e, err := Open("db", Options{FS: fs, InstallFileSize: 8 << 10})
	if err != nil {
		t.Fatal(err)
	}

	// The old state lives partly in sstables and partly in the memtable (and
	// so in the WAL), each part overlapping the new keys' range.
	mustInstall(t, e, at(10, 2, "old config"), sortedPairs("k", "old", 300))
	mustWrite(t, e, at(11, 2, "old config"), "k000001", "rewritten", "k000002", "", "a", "first")
	if err := e.db.Flush(); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, e, at(12, 3, "old config"), "k000003", "in memtable", "zz", "last")
	oldState := mustState(t, e)

	newState := state{pairs: sortedPairs("k0001", "new", 500), applied: at(40, 5, "new config")}

	rec.armed.Store(true)
	mustInstall(t, e, newState.applied, newState.pairs)
	rec.installDone.Store(true)
	if got := mustState(t, e); !got.equal(newState) {
		t.Fatalf("live engine after install: %v", got)
	}
	mustClose(t, e)
	rec.armed.Store(false)

	if len(rec.images) < 20 {
		t.Fatalf("only %d crash images: the recorder is not seeing the install's operations", len(rec.images))
	}
	var sawOld, sawNew int
	for _, img := range rec.images {
		where := fmt.Sprintf("crash before %s (unsynced kept %d%%)", img.at, img.unsyncedPct)
		e, err := Open("db", Options{FS: img.fs})
		if err != nil {
			t.Fatalf("%s: open: %v", where, err)
		}
		got, err := readState(e)
		if err != nil {
			t.Fatalf("%s: read: %v", where, err)
		}
		switch {
		case got.equal(newState):
			sawNew++
		case got.equal(oldState) && !img.installDone:
			sawOld++
		case got.equal(oldState):
			t.Errorf("%s: install was lost after Install returned", where)
		default:
			t.Errorf("%s: mixed state: %d pairs, applied %+v", where, len(got.pairs), got.applied)
		}
		if names, err := stagingLeftovers(img.fs, "db"); err != nil || len(names) != 0 {
			t.Errorf("%s: staging leftovers after Open: %v, %v", where, names, err)
		}
		if err := e.Close(); err != nil {
			t.Fatalf("%s: close: %v", where, err)
		}
	}
	t.Logf("%d crash images: %d old, %d new", len(rec.images), sawOld, sawNew)
	if sawOld == 0 || sawNew == 0 {
		t.Errorf("crash images cover only one outcome (old %d, new %d): the crash points miss the commit", sawOld, sawNew)
	}
}
