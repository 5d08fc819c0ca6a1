package sim_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/raftsnap/testbed/sim"
	"github.com/raftsnap/testbed/sim/simtest"
)

// Knobs for widening the sweeps by hand:
//
//	SIM_DET_SEEDS, SIM_DET_RUNS  seeds and runs per seed (defaults 5 and 3)
//	SIM_DET_DUMP=dir             write the traces of divergent runs there
//	SIM_DET_RPC_TIMEOUT=1s       RPC timeout of the scenarios (default 250ms);
//	                             1s exposes the raft race described at
//	                             TestDeterminismLeaderIsolated

// scenario is a seeded 3-node raft run over a lossy network (delays, loss,
// duplicates, reordering): elect, write, cut one node away, write, heal,
// converge. With a follower cut away, the leader also snapshots, so the
// follower catches up through InstallSnapshot. It returns the trace.
func scenario(t *testing.T, seed sim.Seed, isolateLeader bool) *sim.Trace {
	var trace *sim.Trace
	synctest.Test(t, func(t *testing.T) {
		// RPCs time out before the leader lease (500ms) runs out; see
		// TestDeterminismLeaderIsolated for why that matters.
		o := clusterOptions{nodes: 3, net: sim.NetworkOptions{Link: lossy, RPCTimeout: detRPCTimeout()}, keepEvents: true}
		if isolateLeader {
			// No snapshots: installing one on a deposed leader that holds
			// divergent entries can livelock hashicorp/raft v1.8.0
			// (hashicorp/raft#697), which this test is not about.
			o.threshold, o.trailing = 1<<30, 1<<30
		}
		c := newCluster(t, seed, o)
		defer c.shutdown()
		trace = c.trace
		l := c.leader(10 * time.Second)
		c.apply("a", 50, 30*time.Second)
		cut := others(c.nodes, l)[0]
		if isolateLeader {
			cut = l
		}
		c.net.Isolate(cut.id)
		rest := others(c.nodes, cut)
		c.apply("b", 100, 30*time.Second, rest...)
		if !isolateLeader {
			if err := c.leader(10*time.Second, rest...).raft.Snapshot().Error(); err != nil {
				t.Fatalf("snapshot: %v", err)
			}
		}
		c.net.HealAll()
		c.apply("c", 20, 30*time.Second)
		c.converged(30 * time.Second)
	})
	return trace
}

// sweep runs each of seeds runs times, reports each divergence from a
// seed's first run through onDivergence (with the first divergent event),
// fails if two seeds share a hash, and returns the number of divergent runs.
func sweep(t *testing.T, seeds, runs int, isolateLeader bool, onDivergence func(format string, args ...any)) (diverged int) {
	skipUnderRace(t)
	simtest.SingleProc(t)
	hashes := map[string]sim.Seed{}
	for s := range seeds {
		seed := sim.Seed(1000 + s)
		first := scenario(t, seed, isolateLeader)
		ref, refEvents := first.Hash(), first.Events()
		if prev, dup := hashes[ref]; dup {
			t.Errorf("seeds %d and %d gave the same hash %s", prev, seed, ref)
		}
		hashes[ref] = seed
		bad := 0
		for run := 1; run < runs; run++ {
			tr := scenario(t, seed, isolateLeader)
			if h := tr.Hash(); h != ref {
				bad++
				dumpTrace(t, first, fmt.Sprintf("seed%d-run0.jsonl", seed))
				dumpTrace(t, tr, fmt.Sprintf("seed%d-run%d.jsonl", seed, run))
				ev := tr.Events()
				i := sim.FirstDivergence(refEvents, ev)
				onDivergence("seed %d run %d: hash %.16s != %.16s (%d vs %d events); first divergent event #%d:\n  run 0: %s\n  run %d: %s",
					seed, run, h, ref, len(refEvents), len(ev), i, eventAt(refEvents, i), run, eventAt(ev, i))
			}
		}
		diverged += bad
		t.Logf("seed %d: %d events, hash %.16s, %d/%d reruns diverged", seed, len(refEvents), ref, bad, runs-1)
	}
	return diverged
}

