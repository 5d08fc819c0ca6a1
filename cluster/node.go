package cluster

import (
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/raftsnap/testbed/snapshot"
)

// NodeConfig describes one node.
type NodeConfig struct {
	ID        raft.ServerID
	Storage   Storage
	Transport raft.Transport
	// Raft is the template for raft's configuration (timeouts, snapshot
	// thresholds). The node sets LocalID, Logger and
	// NoSnapshotRestoreOnStart itself.
	Raft raft.Config
	// Logger receives raft's log; nil silences it.
	Logger hclog.Logger
	// Hooks observe the state machine's snapshot path.
	Hooks FSMHooks
	// Wrap, if set, may replace any of the opened stores with a wrapper
	// (for tracing, fault injection or planted bugs) before raft sees them.
	Wrap func(*Stores)
	// GuardSnapshots wraps the snapshot store raft uses; nil means
	// snapshot.VerifyingStore, which refuses to keep a damaged stream.
	GuardSnapshots func(raft.SnapshotStore) raft.SnapshotStore
}

// Node is one running raft server over its stores.
type Node struct {
	ID     raft.ServerID
	Raft   *raft.Raft
	FSM    *FSM
	Stores *Stores
	// RecoveredFromSnapshot reports whether start-up installed the newest
	// stored snapshot because the engine was behind it.
	RecoveredFromSnapshot bool

	futures futures
}

// StartNode opens the node's storage and starts raft on it. The engine is
// persistent, so raft runs with NoSnapshotRestoreOnStart: it does not
// reinstall its newest snapshot at every start, and the state machine skips
// the log entries it already applied. RecoverFromSnapshots first covers the
// one case where the engine is behind the newest stored snapshot.
func StartNode(cfg NodeConfig) (*Node, error) {
	stores, err := cfg.Storage.Open()
	if err != nil {
		return nil, fmt.Errorf("cluster: opening storage of %s: %w", cfg.ID, err)
	}
	if cfg.Wrap != nil {
		cfg.Wrap(stores)
	}
	fsm, err := NewFSM(stores.Engine, cfg.Hooks)
	if err != nil {
		return nil, errors.Join(err, stores.Close())
	}
	guard := cfg.GuardSnapshots
	if guard == nil {
		guard = snapshot.VerifyingStore
	}
	snaps := guard(stores.Snapshots)
	recovered, err := RecoverFromSnapshots(fsm, snaps)
	if err != nil {
		return nil, errors.Join(err, stores.Close())
	}
	conf := cfg.Raft
	conf.LocalID = cfg.ID
	conf.NoSnapshotRestoreOnStart = true
	conf.Logger = cfg.Logger
	if conf.Logger == nil {
		conf.Logger = hclog.New(&hclog.LoggerOptions{Output: io.Discard, Level: hclog.Off})
	}
	r, err := raft.NewRaft(&conf, fsm, stores.Logs, stores.Stable, snaps, cfg.Transport)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("cluster: starting raft on %s: %w", cfg.ID, err), stores.Close())
	}
	return &Node{ID: cfg.ID, Raft: r, FSM: fsm, Stores: stores, RecoveredFromSnapshot: recovered}, nil
}

// Shutdown stops raft, answers the futures it left unanswered (see
// ErrFutureLeaked; Leaked counts them) and then closes the stores. raft's
// Shutdown waits for all its goroutines only the first time it is called,
// so a node must not run with raft.Config.ShutdownOnRemove, which makes raft
// call it on its own.
func (n *Node) Shutdown() error {
	err := n.Raft.Shutdown().Error()
	n.futures.releaseAll()
	return errors.Join(err, n.Stores.Close())
}

// Failed returns the engine error that stopped the node's state machine,
// if any: the node can no longer apply entries and must be restarted.
func (n *Node) Failed() error { return n.FSM.Failed() }
