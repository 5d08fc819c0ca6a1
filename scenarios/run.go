// Package scenarios owns the named scenarios of the testbed and the runner
// that executes one: it builds the simulated world for a seed, starts the
// cluster, drives the client workload and the fault schedule through the
// safety phase, heals everything for the liveness phase, and judges the run
// with the checkers. Run is the public entry point; Scenarios lists what it
// knows.
package scenarios

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftsnap/testbed/checkers"
	"github.com/raftsnap/testbed/cluster"
	"github.com/raftsnap/testbed/engines"
	"github.com/raftsnap/testbed/faults"
	"github.com/raftsnap/testbed/sim"
	"github.com/raftsnap/testbed/sim/simtest"
)

// Options choose one run.
type Options struct {
	Seed     uint64
	Scenario string
	// Engine is bbolt, pebble, mixed (Pebble on even nodes, bbolt on odd
	// ones), custom (every node runs NewEngine's engine) or mixed-custom
	// (Pebble on even nodes, NewEngine's on odd ones); default pebble, or
	// custom when NewEngine is set. A scenario that fixes its engines
	// (Scenario.Engine) overrides it.
	Engine string
	// NewEngine opens the engine of a custom node in dir, an empty
	// directory the first time and the one it wrote to (or a crash-instant
	// copy of it) at every restart. It is how a user puts their own
	// engines.Engine under the same faults; see cluster.CustomStorage.
	NewEngine func(dir string) (engines.Engine, error)
	// Nodes is the initial cluster size; 0 means the scenario's default.
	Nodes int
	// Duration is the safety phase (virtual); 0 means the scenario's.
	Duration time.Duration
	// Schedule replays a saved fault schedule instead of generating one.
	Schedule *faults.Schedule
	// TracePath, if set, receives the run's trace as JSON lines.
	TracePath string
	// Mutation plants a bug (see package canaries); nil for a clean run.
	Mutation *Mutation
	// OutputDir receives artifacts of a failing run (linearizability
	// visualizations); empty means none are written.
	OutputDir string
	// Baseline runs the same cluster and workload over raft's own
	// InmemTransport with no faults: the reference BenchmarkSimulate
	// compares the simulator against.
	Baseline bool
	// CommonFaults limits the run to faults that every engine takes the
	// same way, so that runs on different engines can be compared
	// (Differential): a power loss becomes a process crash (only Pebble's
	// virtual filesystem can drop unsynced writes) and disk faults, which
	// only Pebble nodes can take, are skipped.
	CommonFaults bool
	// NoPipelining makes raft send one AppendEntries at a time to each
	// follower. By default it pipelines them, as over raft's
	// NetworkTransport (sim.Transport.AppendEntriesPipeline).
	NoPipelining bool
	// Operator replaces the scenario's plan of operator actions
	// (leadership transfers, config reloads, backups; operator.go).
	Operator []OperatorOp
	// SnapshotStore is the nodes' snapshot store: zero-copy (the default:
	// a local snapshot is the engine's own state, made durable, streamed
	// from a view only when a follower needs it), copy (every
	// local snapshot streams the whole state into a file) or mixed
	// (zero-copy on even nodes, copy on odd ones); see cluster.StoreKinds.
	// An engine without a durability barrier (engines.Syncer) always
	// copies. The description of a local snapshot above is the default
	// store's; see cluster.ZeroCopyStore.
	SnapshotStore string
}

// StoreMixed runs the zero-copy store on even nodes and the copying store on
// odd ones.
const StoreMixed = "mixed"

// SnapshotStores lists the values of Options.SnapshotStore, the default
// first.
func SnapshotStores() []string { return append(cluster.StoreKinds(), StoreMixed) }

// storeFor is the snapshot store kind of the i-th node created.
func storeFor(store string, i int) string {
	if store == StoreMixed {
		if i%2 == 0 {
			return cluster.StoreZeroCopy
		}
		return cluster.StoreCopy
	}
	return store
}

