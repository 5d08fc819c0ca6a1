package canaries

import (
	"io"

	"github.com/hashicorp/raft"

	"github.com/raftsnap/testbed/snapshot"
)

// receiveOnlyGuard checks a snapshot stream once, when the store keeps it
// (snapshot.VerifyingStore's sink), and trusts a stored snapshot from then
// on: Open and List go straight to the store underneath, as a guard that
// assumes "verified once, intact for ever" does. A snapshot that rots on
// disk after it was kept stays listed as the newest, and the node goes on
// serving it (to be sent, or restored) instead of refusing it and taking a
// fresh one.
type receiveOnlyGuard struct {
	raft.SnapshotStore // the verifying store, for Create
	stored             raft.SnapshotStore
}

func newReceiveOnlyGuard(s raft.SnapshotStore) raft.SnapshotStore {
	return receiveOnlyGuard{SnapshotStore: snapshot.VerifyingStore(s), stored: s}
}

func (g receiveOnlyGuard) List() ([]*raft.SnapshotMeta, error) { return g.stored.List() }

func (g receiveOnlyGuard) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	return g.stored.Open(id)
}
