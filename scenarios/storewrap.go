package scenarios

import (
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/raftsnap/testbed/cluster"
	"github.com/raftsnap/testbed/sim"
)

// Mutation plants a bug into a run, for the canaries that prove the
// checkers catch bugs: wrappers around a node's stores, its filesystem and
// the workload's clients. The planted code lives in the wrappers (package
// canaries), never in production paths. Nil fields change nothing.
type Mutation struct {
	Name string
	// Stores may wrap a node's opened stores (engine, log, snapshots).
	Stores func(id raft.ServerID, st *cluster.Stores)
	// GuardSnapshots replaces the guard around the snapshot store
	// (snapshot.VerifyingStore).
	GuardSnapshots func(raft.SnapshotStore) raft.SnapshotStore
	// FS wraps a Pebble node's filesystem.
	FS func(vfs.FS) vfs.FS
	// SnapshotFS wraps a bbolt or custom node's snapshot filesystem, above
	// its disk faults.
	SnapshotFS func(vfs.FS) vfs.FS
	// BoltFile wraps what performs a bbolt node's writes to and syncs of
	// its bbolt files (the power-loss recorder).
	BoltFile func(bolt.FileHook) bolt.FileHook
	// Client wraps each workload client.
	Client func(c *cluster.Client, w *World) Doer
	// Transport wraps a node's network endpoint.
	Transport func(*sim.Transport) raft.Transport
	// ReloadConfig replaces the operator's Raft.ReloadConfig call (a
	// wrapper an operator tool puts around it).
	ReloadConfig func(r *raft.Raft, rc raft.ReloadableConfig) error
	// LeadershipTransfer replaces the operator's Raft.LeadershipTransfer
	// call.
	LeadershipTransfer func(r *raft.Raft) raft.Future
}

// wrapStores wraps the stores that instance inc of node id opened,
// innermost first: the planted bug if any, the crash taps when they are
// on, and the Quiescer's waits (outermost, so that no wrapper's lock is
// held while waiting).
func (w *World) wrapStores(id raft.ServerID, inc int, st *cluster.Stores) {
	if w.mutation != nil && w.mutation.Stores != nil {
		w.mutation.Stores(id, st)
	}
	if w.crashTaps {
		st.Engine = &tapEngine{Engine: st.Engine, w: w, id: id, inc: inc}
	}
	quietStores(w.quiet, st)
}

// snapshotGuard returns the guard around a node's snapshot store: the
// planted bug's, or nil for the node's own (see cluster.NodeConfig).
func (w *World) snapshotGuard() func(raft.SnapshotStore) raft.SnapshotStore {
	if w.mutation != nil {
		return w.mutation.GuardSnapshots
	}
	return nil
}
