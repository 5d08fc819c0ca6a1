package sim_test

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftsnap/testbed/sim"
	"github.com/raftsnap/testbed/sim/simtest"
)

// lossy is a mildly bad network that raft must ride through.
var lossy = sim.LinkOptions{
	DelayMin:             time.Millisecond,
	DelayMax:             15 * time.Millisecond,
	LossProbability:      0.01,
	DuplicateProbability: 0.01,
	ReorderProbability:   0.02,
	ReorderDelayMax:      30 * time.Millisecond,
}

// TestRaftPartitionLeader: a cluster elects a leader, takes writes, loses
// its leader to a partition, elects another among the majority, heals and
// converges.
func TestRaftPartitionLeader(t *testing.T) {
	for _, size := range []int{3, 5} {
		t.Run(map[int]string{3: "3nodes", 5: "5nodes"}[size], func(t *testing.T) {
			simtest.Run(t, func(t *testing.T) {
				// No snapshots here: installing one on the deposed leader,
				// which may hold divergent entries, can livelock
				// hashicorp/raft v1.8.0 (hashicorp/raft#697).
				c := newCluster(t, sim.Seed(42), clusterOptions{nodes: size, net: sim.NetworkOptions{Link: lossy},
					threshold: 1 << 30, trailing: 1 << 30})
				defer c.shutdown()
				old := c.leader(10 * time.Second)
				c.apply("a", 100, 30*time.Second)

				// The old leader keeps one follower in a minority (5 nodes)
				// or is alone (3 nodes).
				minority := []*testNode{old}
				if size == 5 {
					minority = append(minority, others(c.nodes, old)[0])
				}
				majority := others(c.nodes, minority...)
				c.net.Partition(ids(minority...), ids(majority...))
				nl := c.leader(20*time.Second, majority...)
				if nl == old {
					t.Fatal("old leader still leads the majority")
				}
				c.apply("b", 100, 30*time.Second, majority...)
				// The minority cannot commit: its leader steps down on lease loss.
				time.Sleep(3 * time.Second)
				if old.raft.State() == raft.Leader {
					t.Errorf("partitioned old leader %s still leader after 3s", old.id)
				}

				c.net.HealAll()
				c.apply("c", 50, 30*time.Second)
				c.converged(30 * time.Second)
				// An Apply that fails with ErrLeadershipLost may still have
				// committed, and apply retries it: at least 250, then.
				if n, _ := c.nodes[0].fsm.state(); n < 250 || n > 260 {
					t.Errorf("nodes applied %d commands, want 250 (a few more on retried writes)", n)
				}
				st := c.net.Stats()
				t.Logf("network stats: %+v", st)
				if st.Kinds["AppendEntries"].Blocked == 0 {
					t.Error("partition blocked no AppendEntries")
				}
			})
		})
	}
}

// TestRaftInstallSnapshotCatchUp: a follower isolated while the leader
// snapshots and compacts its log catches up through InstallSnapshot over
// the simulated network, also when the first stream is cut midway.
func TestRaftInstallSnapshotCatchUp(t *testing.T) {
	for _, cut := range []bool{false, true} {
		name := "clean"
		if cut {
			name = "first-stream-cut"
		}
		t.Run(name, func(t *testing.T) {
			simtest.Run(t, func(t *testing.T) {
				// RPCs time out before the leader lease (500ms), so a lost
				// heartbeat does not depose the leader; a deposed leader
				// with divergent entries could hit hashicorp/raft#697.
				c := newCluster(t, sim.Seed(7), clusterOptions{nodes: 3, net: sim.NetworkOptions{Link: lossy, RPCTimeout: 250 * time.Millisecond}})
				defer c.shutdown()
				l := c.leader(10 * time.Second)
				c.apply("a", 20, 30*time.Second)
				lag := others(c.nodes, l)[0]
				c.net.Isolate(lag.id)
				c.apply("b", 300, 60*time.Second, others(c.nodes, lag)...)
				l = c.leader(10*time.Second, others(c.nodes, lag)...)
				if err := l.raft.Snapshot().Error(); err != nil {
					t.Fatalf("snapshot: %v", err)
				}
				if cut {
					// 100 bytes in: well inside the ~3 KB snapshot.
					c.net.InjectStreamFault(l.id, lag.id, sim.StreamFault{Kind: sim.StreamCut, Offset: 100})
				}
				c.net.HealAll()
				c.apply("c", 10, 30*time.Second)
				c.converged(60 * time.Second)
				st := c.net.Stats()
				is := st.Kinds["InstallSnapshot"]
				t.Logf("InstallSnapshot: %+v, bytes %d, cuts %d", is, st.SnapshotBytes, st.StreamCuts)
				if is.Replied == 0 {
					t.Error("no InstallSnapshot went through")
				}
				if snaps, _ := lag.snaps.List(); len(snaps) == 0 {
					t.Error("lagging follower has no snapshot")
				}
				if cut && (st.StreamCuts != 1 || is.Failed == 0) {
					t.Errorf("want one cut stream and a failed InstallSnapshot, got cuts=%d failed=%d", st.StreamCuts, is.Failed)
				}
			})
		})
	}
}
