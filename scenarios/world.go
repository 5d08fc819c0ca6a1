package scenarios

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftsnap/testbed/checkers"
	"github.com/raftsnap/testbed/cluster"
	"github.com/raftsnap/testbed/engines"
	"github.com/raftsnap/testbed/sim"
	"github.com/raftsnap/testbed/snapshot"
)

// Engine kinds a node can run.
const (
	EngineBbolt  = "bbolt"
	EnginePebble = "pebble"
	EngineMixed  = "mixed"
	// EngineCustom runs the engine of Options.NewEngine (see
	// cluster.CustomStorage).
	EngineCustom = "custom"
	// EngineMixedCustom runs Pebble on even nodes and the custom engine on
	// odd ones.
	EngineMixedCustom = "mixed-custom"
)

// Sizes that make the simulator's small snapshots install in several
// pieces, so that a crash in the middle of an install finds some of them
// already written: bbolt staging transactions and Pebble staged sstables.
const (
	simStagingTxBytes  = 1 << 10
	simInstallFileSize = 4 << 10
)

// World is one simulated run: the network, the nodes (which can crash,
// lose power, pause and restart), the client history and the trace. Every
// method must be called inside the run's synctest bubble.
type World struct {
	Seed    sim.Seed
	Trace   *sim.Trace
	Net     *sim.Network
	History *cluster.History

	raftConfig raft.Config
	tempDir    string
	// inmem, when set, connects nodes with raft's own InmemTransport
	// instead of the simulated network: the baseline that shows what the
	// simulator itself costs.
	inmem map[raft.ServerID]*raft.InmemTransport
	ids   []raft.ServerID // every node ever created, in creation order

	// mu guards nodes and the counters below; it is never held across a
	// wait (DESIGN.md rule 6).
	mu    sync.Mutex
	nodes map[raft.ServerID]*slot
	stats Counters
	// healed is set when the liveness phase starts: from then on no fault
	// excuses a snapshot being sent again.
	healed bool
	// log records applies, installs and starts for the invariants.
	log checkers.RunLog
	// restoring is the user restore under way (operator.restore), whose
	// install on its node is recorded as a reset of the committed state;
	// restores are the user restores made, for the client history.
	restoring []pendingRestore
	restores  []checkers.UserRestore
	start     time.Time
	// mutation is the planted bug of a canary run, nil for a clean run.
	mutation *Mutation
	// commonFaults: see Options.CommonFaults.
	commonFaults bool
	// newEngine opens the engine of EngineCustom nodes.
	newEngine func(dir string) (engines.Engine, error)
	// crashTaps, set before any node starts, wraps every node's engine
	// and snapshot store in the crash taps (crashtap.go).
	crashTaps bool
	// background tracks the goroutines that stop and restart nodes
	// crashed by a tap; healed closes when the liveness phase starts,
	// telling them to leave restarting to it.
	background sync.WaitGroup
	healedCh   chan struct{}
	healOnce   sync.Once
	// snapshotStore is Options.SnapshotStore.
	snapshotStore string
	// quiet makes real disk I/O wait for the rest of the bubble to block
	// (sim.Quiescer): bbolt nodes write real files.
	quiet *sim.Quiescer
}

// Doer is what the workload calls: a cluster.Client or a wrapper around
// one.
type Doer interface {
	Do(cmd cluster.Command, mode cluster.ReadMode) cluster.Call
}

// Counters are what a run reports about the snapshot path and faults.
type Counters struct {
	SnapshotsBuilt     int            `json:"snapshots_built"`
	SnapshotsInstalled int            `json:"snapshots_installed"`
	SnapshotsRefused   int            `json:"snapshots_refused"`
	CheckpointRestores int            `json:"checkpoint_restores,omitempty"`
	SnapshotsKept      int            `json:"snapshots_kept"`
	Faults             map[string]int `json:"faults"`
	Crashes            int            `json:"crashes"`
	Restarts           int            `json:"restarts"`
	// LeakedFutures counts the futures raft left unanswered when a node
	// shut down (cluster.ErrFutureLeaked), a known upstream bug.
	LeakedFutures int `json:"leaked_futures,omitempty"`
}