// ErrUsage is wrapped by every error about bad options.
var ErrUsage = errors.New("scenarios: bad options")

// Report is the outcome of one run.
type Report struct {
	Seed               uint64  `json:"seed"`
	Scenario           string  `json:"scenario"`
	Engine             string  `json:"engine"`
	SnapshotStore      string  `json:"snapshot_store"`
	Nodes              int     `json:"nodes"`
	OK                 bool    `json:"ok"`
	VirtualSeconds     float64 `json:"virtual_seconds"`
	WallSeconds        float64 `json:"wall_seconds"`
	TraceHash          string  `json:"trace_hash"`
	TraceEvents        int     `json:"trace_events"`
	SnapshotsBuilt     int     `json:"snapshots_built"`
	SnapshotsInstalled int     `json:"snapshots_installed"`
	SnapshotsRefused   int     `json:"snapshots_refused"`
	// CheckpointRestores counts the engines a checkpoint store restored
	// from a local checkpoint at start (cluster.CheckpointStore.RestoreLocal).
	CheckpointRestores int            `json:"checkpoint_restores,omitempty"`
	Faults             map[string]int `json:"faults"`
	FaultsSkipped      []string       `json:"faults_skipped,omitempty"`
	Crashes            int            `json:"crashes"`
	Ops                int            `json:"ops"`
	OpsByOutcome       map[string]int `json:"ops_by_outcome"`
	Violations         []string       `json:"violations"`
	// Known names the known upstream bug whose fingerprint explains the
	// failure (Classify); "" when none does, and for a run that passed.
	Known string `json:"known"`
	// Signature is the shape of the first violation (Signature); "" for a
	// run that passed. Failures no fingerprint explains are grouped by it.
	Signature string           `json:"signature"`
	Repro     string           `json:"repro"`
	Schedule  *faults.Schedule `json:"-"`
	// Events is the whole trace, for finding where two runs diverge.
	Events []sim.Event `json:"-"`
	// Log is what the state machines recorded, for the invariants.
	Log checkers.RunLog `json:"-"`
	// Linearizable says, per read mode the clients used, whether the
	// history with that mode's reads is linearizable: "ok", "illegal" or
	// "unknown" (the search timed out). Only modes that claim
	// linearizability (log, barrier) make a run fail; verify-leader reads
	// are reported, not judged (see cluster.ReadVerifyLeader).
	Linearizable map[string]string `json:"linearizable"`
	// Notes are observations that are not violations (e.g. a search
	// that timed out).
	Notes []string `json:"notes,omitempty"`
	// History is the client history, for the linearizability check.
	History []cluster.Call `json:"-"`
	// Bug names the planted bug of a canary run.
	Bug string `json:"bug,omitempty"`
	// FinalDigest and FinalIndex describe the first live node's state at
	// the end (all live nodes hold the same when the run converged).
	FinalDigest string `json:"final_digest"`
	FinalIndex  uint64 `json:"final_index"`
}

// Scenario is a named cluster shape, workload and fault mix.
type Scenario struct {
	Name        string
	Description string
	Nodes       int
	// Safety is the safety phase: client load and faults. Liveness bounds
	// the fault-free phase after it in which the cluster must converge.
	Safety, Liveness time.Duration
	Workload         Workload
	// Kinds are the fault kinds the swarm may enable for a seed.
	Kinds []faults.Kind
	// Script adds the scenario's own faults to the generated ones.
	Script func(seed sim.Seed, nodes int, safety time.Duration) []faults.Fault
	// Link is the network's model outside faults.
	Link sim.LinkOptions
	// Taps plans crashes at points of the snapshot path (crashtap.go);
	// nil means none, and then the nodes' stores are not wrapped at all.
	Taps func(seed sim.Seed, nodes int, safety time.Duration) []CrashTap
	// Operator plans operator actions through raft's API (operator.go);
	// nil means none.
	Operator func(seed sim.Seed, safety time.Duration) []OperatorOp
	// Engine, if set, fixes the engines whatever Options.Engine says:
	// EngineMixed runs Pebble and bbolt nodes side by side (with a custom
	// engine given, Pebble and the custom one).
	Engine string
}

