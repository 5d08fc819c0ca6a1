package scenarios

import (
	"time"

	"github.com/raftsnap/testbed/faults"
	"github.com/raftsnap/testbed/sim"
)

func init() {
	register(Scenario{
		Name: "leader-churn",
		Description: "safety: every 4-7s whoever leads is crashed, loses power or is paused for 1.5-4s, under " +
			"client load and the swarm's link faults; liveness: everything restarted and resumed, every node " +
			"reaches the leader's commit index within 30s",
		Nodes:    5,
		Safety:   40 * time.Second,
		Liveness: 30 * time.Second,
		Workload: installWorkload,
		Kinds:    linkKinds,
		Script:   churnScript,
		Link:     sim.LinkOptions{DelayMin: time.Millisecond, DelayMax: 5 * time.Millisecond, SnapshotBytesPerSecond: 16 << 20},
	})
}

// churnScript strikes the leader over and over. Each strike ends before the
// next starts, so at most one node is down at a time, and a new leader has
// usually been elected (and is the next one struck) in between.
func churnScript(seed sim.Seed, nodes int, safety time.Duration) []faults.Fault {
	r := seed.Rand("script")
	var out []faults.Fault
	for at := between(r, 3*time.Second, 5*time.Second); ; at += between(r, 4*time.Second, 7*time.Second) {
		f := faults.Fault{At: at, Duration: between(r, 1500*time.Millisecond, 4*time.Second), Target: leaderTarget}
		if f.End() > safety-time.Second {
			return out
		}
		switch r.IntN(5) {
		case 0, 1:
			f.Kind = faults.KindCrash
		case 2:
			f.Kind = faults.KindPowerLoss
			f.UnsyncedDataPercent = r.IntN(101)
		default:
			f.Kind = faults.KindPause
		}
		out = append(out, f)
	}
}