// slot is one node across its restarts.
type slot struct {
	id     raft.ServerID
	engine string
	// store is the node's snapshot store kind (cluster.StoreKinds).
	store string
	// live is the engine of the instance being started or running.
	live engines.Engine
	// node is the running instance, nil while the node is down.
	node *cluster.Node
	// storage is the state the next start opens.
	storage cluster.Storage
	// disk is what the node keeps across restarts (nodedisk.go).
	disk    *nodeDisk
	removed bool
	// removing is set when a removal was asked for but its outcome is not
	// known (the leader lost leadership while committing it); joining,
	// likewise for an addition that did not succeed, with joinAsVoter
	// saying which kind.
	removing, joining, joinAsVoter bool
	// incarnation counts the instances of the node: it grows at every
	// start, crash and removal, so a hook or tap of an instance that has
	// since crashed can tell that it no longer speaks for the node.
	incarnation int
	// starting is set while Start opens the node, so that two restarts
	// (the nemesis's and a crash tap's) never open the same state twice.
	starting bool
	// tap is the crash tap armed on the node, nil when none is.
	tap *CrashTap
	// installs counts the snapshot installs at each index during the
	// liveness phase, for livelock detection.
	installs map[uint64]int
}

// rpcTimeout bounds every RPC but InstallSnapshot. It stays below raft's
// 500 ms leader lease: with a longer one, a leader that steps down while a
// replication goroutine waits on an RPC leaves two channels ready in raft's
// replicate loop, Go picks one at random, and runs stop replaying (see
// sim's determinism tests).
const rpcTimeout = 250 * time.Millisecond

// NewWorld creates the world for seed; tempDir holds the bbolt nodes'
// directories.
func NewWorld(seed sim.Seed, tempDir string, rc raft.Config, link sim.LinkOptions) *World {
	trace := sim.NewTrace(sim.TraceOptions{})
	w := &World{
		Seed:       seed,
		Trace:      trace,
		Net:        sim.NewNetwork(seed.Child("network"), trace, sim.NetworkOptions{Link: link, RPCTimeout: rpcTimeout}),
		History:    cluster.NewHistory(),
		raftConfig: rc,
		tempDir:    tempDir,
		nodes:      map[raft.ServerID]*slot{},
		stats:      Counters{Faults: map[string]int{}},
		start:      time.Now(),
		healedCh:   make(chan struct{}),
		quiet:      sim.NewQuiescer(),
	}
	return w
}

// SetEngineFactory gives the engine of EngineCustom nodes; call it before
// adding any.
func (w *World) SetEngineFactory(open func(dir string) (engines.Engine, error)) { w.newEngine = open }

// AddNode creates (but does not start) a node with empty state.
func (w *World) AddNode(id raft.ServerID, engine string) {
	w.mu.Lock()
	store := storeFor(w.snapshotStore, len(w.ids))
	w.mu.Unlock()
	s := &slot{id: id, engine: engine, store: store, installs: map[uint64]int{}, disk: w.newNodeDisk(id, engine)}
	s.storage = s.disk.storage()
	w.mu.Lock()
	w.nodes[id] = s
	w.ids = append(w.ids, id)
	w.mu.Unlock()
}