var registry = map[string]Scenario{}

func register(s Scenario) { registry[s.Name] = s }

// Scenarios returns every scenario, sorted by name.
func Scenarios() []Scenario {
	out := make([]Scenario, 0, len(registry))
	for _, s := range registry {
		out = append(out, s)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out
}

// Lookup returns the named scenario.
func Lookup(name string) (Scenario, bool) {
	s, ok := registry[name]
	return s, ok
}

// RaftConfig is the raft configuration of every simulated node: realistic
// timeouts, and snapshots and log compaction forced often so that the
// snapshot path is exercised constantly.
func RaftConfig() raft.Config {
	c := *raft.DefaultConfig()
	c.HeartbeatTimeout = time.Second
	c.ElectionTimeout = time.Second
	c.LeaderLeaseTimeout = 500 * time.Millisecond
	c.CommitTimeout = 50 * time.Millisecond
	c.SnapshotThreshold = 64
	c.SnapshotInterval = 2 * time.Second
	c.TrailingLogs = 32
	// The world, not raft, stops a removed node (World.Remove): raft's own
	// shutdown on removal does not wait for its goroutines, and a second
	// Shutdown then returns at once, so nothing could tell when the leaked
	// futures of a removed leader may be answered (cluster.Node.Shutdown).
	c.ShutdownOnRemove = false
	return c
}

// Resolve fills defaults and checks opts against the scenario.
func Resolve(opts Options) (Options, Scenario, error) {
	sc, ok := Lookup(opts.Scenario)
	if !ok {
		names := make([]string, 0, len(registry))
		for n := range registry {
			names = append(names, n)
		}
		sort.Strings(names)
		return opts, sc, fmt.Errorf("%w: unknown scenario %q (known: %s)", ErrUsage, opts.Scenario, strings.Join(names, ", "))
	}
	if opts.Engine == "" {
		opts.Engine = EnginePebble
		if opts.NewEngine != nil {
			opts.Engine = EngineCustom
		}
	}
	if !slices.Contains([]string{EngineBbolt, EnginePebble, EngineMixed, EngineCustom, EngineMixedCustom}, opts.Engine) {
		return opts, sc, fmt.Errorf("%w: unknown engine %q (bbolt, pebble, mixed, custom or mixed-custom)", ErrUsage, opts.Engine)
	}
	if sc.Engine == EngineMixed {
		if opts.Engine == EngineCustom || opts.Engine == EngineMixedCustom {
			opts.Engine = EngineMixedCustom
		} else {
			opts.Engine = EngineMixed
		}
	}
	if (opts.Engine == EngineCustom || opts.Engine == EngineMixedCustom) && opts.NewEngine == nil {
		return opts, sc, fmt.Errorf("%w: engine %s needs Options.NewEngine (Go API only)", ErrUsage, opts.Engine)
	}
	if opts.SnapshotStore == "" {
		opts.SnapshotStore = cluster.StoreZeroCopy
	}
	if !slices.Contains(SnapshotStores(), opts.SnapshotStore) {
		return opts, sc, fmt.Errorf("%w: unknown snapshot store %q (%s)", ErrUsage, opts.SnapshotStore, strings.Join(SnapshotStores(), ", "))
	}
	if opts.Nodes == 0 {
		opts.Nodes = sc.Nodes
	}
	if opts.Nodes < 3 || opts.Nodes > faults.MaxVoters {
		return opts, sc, fmt.Errorf("%w: --nodes=%d: need 3 to %d", ErrUsage, opts.Nodes, faults.MaxVoters)
	}
	if opts.Duration == 0 {
		opts.Duration = sc.Safety
	}
	if opts.Duration < 5*time.Second {
		return opts, sc, fmt.Errorf("%w: --duration=%v: at least 5s of virtual time", ErrUsage, opts.Duration)
	}
	if opts.Schedule != nil {
		if err := opts.Schedule.Validate(); err != nil {
			return opts, sc, fmt.Errorf("%w: schedule: %w", ErrUsage, err)
		}
		opts.Nodes, opts.Duration = opts.Schedule.Nodes, opts.Schedule.Duration
	}
	return opts, sc, nil
}

// ScheduleFor is the fault schedule a seed gets in a scenario: the
// scenario's script places its own faults, the swarm draws which other
// kinds are on, and the nemesis places those in time; a generated fault
// that would break the schedule's constraints next to the scripted ones is
// left out.
func ScheduleFor(sc Scenario, seed uint64, nodes int, safety time.Duration) faults.Schedule {
	s := sim.Seed(seed)
	mix := faults.DrawMix(s, sc.Kinds)
	generated := faults.Generate(s, nodes, safety, mix)
	if sc.Script == nil {
		return generated
	}
	sched := generated
	sched.Faults = sortFaults(sc.Script(s, nodes, safety))
	for _, f := range generated.Faults {
		try := sched
		try.Faults = sortFaults(append(slices.Clone(sched.Faults), f))
		if try.Validate() == nil {
			sched = try
		}
	}
	return sched
}

func sortFaults(fs []faults.Fault) []faults.Fault {
	sort.SliceStable(fs, func(a, b int) bool { return fs[a].At < fs[b].At })
	return fs
}

// engineFor is the engine of node i.
func engineFor(engine string, i int) string {
	switch engine {
	case EngineMixed, EngineMixedCustom:
		if i%2 == 0 {
			return EnginePebble
		}
		if engine == EngineMixedCustom {
			return EngineCustom
		}
		return EngineBbolt
	}
	return engine
}

func nodeID(i int) raft.ServerID { return raft.ServerID(fmt.Sprintf("n%d", i)) }

// Run executes one run in its own synctest bubble with GOMAXPROCS=1 and
// returns its report; a run that breaks a check has OK false and its
// violations listed. The binary running it must carry the
// `//go:debug randseednop=0` directive (see sim.SeedRaftGlobalRand).
// Errors are for bad options only.
func Run(t *testing.T, opts Options) (Report, error) {
	opts, sc, err := Resolve(opts)
	if err != nil {
		return Report{}, err
	}
	sched := opts.Schedule
	if opts.Baseline {
		sched = &faults.Schedule{Nodes: opts.Nodes, Duration: opts.Duration}
	}
	if sched == nil {
		s := ScheduleFor(sc, opts.Seed, opts.Nodes, opts.Duration)
		sched = &s
	}
	if err := sched.Validate(); err != nil {
		return Report{}, fmt.Errorf("scenarios: generated schedule invalid (a bug): %w", err)
	}
	rep := Report{Seed: opts.Seed, Scenario: sc.Name, Engine: opts.Engine, SnapshotStore: opts.SnapshotStore, Nodes: opts.Nodes, Schedule: sched,
		Repro: fmt.Sprintf("go run ./cmd/simrun --seed=%d --scenario=%s --engine=%s --snapshot-store=%s --nodes=%d --duration=%v", opts.Seed, sc.Name, opts.Engine, opts.SnapshotStore, opts.Nodes, opts.Duration)}
	tempDir := t.TempDir()
	// The garbage collector stops and preempts goroutines at moments set
	// by the wall clock, which reorders the single P's run queue, so a run
	// does not replay (measured: 10 of 30 seeds diverged with it on, 3-5
	// with it off). A run allocates a few tens of MiB: collect before and
	// after, and not during. The memory limit keeps a runaway run from
	// exhausting the machine; reaching it collects as usual.
	runtime.GC()
	prevGC := debug.SetGCPercent(-1)
	prevLimit := debug.SetMemoryLimit(4 << 30)
	defer func() {
		debug.SetGCPercent(prevGC)
		debug.SetMemoryLimit(prevLimit)
		runtime.GC()
	}()
	wallStart := time.Now()
	simtest.Run(t, func(t *testing.T) {
		rep = execute(t, opts, sc, *sched, tempDir, rep)
	})
	rep.WallSeconds = time.Since(wallStart).Seconds()
	// Porcupine's search must run outside the bubble: its timeout is a
	// timer, which inside the bubble would wait on virtual time.
	rep = judgeLinearizability(rep, opts.OutputDir)
	rep.OK = len(rep.Violations) == 0
	if rep.Violations == nil {
		rep.Violations = []string{}
	}
	rep.Known, rep.Signature = Classify(rep, rep.Events, ""), Signature(rep.Violations)
	return rep, nil
}

func execute(t *testing.T, opts Options, sc Scenario, sched faults.Schedule, tempDir string, in Report) (rep Report) {
	rep = in
	seed := sim.Seed(opts.Seed)
	if err := sim.SeedRaftGlobalRand(seed); err != nil {
		rep.Violations = append(rep.Violations, "setup: "+err.Error())
		return rep
	}
	start := time.Now()
	w := NewWorld(seed, tempDir, RaftConfig(), sc.Link)
	if opts.Baseline {
		w.inmem = map[raft.ServerID]*raft.InmemTransport{}
	}
	w.mutation = opts.Mutation
	w.commonFaults = opts.CommonFaults
	if opts.NoPipelining {
		w.Net.SetPipelining(false)
	} else if pipelineBreaksReplay(sched) {
		w.Net.SetPipelining(false)
		w.Trace.Record("", "pipelining", "off: the schedule has a slow-disk fault")
	}
	w.snapshotStore = opts.SnapshotStore
	w.SetEngineFactory(opts.NewEngine)
	var taps []CrashTap
	if sc.Taps != nil && !opts.Baseline {
		taps = sc.Taps(seed, opts.Nodes, opts.Duration)
		w.EnableCrashTaps()
	}
	fail := func(format string, args ...any) {
		rep.Violations = append(rep.Violations, fmt.Sprintf(format, args...))
	}
	defer func() {
		if err := w.Shutdown(); err != nil {
			fail("shutdown: %v", err)
		}
		if leaked := w.Counters().LeakedFutures; leaked > 0 {
			fail("liveness: raft left %d futures unanswered when nodes shut down; their callers would wait forever (hashicorp/raft v1.8.0 future leak)", leaked)
		}
		rep.VirtualSeconds = time.Since(start).Seconds()
		rep.TraceHash, rep.TraceEvents = w.Trace.Hash(), w.Trace.Len()
		rep.Events = w.Trace.Events()
		if opts.TracePath != "" {
			if err := writeTrace(w.Trace, opts.TracePath); err != nil {
				fail("trace: %v", err)
			}
		}
	}()
	w.Trace.Record("", "run", fmt.Sprintf("seed=%d scenario=%s engine=%s snapshot-store=%s nodes=%d safety=%v", opts.Seed, sc.Name, opts.Engine, opts.SnapshotStore, opts.Nodes, opts.Duration))
	w.Trace.Record("", "schedule", sched.String())
	for _, t := range taps {
		w.Trace.Record("", "crash-tap-planned", t.String())
	}
	var plan []OperatorOp
	switch {
	case opts.Operator != nil:
		plan = opts.Operator
	case sc.Operator != nil && !opts.Baseline:
		plan = sc.Operator(seed, opts.Duration)
	}
	for _, op := range plan {
		w.Trace.Record("", "operator-planned", op.String())
	}

	var servers []raft.Server
	for i := range opts.Nodes {
		id := nodeID(i)
		w.AddNode(id, engineFor(opts.Engine, i))
		if err := w.Start(id); err != nil {
			fail("setup: start %s: %v", id, err)
			return rep
		}
		// Let this node's goroutines draw their first timeouts from raft's
		// shared math/rand before the next node starts: opening a node
		// takes long enough in wall time for the runtime to preempt it,
		// and draws interleaved with a preemption would not replay.
		time.Sleep(time.Millisecond)
		servers = append(servers, raft.Server{ID: id, Address: raft.ServerAddress(id), Suffrage: raft.Voter})
	}
	if err := w.Node(nodeID(0)).Raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		fail("setup: bootstrap: %v", err)
		return rep
	}
	if !waitFor(30*time.Second, func() bool { return w.Leader() != nil }) {
		fail("liveness: no leader elected within 30s of start")
		return rep
	}

	// Safety phase: load and faults.
	stopLoad := sc.Workload.run(w)
	nem := &nemesis{w: w, rng: seed.Rand("nemesis"), base: sc.Link, linkFaults: map[int]faults.Fault{},
		nodeIndex: nodeID, addEngine: func(i int) string { return engineFor(opts.Engine, i) }, taps: taps}
	op := &operator{w: w, rng: seed.Rand("operator")}
	opDone := make(chan struct{})
	go func() {
		defer close(opDone)
		op.run(plan, start)
	}()
	rep.FaultsSkipped = nem.run(sched, start)
	if d := time.Until(start.Add(opts.Duration)); d > 0 {
		time.Sleep(d)
	}
	<-opDone
	rep.Violations = append(rep.Violations, op.violations...)
	stopLoad()

	// Liveness phase: everything healed, the cluster must converge.
	w.StartLiveness()
	w.Net.HealAll()
	for _, id := range w.IDs() {
		w.Net.Resume(id)
	}
	for _, id := range w.Down() {
		if !w.removed(id) {
			if err := w.Restart(id); err != nil {
				fail("liveness: restarting %s: %v", id, err)
			}
		}
	}
	if err := w.SettleMembership(sc.Liveness / 2); err != nil {
		fail("liveness: %v", err)
	}
	return judge(w, sc, rep)
}

