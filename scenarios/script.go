package scenarios

import (
	"math/rand/v2"
	"time"

	"github.com/raftsnap/testbed/faults"
)

// Helpers for the scenarios' scripts: targets, seeded durations and the
// faults several scenarios share.

func nodeTarget(i int) faults.Target { return faults.Target{Role: faults.RoleNode, Node: i} }

var (
	leaderTarget   = faults.Target{Role: faults.RoleLeader}
	followerTarget = faults.Target{Role: faults.RoleFollower}
	allLinks       = faults.Target{Role: faults.RoleAll}
)

// between draws a duration in [lo, hi], in whole milliseconds (the unit of
// saved schedules).
func between(r *rand.Rand, lo, hi time.Duration) time.Duration {
	lo, hi = lo.Truncate(time.Millisecond), hi.Truncate(time.Millisecond)
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(r.Int64N(int64((hi-lo)/time.Millisecond)+1))*time.Millisecond
}

// backgroundLoss loses a little of every link's traffic for most of the
// safety phase, so that catching up happens while the network misbehaves.
func backgroundLoss(r *rand.Rand, safety time.Duration) faults.Fault {
	p := float64(5+r.IntN(21)) / 1000 // 0.5% to 2.5%
	return faults.Fault{At: time.Second, Duration: safety - 2*time.Second, Kind: faults.KindLoss, Target: allLinks, Probability: p}
}

// crashKind draws a process crash or, with probability 1/3, a power loss
// dropping a drawn share of unsynced data.
func crashKind(r *rand.Rand) (powerLoss bool, unsyncedPercent int) {
	if r.IntN(3) == 0 {
		return true, r.IntN(101)
	}
	return false, 0
}

// linkKinds are the network faults a swarm may add on top of a script.
var linkKinds = []faults.Kind{faults.KindLoss, faults.KindDelay, faults.KindDuplicate, faults.KindReorder}

// streamKinds are the InstallSnapshot body faults.
var streamKinds = []faults.Kind{faults.KindSnapCut, faults.KindSnapCorrupt, faults.KindSnapStall}

func kinds(groups ...[]faults.Kind) []faults.Kind {
	var out []faults.Kind
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}