// Start starts node id from its current storage.
func (w *World) Start(id raft.ServerID) error {
	w.mu.Lock()
	s := w.nodes[id]
	if s.node != nil || s.starting {
		w.mu.Unlock()
		return fmt.Errorf("scenarios: %s already running", id)
	}
	s.starting = true
	s.incarnation++
	inc := s.incarnation
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		s.starting = false
		w.mu.Unlock()
	}()
	var tr raft.Transport
	if w.inmem != nil {
		_, t := raft.NewInmemTransport(raft.ServerAddress(id))
		w.mu.Lock()
		for oid, other := range w.inmem {
			t.Connect(raft.ServerAddress(oid), other)
			other.Connect(raft.ServerAddress(id), t)
		}
		w.inmem[id] = t
		w.mu.Unlock()
		tr = t
	} else if w.mutation != nil && w.mutation.Transport != nil {
		tr = w.mutation.Transport(w.Net.Transport(id))
	} else {
		tr = w.Net.Transport(id)
	}
	// Opening a bbolt node's files makes system calls (see quietStores).
	w.quiet.Quiesce()
	node, err := cluster.StartNode(cluster.NodeConfig{
		ID:        id,
		Storage:   s.storage,
		Transport: tr,
		Raft:      w.raftConfig,
		Hooks:     w.hooks(id, inc),
		// SnapshotStore "" (a World used without Options) is the default.
		SnapshotStore: s.store,
		Wrap: func(st *cluster.Stores) {
			w.wrapStores(id, inc, st)
			w.mu.Lock()
			s.live = st.Engine
			w.mu.Unlock()
		},
		GuardSnapshots: w.snapshotGuard(),
		WrapSnapshots:  w.tapSnapshots(id, inc),
	})
	if err != nil {
		if c, ok := tr.(raft.WithClose); ok {
			c.Close()
		}
		return err
	}
	// A point-in-time read of the engine as the node starts, for the
	// check that a restarted node holds exactly the state of its index.
	startRec := checkers.Start{Node: string(id), At: time.Since(w.start), Applied: node.FSM.Applied().Index, Unsynced: s.disk.unsyncedEngine()}
	if st, err := checkers.ReadState(string(id), node.Stores.Engine); err == nil {
		startRec.StateIndex, startRec.Digest = st.Applied.Index, st.Digest()
	}
	w.mu.Lock()
	s.node = node
	w.log.Starts = append(w.log.Starts, startRec)
	w.mu.Unlock()
	detail := fmt.Sprintf("engine=%s snapshot-store=%s applied=%d recovered=%v", s.engine, node.SnapshotStore, node.FSM.Applied().Index, node.RecoveredFromSnapshot)
	if node.RestoredFromCheckpoint {
		detail += " restored-from-checkpoint=true"
	}
	w.Trace.Record(string(id), "start", detail)
	return nil
}

// current reports whether incarnation inc is still the instance of id
// that counts: one that crashed since goes on running until it is stopped,
// but what it does after the crash instant reaches neither the node's
// restarted state nor the record of the run.
func (w *World) current(id raft.ServerID, inc int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.nodes[id].incarnation == inc
}

// staleNote marks trace events of an instance that has crashed since.
const staleNote = " (crashed instance)"

// snapshotKept counts a local snapshot of instance inc of node id (a
// copying store's Persist or a zero-copy store's barrier) and records the
// index it made durable, if it succeeded; for an instance that has crashed
// since it counts nothing and returns staleNote for its trace event.
func (w *World) snapshotKept(id raft.ServerID, inc int, index uint64, err error) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.nodes[id].incarnation != inc {
		return staleNote
	}
	if err == nil {
		w.stats.SnapshotsBuilt++
		w.log.Durable = append(w.log.Durable, checkers.Durable{Node: string(id), At: time.Since(w.start), Index: index})
	}
	return ""
}

