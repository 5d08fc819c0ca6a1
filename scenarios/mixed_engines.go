package scenarios

import (
	"time"

	"github.com/raftsnap/testbed/faults"
	"github.com/raftsnap/testbed/sim"
)

func init() {
	register(Scenario{
		Name: "mixed-engines",
		Description: "always Pebble and bbolt nodes side by side (even nodes Pebble, odd bbolt; with a custom " +
			"engine, odd nodes run it), whatever engine is asked for; safety: the snapshot-install lags and " +
			"crash taps, so snapshots built by one engine install into the other, plus crashes and partitions; " +
			"liveness: healed, every node reaches the leader's commit index within 30s and all hold the same state",
		Nodes:    5,
		Safety:   40 * time.Second,
		Liveness: 30 * time.Second,
		Workload: installWorkload,
		Kinds:    kinds([]faults.Kind{faults.KindCrash, faults.KindPowerLoss, faults.KindPartition}, linkKinds, streamKinds),
		Script: func(seed sim.Seed, nodes int, safety time.Duration) []faults.Fault {
			return planInstall(seed, nodes, safety).faults
		},
		Taps: func(seed sim.Seed, nodes int, safety time.Duration) []CrashTap {
			return planInstall(seed, nodes, safety).taps
		},
		Link:   sim.LinkOptions{DelayMin: time.Millisecond, DelayMax: 5 * time.Millisecond, SnapshotBytesPerSecond: 16 << 20},
		Engine: EngineMixed,
	})
}
