package cluster

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/raftsnap/testbed/engines"
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
	// GuardSnapshots wraps the store of snapshot streams (Stores.Snapshots:
	// every snapshot of a copying store, the received ones of a zero-copy
	// store); nil means snapshot.NewVerifyingStore, which refuses to keep a
	// damaged stream or to hand out a stored one that has since rotted, and
	// then has the node take a fresh snapshot.
	GuardSnapshots func(raft.SnapshotStore) raft.SnapshotStore
	// SnapshotStore is the kind of snapshot store (StoreKinds); "" means
	// StoreZeroCopy. StoreCheckpoint on an engine that is not an
	// engines.Checkpointer (or a storage without Stores.CheckpointFS) falls
	// back to StoreZeroCopy, and an engine that is not an engines.Syncer
	// gets StoreCopy (Node.SnapshotStore says which).
	SnapshotStore string
	// WrapSnapshots, if set, wraps the snapshot store exactly as raft sees
	// it, outermost (for tracing, fault injection and crash taps).
	WrapSnapshots func(raft.SnapshotStore) raft.SnapshotStore
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
	// RestoredFromCheckpoint reports whether start-up restored the engine
	// from its newest local checkpoint (a checkpoint store), because the
	// engine was behind it.
	RestoredFromCheckpoint bool
	// SnapshotStore is the kind of snapshot store the node runs.
	SnapshotStore string

	futures futures
	// refresh takes a fresh snapshot after the store refused a stored one.
	refresh snapshotRefresh
}

// StartNode opens the node's storage and starts raft on it. The engine is
// persistent, so raft runs with NoSnapshotRestoreOnStart: it does not
// reinstall its newest snapshot at every start, and the state machine skips
// the log entries it already applied. RecoverFromSnapshots first covers the
// one case where the engine is behind the newest stored snapshot.
func StartNode(cfg NodeConfig) (*Node, error) {
	kind := cfg.SnapshotStore
	if kind == "" {
		kind = StoreZeroCopy
	}
	if !slices.Contains(StoreKinds(), kind) {
		return nil, fmt.Errorf("%w %q (have %v)", ErrUnknownStore, kind, StoreKinds())
	}
	stores, err := cfg.Storage.Open()
	if err != nil {
		return nil, fmt.Errorf("cluster: opening storage of %s: %w", cfg.ID, err)
	}
	// The capabilities are the engine's own; wrappers forward them
	// whether or not the engine has them (engines.Sync, engines.Checkpoint).
	if _, canCheckpoint := stores.Engine.(engines.Checkpointer); kind == StoreCheckpoint && (!canCheckpoint || stores.CheckpointFS == nil) {
		kind = StoreZeroCopy
	}
	if _, canSync := stores.Engine.(engines.Syncer); !canSync {
		kind = StoreCopy
	}
	if cfg.Wrap != nil {
		cfg.Wrap(stores)
	}
	fsm, err := NewFSM(stores.Engine, cfg.Hooks)
	if err != nil {
		return nil, errors.Join(err, stores.Close())
	}
	n := &Node{ID: cfg.ID, FSM: fsm, Stores: stores}
	guard := cfg.GuardSnapshots
	if guard == nil {
		guard = func(s raft.SnapshotStore) raft.SnapshotStore {
			return snapshot.NewVerifyingStore(s, func(string, error) { n.refresh.ask() })
		}
	}
	streams := raftPositionStore{guard(stores.Snapshots)}
	var snaps raft.SnapshotStore = streams
	restored := false
	switch kind {
	case StoreCheckpoint:
		cp, ok := stores.Engine.(engines.Checkpointer)
		if !ok {
			return nil, errors.Join(fmt.Errorf("cluster: %s: a wrapper around the engine hides its checkpoints: %w", cfg.ID, engines.ErrNoCheckpoint), stores.Close())
		}
		cs, err := OpenCheckpointStore(fsm, cp, stores.CheckpointFS, stores.CheckpointDir, streams, n.refresh.ask)
		if err != nil {
			return nil, errors.Join(err, stores.Close())
		}
		// A local checkpoint ahead of the engine (which lost writes the
		// checkpoint holds) is restored before anything else.
		if _, restored, err = cs.RestoreLocal(); err != nil {
			return nil, errors.Join(err, stores.Close())
		}
		fsm.UseLocalSnapshots(cs)
		snaps = cs
	case StoreZeroCopy:
		syncer, ok := stores.Engine.(engines.Syncer)
		if !ok {
			return nil, errors.Join(fmt.Errorf("cluster: %s: a wrapper around the engine hides its Sync: %w", cfg.ID, engines.ErrNoSync), stores.Close())
		}
		zc := NewZeroCopyStore(fsm, syncer, streams)
		fsm.UseLocalSnapshots(zc)
		snaps = zc
	}
	if cfg.WrapSnapshots != nil {
		snaps = cfg.WrapSnapshots(snaps)
	}
	// Only a stored stream can be ahead of the engine: a local snapshot of
	// a zero-copy store is the engine's own, durable state.
	recovered, err := RecoverFromSnapshots(fsm, streams)
	if err != nil {
		return nil, errors.Join(err, stores.Close())
	}
	if err := checkLogCoversEngine(snaps, stores.Logs); err != nil {
		return nil, errors.Join(fmt.Errorf("cluster: starting %s: %w", cfg.ID, err), stores.Close())
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
	n.Raft, n.RecoveredFromSnapshot, n.RestoredFromCheckpoint, n.SnapshotStore = r, recovered, restored, kind
	n.refresh.start(r)
	return n, nil
}

// snapshotRefresh has raft take a fresh snapshot when the store refused a
// stored one, on a goroutine of its own (the refusal comes from inside
// raft's replication or restore), one at a time; Shutdown waits for it.
type snapshotRefresh struct {
	mu      sync.Mutex
	raft    *raft.Raft
	pending bool // asked for before raft started, or while one runs
	running bool
	wg      sync.WaitGroup
}

func (s *snapshotRefresh) ask() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = true
	s.run()
}

