package scenarios

import (
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/raftsnap/testbed/cluster"
)

// engineWALNoSync drops the fsyncs of a Pebble node's engine WAL, as a disk
// that loses the engine's synced writes at a power loss would: the engine
// then restarts below its newest checkpoint, the one case a checkpoint
// store's local restore exists for, which no correct fault produces (the
// checkpoint syncs the engine's WAL).
type engineWALNoSync struct{ vfs.FS }

func (fs engineWALNoSync) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return walNoSync(name, f, err)
}

func (fs engineWALNoSync) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return walNoSync(newname, f, err)
}

func walNoSync(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasPrefix(name, cluster.PebbleEngineDir+"/") || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return unsyncedFile{f}, nil
}

type unsyncedFile struct{ vfs.File }

func (unsyncedFile) Sync() error                { return nil }
func (unsyncedFile) SyncData() error            { return nil }
func (unsyncedFile) SyncTo(int64) (bool, error) { return false, nil }

// A checkpoint store restores, at start, an engine that came back below
// its newest checkpoint, and the run passes every check: restarts at or
// above what the node made durable, the restored state equal to the replay
// of the log, convergence. The same disk fails the zero-copy store, whose
// only record is the engine.
func TestCheckpointStoreRestoresAnEngineThatLostSyncedWrites(t *testing.T) {
	run := func(seed uint64, store string) Report {
		rep, err := Run(t, Options{Seed: seed, Scenario: "snapshot-crash", Engine: EnginePebble, SnapshotStore: store,
			Mutation: &Mutation{Name: "engine-wal-fsync-dropped", FS: func(fs vfs.FS) vfs.FS { return engineWALNoSync{fs} }}})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	restores := 0
	var restoredSeeds []uint64
	for seed := uint64(1); seed <= 12 && restores < 2; seed++ {
		rep := run(seed, cluster.StoreCheckpoint)
		if !rep.OK && rep.Known == "" {
			t.Fatalf("seed %d: %v", seed, rep.Violations)
		}
		if rep.CheckpointRestores > 0 {
			t.Logf("seed %d: %d engines restored from a checkpoint", seed, rep.CheckpointRestores)
			restoredSeeds = append(restoredSeeds, seed)
		}
		restores += rep.CheckpointRestores
	}
	if restores == 0 {
		t.Fatal("no engine was restored from a checkpoint: the test no longer reaches local restore")
	}
	for _, seed := range restoredSeeds {
		if rep := run(seed, cluster.StoreZeroCopy); rep.OK {
			t.Errorf("seed %d passes on the zero-copy store too: the lost engine writes did not matter", seed)
		}
	}
}