func (w *World) hooks(id raft.ServerID, inc int) cluster.FSMHooks {
	return cluster.FSMHooks{
		Persisted: func(h snapshot.Header, st snapshot.Stats, err error) {
			note := w.snapshotKept(id, inc, h.Index, err)
			w.Trace.Record(string(id), "snapshot-persist", fmt.Sprintf("index=%d term=%d pairs=%d bytes=%d err=%v%s", h.Index, h.Term, st.Pairs, st.Bytes, err, note))
		},
		Applied: func(logs []*raft.Log) {
			at := time.Since(w.start)
			w.mu.Lock()
			defer w.mu.Unlock()
			if w.nodes[id].incarnation != inc {
				return
			}
			for _, l := range logs {
				w.log.Applies = append(w.log.Applies, checkers.Apply{Node: string(id), At: at, Index: l.Index, Term: l.Term,
					Config: l.Type == raft.LogConfiguration, Data: bytes.Clone(l.Data)})
			}
		},
		Referenced: func(at engines.Applied, err error) {
			note := w.snapshotKept(id, inc, at.Index, err)
			w.Trace.Record(string(id), "snapshot-reference", fmt.Sprintf("index=%d term=%d err=%v%s", at.Index, at.Term, err, note))
			if err == nil {
				w.fireTap(id, inc, CrashReferenced, fmt.Sprintf("index=%d", at.Index))
			}
		},
		LocalRestored: func(at engines.Applied, err error) {
			if err == nil && w.current(id, inc) {
				w.mu.Lock()
				w.stats.CheckpointRestores++
				w.mu.Unlock()
			}
			w.Trace.Record(string(id), "checkpoint-restore", fmt.Sprintf("index=%d term=%d err=%v", at.Index, at.Term, err))
		},
		Served: func(h snapshot.Header, size int64, err error) {
			note := ""
			if !w.current(id, inc) {
				note = staleNote
			}
			w.Trace.Record(string(id), "snapshot-serve", fmt.Sprintf("index=%d term=%d bytes=%d err=%v%s", h.Index, h.Term, size, err, note))
		},
		Restored: func(h snapshot.Header, kept bool, err error) {
			if !w.current(id, inc) {
				w.Trace.Record(string(id), "snapshot-restore", fmt.Sprintf("index=%d term=%d kept=%v err=%v%s", h.Index, h.Term, kept, err, staleNote))
				return
			}
			digest := ""
			if err == nil && !kept {
				if e := w.engineOfRunning(id); e != nil {
					if st, rerr := checkers.ReadState(string(id), e); rerr == nil {
						digest = st.Digest()
					}
				}
			}
			w.mu.Lock()
			switch {
			case err != nil:
				w.stats.SnapshotsRefused++
			case kept:
				// Verified but not installed: the engine was already past
				// it. Being sent the same point again and again after
				// healing is still a livelock.
				w.stats.SnapshotsKept++
				if w.healed {
					w.nodes[id].installs[h.Index]++
				}
			default:
				w.restoring = slices.DeleteFunc(w.restoring, func(r pendingRestore) bool {
					if r.Node != string(id) || r.digest != digest {
						return false
					}
					// The user restore's install on its own node: the
					// committed state at this index is the backup's.
					r.Index, r.Term, r.At = h.Index, h.Term, time.Since(w.start)
					w.log.Resets = append(w.log.Resets, *r.Reset)
					return true
				})
				w.log.Installs = append(w.log.Installs, checkers.Install{Node: string(id), At: time.Since(w.start), Index: h.Index, Term: h.Term, Digest: digest})
				w.stats.SnapshotsInstalled++
				if w.healed {
					w.nodes[id].installs[h.Index]++
				}
			}
			w.mu.Unlock()
			w.Trace.Record(string(id), "snapshot-restore", fmt.Sprintf("index=%d term=%d kept=%v err=%v", h.Index, h.Term, kept, err))
			if err == nil && !kept {
				w.fireTap(id, inc, CrashInstalled, fmt.Sprintf("index=%d", h.Index))
			}
		},
	}
}

// engineOfRunning returns the engine of the instance of id being started
// or running. The Restored hook can fire during StartNode (recovery), before
// the node is registered, so the engine comes from the slot's pending one.
func (w *World) engineOfRunning(id raft.ServerID) engines.Engine {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.nodes[id].live
}

// RunLog returns a copy of what the state machines recorded.
func (w *World) RunLog() checkers.RunLog {
	w.mu.Lock()
	defer w.mu.Unlock()
	return checkers.RunLog{
		Applies:  slices.Clone(w.log.Applies),
		Installs: slices.Clone(w.log.Installs),
		Starts:   slices.Clone(w.log.Starts),
		Durable:  slices.Clone(w.log.Durable),
		Resets:   slices.Clone(w.log.Resets),
	}
}