// TestDeterminism: the same seed gives the same trace hash, run after run in
// one process; different seeds give different hashes.
func TestDeterminism(t *testing.T) {
	sweep(t, envInt("SIM_DET_SEEDS", 5), envInt("SIM_DET_RUNS", 3), false, t.Errorf)
}

// TestDeterminismConcurrentWriters: a 5-node cluster with four concurrent
// writers replays from its seed, provided the writers act at distinct
// virtual instants (steadyLoad jitters them). Without the jitter every
// rerun diverged: writers woken at the same instant interleave with raft's
// replication goroutines, which dispatchLogs wakes in map order (random),
// so AppendEntries batch different numbers of entries.
func TestDeterminismConcurrentWriters(t *testing.T) {
	skipUnderRace(t)
	simtest.SingleProc(t)
	for s := range 2 {
		seed := sim.Seed(2000 + s)
		var ref []sim.Event
		var refHash string
		for run := range envInt("SIM_DET_RUNS", 3) {
			var tr *sim.Trace
			var writes int
			synctest.Test(t, func(t *testing.T) {
				c := newCluster(t, seed, clusterOptions{nodes: 5, keepEvents: true, threshold: 256, trailing: 64,
					net: sim.NetworkOptions{Link: sim.LinkOptions{DelayMin: time.Millisecond, DelayMax: 5 * time.Millisecond}}})
				defer c.shutdown()
				tr = c.trace
				c.leader(10 * time.Second)
				writes = steadyLoad(c, 4, 10*time.Millisecond, 3*time.Second)
			})
			ev, h := tr.Events(), tr.Hash()
			if run == 0 {
				ref, refHash = ev, h
				t.Logf("seed %d: %d writes, %d events, hash %.16s", seed, writes, len(ev), h)
				if writes == 0 {
					t.Errorf("seed %d: no writes", seed)
				}
				continue
			}
			if h != refHash {
				i := sim.FirstDivergence(ref, ev)
				t.Errorf("seed %d run %d diverged at event #%d:\n  run 0: %s\n  run %d: %s", seed, run, i, eventAt(ref, i), run, eventAt(ev, i))
			}
		}
	}
}

// TestDeterminismLeaderIsolated is TestDeterminism with the leader cut away.
//
// It replays only because the scenarios' RPC timeout (250ms) is shorter
// than the leader lease (500ms). hashicorp/raft v1.8.0 has a race that
// shows when a leader steps down while one of its replication goroutines
// is blocked in an RPC: the goroutine comes back to a select in which both
// stopCh (closed on step-down) and triggerCh (new entries) are ready, and Go
// picks one at random (replication.go, replicate()). Picking triggerCh sends
// one more AppendEntries and everything after shifts. With 1s RPC timeouts
// (SIM_DET_RPC_TIMEOUT=1s) about 40% of the reruns of this test diverge, and
// about 6% of TestDeterminism's; a non-blocking receive from stopCh before
// that select (a patch to raft) brought both to 0 of 400.
func TestDeterminismLeaderIsolated(t *testing.T) {
	sweep(t, envInt("SIM_DET_SEEDS", 5), envInt("SIM_DET_RUNS", 3), true, t.Errorf)
}

func skipUnderRace(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector randomizes scheduling, so runs cannot replay")
	}
}

// dumpTrace writes tr to $SIM_DET_DUMP/name, if that variable names a
// directory, so that divergent runs can be diffed line by line.
func dumpTrace(t testing.TB, tr *sim.Trace, name string) {
	dir := os.Getenv("SIM_DET_DUMP")
	if dir == "" {
		return
	}
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	if err := tr.WriteJSONL(f); err != nil {
		t.Error(err)
	}
}

func eventAt(ev []sim.Event, i int) string {
	if i < 0 || i >= len(ev) {
		return "<none>"
	}
	e := ev[i]
	return fmt.Sprintf("%v %s %s %s", e.At, e.Node, e.Kind, e.Detail)
}

func detRPCTimeout() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("SIM_DET_RPC_TIMEOUT")); err == nil && d > 0 {
		return d
	}
	return 250 * time.Millisecond
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
