package scenarios

import (
	"fmt"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/hashicorp/raft"

	"github.com/raftsnap/testbed/cluster"
	"github.com/raftsnap/testbed/sim"
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
	// node's fs, a bbolt or custom node's snapFS.
	faults *simDisk
	// dir and generation name a bbolt or custom node's current directory
	// (a crash copies it to the next generation), and snapFS holds its
	// snapshots (in memory, see cluster.BoltStorage.SnapshotFS).
	dir        string
	generation int
	snapFS     *vfs.MemFS
}

// newNodeDisk creates the empty disk of node id running engine.
func (w *World) newNodeDisk(id raft.ServerID, engine string) *nodeDisk {
	d := &nodeDisk{w: w, id: id, engine: engine, faults: newSimDisk(w.Seed.Child("disk-" + string(id)))}
	switch engine {
	case EnginePebble:
		d.fs = vfs.NewCrashableMem()
		d.faults.failStop = func() bool { return w.failStop(id) }
	case EngineBbolt, EngineCustom:
		d.dir = d.dirOf(d.generation)
		d.snapFS = vfs.NewCrashableMem()
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
// and its snapshot FS under the disk fault injector.
func (d *nodeDisk) storage() cluster.Storage {
	switch d.engine {
	case EnginePebble:
		fs := d.underFaults(d.fs)
		if m := d.w.mutation; m != nil && m.FS != nil {
			fs = m.FS(fs)
		}
		return cluster.PebbleStorage{FS: fs, InstallFileSize: simInstallFileSize}
	case EngineCustom:
		return cluster.CustomStorage{Dir: d.dir, OpenEngine: d.w.newEngine, NoSync: true, SnapshotFS: d.underFaults(d.snapFS)}
	default:
		return cluster.BoltStorage{Dir: d.dir, NoSync: true, StagingTxBytes: simStagingTxBytes, SnapshotFS: d.underFaults(d.snapFS)}
	}
}

// underFaults puts a memory filesystem of the node under its disk faults.
func (d *nodeDisk) underFaults(fs *vfs.MemFS) vfs.FS {
	return snapshotReads(errorfs.Wrap(fs, d.faults), d.faults)
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
		d.dir = dir
		if d.snapFS, err = powerLossClone(d.snapFS, 100, crashSeed); err != nil {
			return "", err
		}
	}
	// A disk fault ends with the instance that met it.
	d.faults.setErrorProbability(0)
	d.faults.setSyncDelay(0, 0)
	return detail, nil
}

// takesPowerLoss reports whether a power loss of node id drops its unsynced
// writes; otherwise the node gets a process crash instead.
func (w *World) takesPowerLoss(id raft.ServerID) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.commonFaults && w.nodes[id].disk.takesPowerLoss()
}

// disk returns the disk fault injector of node id.
func (w *World) disk(id raft.ServerID) *simDisk {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.nodes[id].disk.injector()
}

// takesPowerLoss reports whether a power loss drops the node's unsynced
// writes; otherwise it gets a process crash instead.
func (d *nodeDisk) takesPowerLoss() bool { return d.engine == EnginePebble }

// injector is the disk fault injector of the node.
func (d *nodeDisk) injector() *simDisk { return d.faults }