// Crash kills node id at this instant and waits until the old instance
// has stopped; see CrashNow.
func (w *World) Crash(id raft.ServerID, powerLoss bool, keepPercent int) error {
	stop, err := w.CrashNow(id, powerLoss, keepPercent)
	if err != nil {
		return err
	}
	return stop()
}

// CrashNow kills node id at this instant without waiting, so it can be
// called from inside the node's own goroutines (a crash in the middle of a
// snapshot install). What the old instance does from now on reaches neither
// the other nodes (its endpoint closes first) nor the state the node
// restarts from, which is what its disk holds now (nodeDisk.crash; with
// powerLoss, unsynced writes are kept with probability keepPercent, hashed
// from (seed, node, incarnation, path, block): a shared stream would be
// consumed differently by engines that draw nothing, and Pebble's
// CrashClone draws in random map order). The returned stop shuts the old instance down; it must be called, from a
// goroutine other than the node's own, before the world shuts down.
func (w *World) CrashNow(id raft.ServerID, powerLoss bool, keepPercent int) (stop func() error, err error) {
	return w.crashNow(id, powerLoss, keepPercent, true)
}

// crashNow is CrashNow; quiesce says whether to wait for the rest of the
// bubble before copying the node's state (sim.Quiescer), which a crash
// from inside Pebble's own I/O (failStop) must not do: Pebble may hold a
// mutex there that another of its goroutines waits for, and a Pebble
// node's CrashClone makes no system calls.
func (w *World) crashNow(id raft.ServerID, powerLoss bool, keepPercent int, quiesce bool) (stop func() error, err error) {
	w.mu.Lock()
	s := w.nodes[id]
	node := s.node
	s.node = nil
	if node != nil {
		w.stats.Crashes++
		s.incarnation++
	}
	incarnation := s.incarnation
	w.mu.Unlock()
	crashSeed := w.Seed.Child(fmt.Sprintf("crash/%s/%d", id, incarnation))
	if node == nil {
		return func() error { return nil }, nil
	}
	w.Net.Transport(id).Close() // a fresh endpoint replaces the old one, closed
	if quiesce {
		w.quiet.Quiesce()
	}
	detail, err := s.disk.crash(powerLoss, keepPercent, crashSeed)
	if err != nil {
		return nil, err
	}
	s.storage = s.disk.storage()
	w.Trace.Record(string(id), "crash", detail)
	// The old instance stops later; its writes land on state nobody reads.
	return func() error { return w.stopNode(node) }, nil
}

// Restart starts a crashed node again.
func (w *World) Restart(id raft.ServerID) error {
	w.mu.Lock()
	w.stats.Restarts++
	w.mu.Unlock()
	return w.Start(id)
}

// Remove marks id as removed from the cluster and stops it.
func (w *World) Remove(id raft.ServerID) {
	w.mu.Lock()
	s := w.nodes[id]
	node := s.node
	s.node, s.removed = nil, true
	s.incarnation++
	s.tap = nil
	w.mu.Unlock()
	w.Trace.Record(string(id), "removed", "")
	if node != nil {
		w.Net.Transport(id).Close()
		if err := w.stopNode(node); err != nil {
			w.Trace.Record(string(id), "shutdown-error", err.Error())
		}
	}
}

// MarkRemoving records that the removal of id was asked for but may or
// may not have been committed; SettleMembership completes it.
func (w *World) MarkRemoving(id raft.ServerID) {
	w.mu.Lock()
	w.nodes[id].removing = true
	w.mu.Unlock()
	w.Trace.Record(string(id), "membership-unsettled", "removal")
}

