package scenarios

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/raftsnap/testbed/cluster"
	"github.com/raftsnap/testbed/sim"
	"github.com/raftsnap/testbed/sim/powerloss"
)

// The fault machinery of a world lives beside the node's life (world.go),
// one concern a file:
//
//   - nodedisk.go: what a node keeps across restarts, the storage each
//     start opens on it, and what a crash or a power loss leaves of it;
//   - crashfs.go: the power-loss clone of a memory filesystem;
//   - disk.go: the disk fault injector (I/O errors, slow syncs);
//   - storewrap.go: the wrappers around a node's opened stores (planted
//     bugs, crash taps, the Quiescer) and its snapshot guard;
//   - crashtap.go: crashes at steps of the snapshot path;
//   - quiet.go: the Quiescer's store wrappers.
//
// A fault that changes what a node's disk holds or does belongs in
// nodeDisk; one that changes what its opened stores do, in wrapStores.

// nodeDisk is a node's durable state across its restarts.
type nodeDisk struct {
	w      *World
	id     raft.ServerID
	engine string
	// fs is a Pebble node's whole state, a crashable memory filesystem.
	fs *vfs.MemFS
	// faults injects disk faults into the memory filesystem: a Pebble
	// node's fs, a bbolt or custom node's snapFS; rot corrupts its stored
	// snapshots at rest.
	faults *simDisk
	rot    *snapRot
	// dir and generation name a bbolt or custom node's current directory
	// (a crash copies it to the next generation), and snapFS holds its
	// snapshots (in memory, see cluster.BoltStorage.SnapshotFS).
	dir        string
	generation int
	snapFS     *vfs.MemFS
	// pages records what a bbolt node wrote to the bbolt files of dir
	// since their last sync, for a power loss to drop or tear; current is
	// true while dir is the node's current directory, for the hooks of
	// instances that crashed since.
	pages   *powerloss.Recorder
	current *atomic.Bool
	// cut is a power loss armed to strike at the node's next sync of a
	// bbolt file (armPowerCut), nil if none is; guarded by the world's mu.
	cut *powerCut
}

// newNodeDisk creates the empty disk of node id running engine.
func (w *World) newNodeDisk(id raft.ServerID, engine string) *nodeDisk {
	d := &nodeDisk{w: w, id: id, engine: engine, faults: newSimDisk(w.Seed.Child("disk-" + string(id))),
		rot: newSnapRot(w.Seed.Child("rot-" + string(id)))}
	switch engine {
	case EnginePebble:
		d.fs = vfs.NewCrashableMem()
		d.faults.failStop = func() bool { return w.failStop(id) }
	case EngineBbolt, EngineCustom:
		d.dir = d.dirOf(d.generation)
		d.snapFS = vfs.NewCrashableMem()
		d.pages, d.current = powerloss.NewRecorder(), &atomic.Bool{}
		d.current.Store(true)
	default:
		panic("scenarios: unknown engine " + engine)
	}
	return d
}

func (d *nodeDisk) dirOf(generation int) string {
	return filepath.Join(d.w.tempDir, fmt.Sprintf("%s-%d", d.id, generation))
}

// storage is the state the node's next start opens. A Pebble node's is its
// crashable memory FS, under the disk fault injector, under the planted
// bug's wrapper if any; a bbolt or custom node's is its current directory
// and its snapshot FS under the disk fault injector. bbolt nodes sync
// (through the recorder, which makes no system call), so that a power loss
// has durable state to fall back to: with NoSync nothing would ever be
// durable, and a power loss could take the node's vote and acknowledged
// entries with it, which no real deployment allows. Custom nodes keep
// NoSync: their engine's files are not seen by the recorder, so they take
// process crashes only.
func (d *nodeDisk) storage() cluster.Storage {
	switch d.engine {
	case EnginePebble:
		fs := d.underFaults(d.fs)
		if m := d.w.mutation; m != nil && m.FS != nil {
			fs = m.FS(fs)
		}
		return cluster.PebbleStorage{FS: fs, EngineNoSync: d.unsyncedEngine(), InstallFileSize: simInstallFileSize}
	case EngineCustom:
		return cluster.CustomStorage{Dir: d.dir, OpenEngine: d.w.newEngine, NoSync: true, SnapshotFS: d.snapshotFS()}
	default:
		var hook bolt.FileHook = d.pages
		if m := d.w.mutation; m != nil && m.BoltFile != nil {
			hook = m.BoltFile(hook)
		}
		hook = syncTap{FileHook: hook, w: d.w, id: d.id, current: d.current}
		return cluster.BoltStorage{Dir: d.dir, StagingTxBytes: simStagingTxBytes, SnapshotFS: d.snapshotFS(), FileHook: hook, ArrayFreelist: true}
	}
}

