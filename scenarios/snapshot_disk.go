package scenarios

import (
	"time"

	"github.com/raftsnap/testbed/faults"
	"github.com/raftsnap/testbed/sim"
)

func init() {
	register(Scenario{
		Name: "snapshot-disk",
		Description: "safety: snapshot-install's lagging node while bursts of disk errors hit the leader or a follower " +
			"(a Pebble node's whole disk; a bbolt node's snapshot store: write and sync errors, half of them a full disk " +
			"(ENOSPC) while a snapshot is persisted or received, and failed reads of stored snapshots), each burst " +
			"ending in a restart of a node that met an error: a node must never report a snapshot kept that its store " +
			"does not hold whole; liveness: healed, every node reaches the leader's commit index within 30s",
		Nodes:    5,
		Safety:   40 * time.Second,
		Liveness: 30 * time.Second,
		Workload: installWorkload,
		Kinds:    kinds(linkKinds, streamKinds),
		Script: func(seed sim.Seed, nodes int, safety time.Duration) []faults.Fault {
			return append(planInstall(seed, nodes, safety).faults, diskBursts(seed.Rand("disk"), safety)...)
		},
		Taps: func(seed sim.Seed, nodes int, safety time.Duration) []CrashTap {
			return planInstall(seed, nodes, safety).taps
		},
		Link: sim.LinkOptions{DelayMin: time.Millisecond, DelayMax: 5 * time.Millisecond, SnapshotBytesPerSecond: 16 << 20},
	})
}

// diskBursts covers the safety phase from 2s with bursts of disk errors of
// 3-8s, 1-3s apart, each on the leader (two in three, since its snapshots
// are the ones persisted and sent) or a follower, failing each I/O
// operation with probability 5-30%: enough for a local snapshot's few
// writes and syncs (a snapshot is a few KiB) to meet an error in most
// bursts.
func diskBursts(r interface {
	IntN(int) int
	Int64N(int64) int64
}, safety time.Duration) []faults.Fault {
	var out []faults.Fault
	for at := 2 * time.Second; ; {
		d := time.Duration(3000+r.Int64N(5001)) * time.Millisecond
		if at+d > safety-2*time.Second {
			break
		}
		target := leaderTarget
		if r.IntN(3) == 0 {
			target = followerTarget
		}
		p := float64(50+r.IntN(251)) / 1000
		out = append(out, faults.Fault{At: at, Duration: d, Kind: faults.KindDiskError, Target: target, Probability: p})
		at += d + time.Duration(1000+r.Int64N(2001))*time.Millisecond
	}
	return out
}
