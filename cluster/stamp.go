package cluster

import (
	"fmt"
	"io"

	"github.com/hashicorp/raft"

	"github.com/raftsnap/testbed/snapshot"
)

// raftPositionStore hands out every stored snapshot stream stamped with the
// position raft gave it (snapshot.Restamp): its metadata's index, term and
// configuration replace the ones the stream was written with, so the state
// machine, which learns its position only from the stream, records raft's.
//
// Raft's own snapshots agree with their streams but for entries the state
// machine never sees (no-ops, barriers), so stamping them changes no state.
// A user restore (Raft.Restore) is why it exists: raft copies the backup
// into the store under a new index above its whole log and restores the
// state machine from it, but the backup's stream still carries the backup's
// own, older position, and FSM.Restore keeps its newer state over a
// snapshot at or below what it applied (the guard against raft re-sending
// an older snapshot). Stamped, the restore installs at raft's new index; an
// InstallSnapshot of the restored state to a follower does too (a copying
// store's leader sends the stored file); and because the engine's install
// records the position in the same atomic step as the contents, a crash
// mid-restore leaves the engine at its old position with its old contents,
// and RecoverFromSnapshots installs the stamped snapshot at the next start.
type raftPositionStore struct{ raft.SnapshotStore }

func (s raftPositionStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	meta, rc, err := s.SnapshotStore.Open(id)
	if err != nil {
		return nil, nil, err
	}
	h := snapshot.Header{Index: meta.Index, Term: meta.Term, Config: raft.EncodeConfiguration(meta.Configuration)}
	out, size, err := snapshot.Restamp(rc, meta.Size, h)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: reading the header of snapshot %s: %w", id, err)
	}
	m := *meta
	m.Size = size
	return &m, out, nil
}