// unsyncedEngine reports whether the node's engine acknowledges writes
// before they are durable. A Pebble node's engine runs unsynced, as a state
// machine beside a synced raft log usually does (the log is what makes an
// entry durable): a crash may take the engine back, raft replays its log,
// and a zero-copy store's durability barrier is what keeps the compacted
// part of the log covered. Runs compared across engines
// (Options.CommonFaults) sync it, because a bbolt node loses nothing at a
// process crash.
func (d *nodeDisk) unsyncedEngine() bool { return d.engine == EnginePebble && !d.w.commonFaults }

// snapshotFS is a bbolt or custom node's snapshot filesystem under its
// disk faults, under the planted bug's wrapper if any.
func (d *nodeDisk) snapshotFS() vfs.FS {
	fs := d.underFaults(d.snapFS)
	if m := d.w.mutation; m != nil && m.SnapshotFS != nil {
		fs = m.SnapshotFS(fs)
	}
	return fs
}

// underFaults puts a memory filesystem of the node under its disk faults:
// rot at rest below, I/O errors above.
func (d *nodeDisk) underFaults(fs *vfs.MemFS) vfs.FS {
	return snapshotReads(errorfs.Wrap(d.rot.wrap(fs), d.faults), d.faults)
}

// crash replaces the disk with what a crash at this instant leaves of it,
// drawing from crashSeed, and returns how to trace it. A Pebble node keeps
// its synced state and, with powerLoss, each block of unsynced data with
// probability keepPercent (powerLossClone), all of it otherwise. A bbolt or
// custom node keeps a copy of its directory (a killed process keeps every
// committed write) and its snapshots. Either way its disk faults end.
func (d *nodeDisk) crash(powerLoss bool, keepPercent int, crashSeed sim.Seed) (detail string, err error) {
	detail = "process"
	switch d.engine {
	case EnginePebble:
		keep := 100
		if powerLoss {
			keep = min(max(keepPercent, 0), 100)
			detail = fmt.Sprintf("power-loss unsynced-kept=%d%%", keep)
		}
		fs, err := powerLossClone(d.fs, keep, crashSeed)
		if err != nil {
			return "", err
		}
		d.fs = fs
	case EngineBbolt, EngineCustom:
		d.generation++
		dir := d.dirOf(d.generation)
		if err := cluster.CopyDir(d.dir, dir); err != nil {
			return "", err
		}
		keep := 100
		if powerLoss && d.takesPowerLoss() {
			keep = min(max(keepPercent, 0), 100)
			st, err := d.pages.Apply(d.dir, dir, func(rel string, rank int) powerloss.Fate {
				return pageFate(crashSeed.Child(rel), rank, keep)
			})
			if err != nil {
				return "", err
			}
			detail = fmt.Sprintf("power-loss unsynced-kept=%d%% %s", keep, st)
		}
		d.current.Store(false)
		d.dir, d.pages, d.current = dir, powerloss.NewRecorder(), &atomic.Bool{}
		d.current.Store(true)
		if d.snapFS, err = powerLossClone(d.snapFS, keep, crashSeed); err != nil {
			return "", err
		}
	}
	// A disk fault ends with the instance that met it.
	d.faults.setErrorProbability(0)
	d.faults.setSyncDelay(0, 0)
	d.rot.on.Store(false)
	return detail, nil
}

// takesPowerLoss reports whether a power loss of node id drops its unsynced
// writes; otherwise the node gets a process crash instead.
func (w *World) takesPowerLoss(id raft.ServerID) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.commonFaults && w.nodes[id].disk.takesPowerLoss()
}

func (w *World) engineOf(id raft.ServerID) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.nodes[id].engine
}

// rotOf returns the corruption at rest of node id's snapshot store.
func (w *World) rotOf(id raft.ServerID) *snapRot {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.nodes[id].disk.rot
}

// disk returns the disk fault injector of node id.
func (w *World) disk(id raft.ServerID) *simDisk {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.nodes[id].disk.injector()
}

