package scenarios

import (
	"time"

	"github.com/raftsnap/testbed/faults"
	"github.com/raftsnap/testbed/sim"
)

func init() {
	register(Scenario{
		Name: "snapshot-crash",
		Description: "safety: three rounds in which a follower is cut off until the leader has compacted past it, " +
			"and a node crashes (process crash or power loss) at a step of the snapshot path: while persisting a " +
			"snapshot, while the leader streams it, mid-stream on the receiver, mid-install, or right after the " +
			"install; liveness: healed and restarted, every node reaches the leader's commit index within 30s",
		Nodes:    5,
		Safety:   54 * time.Second,
		Liveness: 30 * time.Second,
		Workload: crashWorkload,
		Kinds:    []faults.Kind{faults.KindLoss, faults.KindDelay},
		Script: func(seed sim.Seed, nodes int, safety time.Duration) []faults.Fault {
			return planCrash(seed, nodes, safety).faults
		},
		Taps: func(seed sim.Seed, nodes int, safety time.Duration) []CrashTap {
			return planCrash(seed, nodes, safety).taps
		},
		Link: sim.LinkOptions{DelayMin: time.Millisecond, DelayMax: 5 * time.Millisecond, SnapshotBytesPerSecond: 16 << 20},
	})
}

// crashWorkload makes snapshots of about 10 KiB (64 keys of 128-byte
// values): several bbolt staging transactions and Pebble staged sstables
// per install (see simStagingTxBytes), and room for byte offsets.
var crashWorkload = func() Workload {
	wl := DefaultWorkload
	wl.Keys = 64
	wl.ValueBytes = 128
	return wl
}()

// crashRound is how long one round of snapshot-crash lasts.
const crashRound = 16 * time.Second

// planCrash plays rounds of crashRound from t=3s. Each round uses the next
// of the crash points in a seed-shuffled order (so every seed covers three
// of them and the seeds together cover all, with either kind of crash):
//
//   - persist, barrier, referenced: the tap is armed on the leader (or, in
//     a third of the rounds, on a follower) and fires in its next local
//     snapshot (barrier and referenced are steps of the zero-copy store,
//     and never fire on a node that copies);
//   - send, receive, restore, installed: a follower is isolated for 8-11 s,
//     long enough for the leader to compact past it; just before it heals
//     the tap is armed on the leader (send) or on that follower, which
//     crashes in the InstallSnapshot that brings it back.
//
// The crashed node restarts after 1-4 s.
func planCrash(seed sim.Seed, nodes int, safety time.Duration) plan {
	r := seed.Rand("script")
	points := CrashPoints()
	r.Shuffle(len(points), func(a, b int) { points[a], points[b] = points[b], points[a] })
	var p plan
	for round, at := 0, 3*time.Second; at+crashRound <= safety; round, at = round+1, at+crashRound {
		tap := CrashTap{Point: points[round%len(points)], Down: between(r, time.Second, 4*time.Second)}
		tap.PowerLoss, tap.UnsyncedDataPercent = crashKind(r)
		if tap.Point == CrashRestore {
			tap.After = r.Int64N(72) // pairs; past the end fires at the end
		} else {
			tap.After = r.Int64N(12 << 10) // bytes
		}
		switch tap.Point {
		case CrashInstalled, CrashBarrier, CrashReferenced:
			tap.After = 0 // drawn all the same, so that seeds keep their plans
		}
		if tap.Point == CrashPersist || tap.Point == CrashBarrier || tap.Point == CrashReferenced {
			tap.At, tap.Target = at, leaderTarget
			if r.IntN(3) == 0 {
				tap.Target = followerTarget
			}
			p.taps = append(p.taps, tap)
			continue
		}
		victim := nodeTarget(r.IntN(nodes))
		cut := between(r, 8*time.Second, 11*time.Second)
		p.faults = append(p.faults, faults.Fault{At: at, Duration: cut, Kind: faults.KindPartition, Target: victim, Shape: faults.ShapeIsolate})
		tap.At, tap.Target = at+cut-300*time.Millisecond, victim
		if tap.Point == CrashSend {
			tap.Target = leaderTarget
		}
		// The victim may have been the leader when it was cut off; then
		// another node leads by now and the victim is the one behind.
		p.taps = append(p.taps, tap)
	}
	return p
}
