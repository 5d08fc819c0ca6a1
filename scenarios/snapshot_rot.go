package scenarios

import (
	"time"

	"github.com/raftsnap/testbed/faults"
	"github.com/raftsnap/testbed/sim"
)

func init() {
	register(Scenario{
		Name: "snapshot-rot",
		Description: "safety: snapshot-install's lagging node, while the stored snapshots of the leader or a follower rot on disk " +
			"(each one opened to be sent or restored first has a byte flipped, after the store accepted it whole): " +
			"a node must refuse a rotten snapshot, never send or install it, and take a fresh one; liveness: healed " +
			"(a snapshot that rotted stays rotten), " +
			"every node reaches the leader's commit index within 30s",
		Nodes:    5,
		Safety:   40 * time.Second,
		Liveness: 30 * time.Second,
		Workload: installWorkload,
		Kinds:    kinds(linkKinds, streamKinds),
		Script: func(seed sim.Seed, nodes int, safety time.Duration) []faults.Fault {
			// Whoever leads (its snapshots rot before it sends them) or
			// a follower (before it restores what it received).
			role := []faults.Role{faults.RoleLeader, faults.RoleFollower}[seed.Rand("rot").IntN(2)]
			// Until the end of the safety phase: a snapshot that rots
			// stays rotten, and in the quiet liveness phase no new
			// snapshot replaces it unless the node refuses it and takes
			// a fresh one (a rot that ended 10s earlier left the
			// workload time to replace it, and a node that kept serving
			// a rotten snapshot went unseen).
			rot := faults.Fault{At: 2 * time.Second, Duration: safety - 2*time.Second, Kind: faults.KindSnapRot,
				Target: faults.Target{Role: role}}
			return append(planInstall(seed, nodes, safety).faults, rot)
		},
		Link: sim.LinkOptions{DelayMin: time.Millisecond, DelayMax: 5 * time.Millisecond, SnapshotBytesPerSecond: 16 << 20},
	})
}