// powerCut is a power loss waiting for a bbolt node's next sync.
type powerCut struct {
	keepPercent int
	down        time.Duration
	// syncs counts down the syncs to let through first.
	syncs int
}

// armPowerCut makes a power loss strike bbolt node id at its next sync of
// a bbolt file, before the sync takes effect, keeping each unsynced page
// with probability keepPercent; the node restarts after down. A power
// loss at any other instant would find nothing unsynced: bbolt syncs
// before every commit returns, and a crash instant is one at which the
// rest of the run is blocked (see sim.Quiescer), so never inside a commit.
// At a sync the pages of the commit in progress are unsynced: its data
// pages at the first, its meta page at the second; which of the node's
// next two syncs it strikes at is hashed from (seed, node, incarnation).
func (w *World) armPowerCut(id raft.ServerID, keepPercent int, down time.Duration) {
	w.mu.Lock()
	inc := w.nodes[id].incarnation
	skip := int(w.Seed.Child(fmt.Sprintf("power-cut/%s/%d", id, inc)).Hash(0) % 2)
	w.nodes[id].disk.cut = &powerCut{keepPercent: keepPercent, down: down, syncs: skip}
	w.mu.Unlock()
	w.Trace.Record(string(id), "power-loss-armed", fmt.Sprintf("at sync %d from now, unsynced-kept=%d%% down=%v", skip+1, keepPercent, down))
}

// disarmPowerCut disarms a power loss armed on id that has not struck.
func (w *World) disarmPowerCut(id raft.ServerID) {
	w.mu.Lock()
	d := w.nodes[id].disk
	armed := d.cut != nil
	d.cut = nil
	w.mu.Unlock()
	if armed {
		w.Trace.Record(string(id), "power-loss-unfired", "no sync before it healed")
	}
}

// firePowerCut strikes the power loss armed on id, if any, from inside
// its sync of file. It runs inside bbolt's commit, which holds bbolt's
// locks, so it must not wait for the rest of the bubble (crashNow's
// quiesce): the store call it runs in has waited already.
func (w *World) firePowerCut(id raft.ServerID, file string) bool {
	var cut powerCut
	claim := func(s *slot) bool {
		if s.disk.cut == nil {
			return false
		}
		if s.disk.cut.syncs > 0 {
			s.disk.cut.syncs--
			return false
		}
		cut, s.disk.cut = *s.disk.cut, nil
		return true
	}
	note := func() { w.Trace.Record(string(id), "power-loss-strikes", "at a sync of "+file) }
	crash := func() (bool, int) { return true, cut.keepPercent }
	down := func() time.Duration { return cut.down }
	return w.crashInBackground(id, w.incarnationOf(id), claim, note, crash, down, false)
}

// syncTap strikes an armed power cut when bbolt syncs a file of the
// node's current directory.
type syncTap struct {
	bolt.FileHook
	w       *World
	id      raft.ServerID
	current *atomic.Bool
}

func (t syncTap) Sync(f *os.File) error {
	if t.current.Load() && t.w.powerCutArmed(t.id) {
		t.w.firePowerCut(t.id, filepath.Base(f.Name()))
	}
	return t.FileHook.Sync(f)
}

func (w *World) powerCutArmed(id raft.ServerID) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.nodes[id].disk.cut != nil
}

// takesPowerLoss reports whether a power loss drops the node's unsynced
// writes; otherwise it gets a process crash instead.
func (d *nodeDisk) takesPowerLoss() bool { return d.engine == EnginePebble || d.engine == EngineBbolt }

// pageFate decides what a power loss does to an unsynced page of a bbolt
// file, hashed from (seed, rank) with seed a child of the crash's seed for
// the file and rank the page's place in the order of writes since the last
// sync (see powerloss.Recorder.Apply): kept with probability keepPercent,
// otherwise torn one time in four (the first 1-7 of its 512-byte sectors
// new, the rest old) and lost the other three.
func pageFate(seed sim.Seed, rank int, keepPercent int) powerloss.Fate {
	h := seed.Hash(uint64(rank))
	switch {
	case h%100 < uint64(keepPercent):
		return powerloss.Kept
	case (h>>32)%4 == 0:
		return powerloss.Fate{Sectors: 1 + int((h>>40)%(powerloss.PageSize/powerloss.SectorSize-1))}
	}
	return powerloss.Lost
}

// injector is the disk fault injector of the node.
func (d *nodeDisk) injector() *simDisk { return d.faults }
