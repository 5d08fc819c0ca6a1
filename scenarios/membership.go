package scenarios

import (
	"time"

	"github.com/raftsnap/testbed/faults"
	"github.com/raftsnap/testbed/sim"
)

func init() {
	register(Scenario{
		Name: "membership",
		Description: "safety: a new voter joins and must bootstrap from a snapshot while a follower is crashed, " +
			"a learner joins while another follower is cut off, a follower is removed, and the swarm crashes, " +
			"pauses and delays nodes throughout; liveness: healed, every member reaches the leader's commit " +
			"index within 30s",
		Nodes:    5,
		Safety:   40 * time.Second,
		Liveness: 30 * time.Second,
		Workload: installWorkload,
		Kinds: []faults.Kind{faults.KindCrash, faults.KindPowerLoss, faults.KindPause, faults.KindLoss,
			faults.KindDelay},
		Script: membershipScript,
		Link:   sim.LinkOptions{DelayMin: time.Millisecond, DelayMax: 5 * time.Millisecond, SnapshotBytesPerSecond: 16 << 20},
	})
}

// membershipScript changes the configuration three times, each while
// another fault is on. The first join comes after several snapshots and
// compactions, so the new node gets a snapshot, not the whole log.
func membershipScript(seed sim.Seed, nodes int, safety time.Duration) []faults.Fault {
	r := seed.Rand("script")
	join := between(r, 8*time.Second, 11*time.Second)
	crash := faults.Fault{At: join - between(r, 0, time.Second), Duration: between(r, 4*time.Second, 8*time.Second),
		Kind: faults.KindCrash, Target: followerTarget}
	voter := faults.Fault{At: join, Kind: faults.KindAddVoter, Target: nodeTarget(nodes)}
	learn := join + between(r, 8*time.Second, 11*time.Second)
	cut := faults.Fault{At: learn - 500*time.Millisecond, Duration: between(r, 4*time.Second, 7*time.Second),
		Kind: faults.KindPartition, Target: followerTarget, Shape: faults.ShapeIsolate}
	learner := faults.Fault{At: learn, Kind: faults.KindAddLearner, Target: nodeTarget(nodes + 1)}
	remove := faults.Fault{At: min(learn+between(r, 6*time.Second, 9*time.Second), safety-2*time.Second),
		Kind: faults.KindRemoveNode, Target: followerTarget}
	return []faults.Fault{crash, voter, cut, learner, remove}
}
