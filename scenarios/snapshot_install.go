package scenarios

import (
	"time"

	"github.com/raftsnap/testbed/faults"
	"github.com/raftsnap/testbed/sim"
)

func init() {
	register(Scenario{
		Name: "snapshot-install",
		Description: "client load throughout; one node is cut off (isolated or crashed) while the leader keeps " +
			"snapshotting and compacting; after it heals it must catch up through InstallSnapshot while " +
			"network and snapshot-stream faults go on",
		Nodes:    5,
		Safety:   40 * time.Second,
		Liveness: 30 * time.Second,
		Workload: DefaultWorkload,
		// Partitions are the script's; the swarm adds link and stream faults.
		Kinds: []faults.Kind{faults.KindLoss, faults.KindDelay, faults.KindDuplicate, faults.KindReorder,
			faults.KindSnapCut, faults.KindSnapCorrupt, faults.KindSnapStall},
		Script: snapshotInstallScript,
		Link:   sim.LinkOptions{DelayMin: time.Millisecond, DelayMax: 5 * time.Millisecond, SnapshotBytesPerSecond: 16 << 20},
	})
}

// snapshotInstallScript cuts one node off from 3 s for 15-25 s, by an
// isolating partition or a crash (the seed decides); aims a snapshot-stream
// fault (a cut or a corrupted byte) at its first catch-up; and keeps a
// little message loss on every link for most of the run, so the catch-up
// happens while network faults go on.
func snapshotInstallScript(seed sim.Seed, nodes int, safety time.Duration) []faults.Fault {
	r := seed.Rand("script")
	target := faults.Target{Role: faults.RoleNode, Node: r.IntN(nodes)}
	at := 3 * time.Second
	down := 15*time.Second + time.Duration(r.Int64N(int64(10*time.Second)))
	down = min(down, safety-at-5*time.Second)
	cut := faults.Fault{At: at, Duration: down, Kind: faults.KindPartition, Target: target, Shape: faults.ShapeIsolate}
	if r.IntN(2) == 0 {
		cut = faults.Fault{At: at, Duration: down, Kind: faults.KindCrash, Target: target}
	}
	// The stream fault is armed just before the node comes back, so it hits
	// the first InstallSnapshot body sent to it.
	stream := faults.Fault{At: at + down - time.Second, Duration: 4 * time.Second, Kind: faults.KindSnapCorrupt,
		Target: target, OffsetBytes: r.Int64N(4096)}
	if r.IntN(2) == 0 {
		stream.Kind = faults.KindSnapCut
	}
	loss := faults.Fault{At: time.Second, Duration: safety - 2*time.Second, Kind: faults.KindLoss,
		Target: faults.Target{Role: faults.RoleAll}, Probability: 0.005 + 0.02*r.Float64()}
	return []faults.Fault{loss, cut, stream}
}
