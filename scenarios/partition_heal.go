package scenarios

import (
	"time"

	"github.com/raftsnap/testbed/faults"
	"github.com/raftsnap/testbed/sim"
)

func init() {
	register(Scenario{
		Name: "partition-heal",
		Description: "safety: the leader is put in a minority for 5-10s, then a second partition of a seed-chosen " +
			"shape (isolate, bridge, one-way in or out, majority-minority) around a random node, with the swarm's " +
			"flapping partitions and link faults in between; liveness: all links healed, every node reaches the " +
			"leader's commit index within 30s",
		Nodes:    5,
		Safety:   40 * time.Second,
		Liveness: 30 * time.Second,
		Workload: installWorkload,
		Kinds:    kinds([]faults.Kind{faults.KindPartition, faults.KindFlap}, linkKinds),
		Script:   partitionScript,
		Link:     sim.LinkOptions{DelayMin: time.Millisecond, DelayMax: 5 * time.Millisecond, SnapshotBytesPerSecond: 16 << 20},
	})
}

// partitionScript always cuts the leader off into a minority (so a new
// leader is elected while the old one keeps its lease for a while), then,
// after a pause, partitions the cluster again in a shape the seed picks.
// Partitions never overlap (the schedule allows one at a time), so the
// swarm's partitions and flaps fill only the gaps.
func partitionScript(seed sim.Seed, nodes int, safety time.Duration) []faults.Fault {
	r := seed.Rand("script")
	first := faults.Fault{At: between(r, 3*time.Second, 6*time.Second), Kind: faults.KindPartition, Target: leaderTarget,
		Shape: faults.ShapeMajorityMinority}
	first.Duration = between(r, 5*time.Second, 10*time.Second)
	shapes := []faults.Shape{faults.ShapeIsolate, faults.ShapeBridge, faults.ShapeOneWayIn, faults.ShapeOneWayOut, faults.ShapeMajorityMinority}
	second := faults.Fault{At: first.End() + between(r, 2*time.Second, 5*time.Second), Kind: faults.KindPartition,
		Target: nodeTarget(r.IntN(nodes)), Shape: shapes[r.IntN(len(shapes))]}
	second.Duration = min(between(r, 5*time.Second, 12*time.Second), safety-second.At-time.Second)
	return []faults.Fault{first, second}
}