// MarkJoining records that adding id (a voter or a learner) failed or may
// not have been committed; SettleMembership completes it.
func (w *World) MarkJoining(id raft.ServerID, voter bool) {
	w.mu.Lock()
	w.nodes[id].joining, w.nodes[id].joinAsVoter = true, voter
	w.mu.Unlock()
	w.Trace.Record(string(id), "membership-unsettled", "addition")
}

// SettleMembership completes, on a healed cluster, every membership change
// whose outcome was unknown. A change the leader lost leadership while
// committing may still take effect later under another leader, or not at
// all; either way a running node outside the configuration receives
// nothing, and must not be judged as a member that failed to catch up. So
// whoever leads is asked again (repeating a change that already took effect
// commits an unchanged configuration) until it succeeds or d passes; a
// removed node then leaves the world.
func (w *World) SettleMembership(d time.Duration) error {
	type change struct {
		id            raft.ServerID
		remove, voter bool
	}
	w.mu.Lock()
	var pending []change
	for _, id := range w.ids {
		s := w.nodes[id]
		switch {
		case s.removed:
		case s.removing:
			pending = append(pending, change{id: id, remove: true})
		case s.joining:
			pending = append(pending, change{id: id, voter: s.joinAsVoter})
		}
	}
	w.mu.Unlock()
	deadline := time.Now().Add(d)
	for _, c := range pending {
		for {
			l := w.Leader()
			if l != nil && l.ID == c.id && !c.remove {
				// Only a voter of the configuration gets elected: the
				// addition took effect.
				w.Trace.Record(string(c.id), "membership-settled", "leads")
				w.mu.Lock()
				w.nodes[c.id].joining = false
				w.mu.Unlock()
				break
			}
			if l != nil {
				// A leader asked to remove itself commits the change
				// and steps down.
				var f raft.IndexFuture
				switch {
				case c.remove:
					f = l.Raft.RemoveServer(c.id, 0, 2*time.Second)
				case c.voter:
					f = l.Raft.AddVoter(c.id, raft.ServerAddress(c.id), 0, 2*time.Second)
				default:
					f = l.Raft.AddNonvoter(c.id, raft.ServerAddress(c.id), 0, 2*time.Second)
				}
				if err := awaitWithin(l, f, max(time.Until(deadline), time.Millisecond)); err == nil {
					w.Trace.Record(string(c.id), "membership-settled", fmt.Sprintf("remove=%v", c.remove))
					if c.remove {
						w.Remove(c.id)
					}
					w.mu.Lock()
					w.nodes[c.id].removing, w.nodes[c.id].joining = false, false
					w.mu.Unlock()
					break
				}
			}
			if !time.Now().Before(deadline) {
				return fmt.Errorf("membership change of %s (remove=%v) still unsettled %v after healing", c.id, c.remove, d)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}

func (w *World) exists(id raft.ServerID) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.nodes[id] != nil
}

func (w *World) removed(id raft.ServerID) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.nodes[id] != nil && w.nodes[id].removed
}

func (w *World) incarnationOf(id raft.ServerID) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.nodes[id].incarnation
}

// isVoter reports whether id is a voter in the configuration the leader
// (or, without one, id itself) knows.
func (w *World) isVoter(id raft.ServerID) bool {
	n := w.Leader()
	if n == nil {
		n = w.Node(id)
	}
	if n == nil {
		return false
	}
	f := n.Raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if s.ID == id {
			return s.Suffrage == raft.Voter
		}
	}
	return false
}

// Node returns the running instance of id, or nil.
func (w *World) Node(id raft.ServerID) *cluster.Node {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s := w.nodes[id]; s != nil {
		return s.node
	}
	return nil
}

// Live returns the running nodes in creation order.
func (w *World) Live() []*cluster.Node {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*cluster.Node
	for _, id := range w.ids {
		if n := w.nodes[id].node; n != nil {
			out = append(out, n)
		}
	}
	return out
}

// IDs returns every node's id in creation order.
func (w *World) IDs() []raft.ServerID {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.ids)
}