func (s *snapshotRefresh) start(r *raft.Raft) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.raft = r
	s.run()
}

// run starts a snapshot if one is pending and none runs; s.mu is held.
func (s *snapshotRefresh) run() {
	if s.raft == nil || s.running || !s.pending {
		return
	}
	s.pending, s.running = false, true
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.raft.Snapshot().Error() // if it fails, the next refusal asks again
		s.mu.Lock()
		s.running = false
		s.mu.Unlock()
	}()
}

// ErrStateLost is returned by StartNode for a node whose state machine and
// snapshots end below the first entry of its log: the entries in between
// were compacted against state the node no longer has (an engine that lost
// writes its durability barrier should have kept, or a disk that dropped
// fsyncs). raft would start from its newest snapshot, look for the entries
// after it, and panic.
var ErrStateLost = errors.New("cluster: the log was compacted past the node's state")

// checkLogCoversEngine returns ErrStateLost if raft, starting from the
// newest snapshot snaps lists, would need log entries its log no longer
// holds.
func checkLogCoversEngine(snaps raft.SnapshotStore, logs raft.LogStore) error {
	last, err := logs.LastIndex()
	if err != nil {
		return err
	}
	first, err := logs.FirstIndex()
	if err != nil {
		return err
	}
	var from uint64
	metas, err := snaps.List()
	if err != nil {
		return err
	}
	if len(metas) > 0 {
		from = metas[0].Index
	}
	if last > from && first > from+1 {
		return fmt.Errorf("%w: the newest snapshot (or the engine) is at index %d, the log begins at %d: entries %d..%d are gone",
			ErrStateLost, from, first, from+1, first-1)
	}
	return nil
}

// Shutdown stops raft, answers the futures it left unanswered (see
// ErrFutureLeaked; Leaked counts them) and then closes the stores. raft's
// Shutdown waits for all its goroutines only the first time it is called,
// so a node must not run with raft.Config.ShutdownOnRemove, which makes raft
// call it on its own.
func (n *Node) Shutdown() error {
	err := n.Raft.Shutdown().Error()
	n.refresh.wg.Wait()
	n.futures.releaseAll()
	return errors.Join(err, n.Stores.Close())
}

// Failed returns the engine error that stopped the node's state machine,
// if any: the node can no longer apply entries and must be restarted.
func (n *Node) Failed() error { return n.FSM.Failed() }