// judge runs the liveness phase's convergence wait and the end-of-run
// checks.
func judge(w *World, sc Scenario, rep Report) Report {
	fail := func(format string, args ...any) {
		rep.Violations = append(rep.Violations, fmt.Sprintf(format, args...))
	}
	// A marker read through the log gives the index every node must reach.
	var target uint64
	deadline := time.Now().Add(sc.Liveness)
	client := &cluster.Client{ID: -1, Nodes: w.Live, History: cluster.NewHistory(), Timeout: sc.Liveness}
	for target == 0 && time.Now().Before(deadline) {
		call := client.Do(cluster.Command{Op: cluster.OpGet, Key: []byte("liveness-marker")}, cluster.ReadLog)
		if call.Outcome == cluster.OutcomeOK {
			target = call.Result.Index
		}
	}
	if target == 0 {
		fail("liveness: no write committed within %v after healing", sc.Liveness)
	}
	// Converged means every live node has applied the marker and all hold
	// the same contents at the same index. Nodes can still be catching up
	// (or reinstalling a snapshot) for a while after the marker commits, so
	// poll until the liveness deadline; the checks below then judge the
	// last states read.
	var states []checkers.NodeState
	readStates := func() bool {
		states = states[:0]
		for _, n := range w.Live() {
			st, err := checkers.ReadState(string(n.ID), n.Stores.Engine)
			if err != nil {
				return false
			}
			states = append(states, st)
		}
		for _, st := range states {
			if st.Applied.Index < target {
				return false
			}
		}
		return len(checkers.Convergence(states)) == 0
	}
	if target != 0 && !waitFor(time.Until(deadline), readStates) {
		for _, st := range states {
			if st.Applied.Index < target {
				fail("liveness: %s applied %d, leader committed %d, %v after healing", st.ID, st.Applied.Index, target, sc.Liveness)
			}
		}
	}
	if id, index, times := w.MaxInstallsAtOneIndex(); times >= livelockInstalls {
		fail("liveness: %s installed the snapshot at index %d %d times after healing (livelock)", id, index, times)
	}
	for _, n := range w.Live() {
		if err := n.Failed(); err != nil {
			fail("node %s: state machine stopped: %v", n.ID, err)
		}
	}
	rep.Violations = append(rep.Violations, checkers.Convergence(states)...)
	runLog := w.RunLog()
	runLog.Resets = committedResets(w.Trace.Events(), runLog.Resets)
	rep.Violations = append(rep.Violations, checkers.RaftInvariants(w.Trace.Events(), runLog)...)
	rep.Violations = append(rep.Violations, checkers.SnapshotIntegrity(runLog)...)
	if len(states) > 0 {
		rep.FinalDigest = states[0].Digest()
		rep.FinalIndex = states[0].Applied.Index
	}
	// A user restore is judged as a reset of every key (checkers.WithRestores).
	w.mu.Lock()
	restores := slices.Clone(w.restores)
	w.mu.Unlock()
	calls := w.History.Calls()
	history := checkers.WithRestores(calls, restores)
	rep.History = history
	for _, st := range states {
		rep.Violations = append(rep.Violations, checkers.Durability(history, st)...)
		if len(rep.Violations) > 20 {
			break
		}
	}
	rep.Log = runLog
	if w.mutation != nil {
		rep.Bug = w.mutation.Name
	}
	c := w.Counters()
	rep.SnapshotsBuilt, rep.SnapshotsInstalled, rep.SnapshotsRefused = c.SnapshotsBuilt, c.SnapshotsInstalled, c.SnapshotsRefused
	rep.CheckpointRestores = c.CheckpointRestores
	rep.Faults, rep.Crashes = c.Faults, c.Crashes
	rep.Ops = len(calls)
	rep.OpsByOutcome = map[string]int{}
	for _, call := range calls {
		rep.OpsByOutcome[call.Outcome.String()]++
	}
	return rep
}