// Down returns the nodes that are not running.
func (w *World) Down() []raft.ServerID {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []raft.ServerID
	for _, id := range w.ids {
		if w.nodes[id].node == nil {
			out = append(out, id)
		}
	}
	return out
}

// Leader returns the live node that believes it leads with the highest
// term, or nil.
func (w *World) Leader() *cluster.Node {
	var best *cluster.Node
	var bestTerm uint64
	for _, n := range w.Live() {
		if n.Raft.State() != raft.Leader {
			continue
		}
		term := n.Raft.CurrentTerm()
		if best == nil || term > bestTerm {
			best, bestTerm = n, term
		}
	}
	return best
}

// CountFault records one injected fault of kind.
func (w *World) CountFault(kind string) {
	w.mu.Lock()
	w.stats.Faults[kind]++
	w.mu.Unlock()
}

// Counters returns a copy of the counters.
func (w *World) Counters() Counters {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.stats
	c.Faults = map[string]int{}
	for k, v := range w.stats.Faults {
		c.Faults[k] = v
	}
	return c
}

// StartLiveness marks the start of the fault-free liveness phase: crash
// taps not yet fired are disarmed, and the nodes they crashed are left down
// for the caller to restart with the others.
func (w *World) StartLiveness() {
	w.mu.Lock()
	w.healed = true
	var unfired []string
	for _, id := range w.ids {
		if t := w.nodes[id].tap; t != nil {
			unfired = append(unfired, fmt.Sprintf("%s: %s", id, t))
			w.nodes[id].tap = nil
		}
	}
	w.mu.Unlock()
	for _, u := range unfired {
		w.Trace.Record("", "crash-point-unfired", u)
	}
	w.stopBackground()
	w.Trace.Record("", "phase", "liveness")
}

// stopBackground tells the crash taps' goroutines to stop and waits for
// them: each has stopped its crashed instance when it returns.
func (w *World) stopBackground() {
	w.healOnce.Do(func() { close(w.healedCh) })
	w.background.Wait()
}

// MaxInstallsAtOneIndex is the most times any node installed a snapshot of
// the same index during the liveness phase, and which node. Under faults a
// snapshot is legitimately sent again when a reply was lost; on a healed
// cluster, installing the same point again and again is a livelock.
func (w *World) MaxInstallsAtOneIndex() (raft.ServerID, uint64, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var id raft.ServerID
	var index uint64
	most := 0
	for _, sid := range w.ids {
		for i, n := range w.nodes[sid].installs {
			if n > most {
				id, index, most = sid, i, n
			}
		}
	}
	return id, index, most
}

// stopNode shuts an instance down and records the futures raft left
// unanswered on it.
func (w *World) stopNode(n *cluster.Node) error {
	err := n.Shutdown()
	if leaked := n.Leaked(); leaked > 0 {
		w.mu.Lock()
		w.stats.LeakedFutures += leaked
		w.mu.Unlock()
		w.Trace.Record(string(n.ID), "futures-leaked", fmt.Sprintf("count=%d", leaked))
	}
	return err
}

// Shutdown stops every running node and closes the network; it must run
// before the bubble ends (DESIGN.md rule 5).
func (w *World) Shutdown() error {
	w.stopBackground()
	var errs []error
	for _, n := range w.Live() {
		if err := w.stopNode(n); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n.ID, err))
		}
	}
	w.mu.Lock()
	for _, s := range w.nodes {
		s.node = nil
	}
	w.mu.Unlock()
	if err := w.Net.Close(); err != nil {
		errs = append(errs, err)
	}
	for _, t := range w.inmem {
		t.Close()
	}
	if len(errs) > 0 {
		return fmt.Errorf("scenarios: shutdown: %v", errs)
	}
	return nil
}

// errText is err's text for the trace, with the run's temporary directory
// (which differs from run to run) named $TMP, so that an error naming a
// node's file does not change the trace hash of a run that replays.
func (w *World) errText(err error) string {
	return strings.ReplaceAll(err.Error(), w.tempDir, "$TMP")
}