// committedResets keeps the user restores the cluster committed. raft's
// Restore puts the backup into the leader's state machine, and keeps it in
// its snapshot store, before any follower has it (see the fingerprint
// RaftRestoreBeforeCommit): a restore cut short may never be committed, and
// then the committed log has no reset at its index. One is committed when
// its leader, still in the restore's term, told a follower a commit index
// at or past it: the leader counts a follower as matching the restore's
// index only once it installed it, so a majority holds it.
func committedResets(events []sim.Event, resets []checkers.Reset) []checkers.Reset {
	return slices.DeleteFunc(resets, func(r checkers.Reset) bool {
		prefix := "AppendEntries " + r.Node + "->"
		for _, e := range events {
			if e.Kind != "recv" || !strings.HasPrefix(e.Detail, prefix) {
				continue
			}
			term, _ := field(e.Detail, "term=")
			commit, _ := field(e.Detail, "commit=")
			if term == r.Term && commit >= r.Index {
				return false
			}
		}
		return true
	})
}

// judgeLinearizability checks the client history per read mode.
func judgeLinearizability(rep Report, outputDir string) Report {
	lin := checkers.Linearizability(rep.History, checkers.LinearizabilityOptions{OutputDir: outputDir})
	rep.Linearizable = map[string]string{}
	for _, m := range lin.Modes {
		rep.Linearizable[m.Mode.String()] = strings.ToLower(string(m.Result))
	}
	for _, v := range lin.Violations() {
		if strings.Contains(v, `mode "verify-leader"`) {
			rep.Notes = append(rep.Notes, "not judged: "+v)
			continue
		}
		rep.Violations = append(rep.Violations, v)
	}
	rep.Notes = append(rep.Notes, lin.Notes()...)
	return rep
}

// livelockInstalls is how many successful installs of one snapshot index on
// one node count as a livelock.
const livelockInstalls = 3

// waitFor polls cond every 100 ms of virtual time until it holds or d
// passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func writeTrace(tr *sim.Trace, path string) error {
	var buf bytes.Buffer
	if err := tr.WriteJSONL(&buf); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}
