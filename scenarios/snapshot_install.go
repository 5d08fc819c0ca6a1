package scenarios

import (
	"time"

	"github.com/raftsnap/testbed/faults"
	"github.com/raftsnap/testbed/sim"
)

func init() {
	register(Scenario{
		Name: "snapshot-install",
		Description: "safety: under client load and light message loss, one node falls behind the leader's " +
			"compacted log, with an empty log (a new node added), a stale one (cut off, then back) or a " +
			"divergent one (an old leader that kept appending client writes while cut off); it must catch up " +
			"through InstallSnapshot while stream faults and, in half the seeds, a crash in the middle of " +
			"the transfer hit it; liveness: healed, every node reaches the leader's commit index within 30s",
		Nodes:    5,
		Safety:   40 * time.Second,
		Liveness: 30 * time.Second,
		Workload: installWorkload,
		// The script places the lag; the swarm adds link and stream faults.
		Kinds: kinds(linkKinds, streamKinds),
		Script: func(seed sim.Seed, nodes int, safety time.Duration) []faults.Fault {
			return planInstall(seed, nodes, safety).faults
		},
		Taps: func(seed sim.Seed, nodes int, safety time.Duration) []CrashTap {
			return planInstall(seed, nodes, safety).taps
		},
		Link: sim.LinkOptions{DelayMin: time.Millisecond, DelayMax: 5 * time.Millisecond, SnapshotBytesPerSecond: 16 << 20},
	})
}

// installWorkload writes values padded so that a snapshot is a few KiB,
// longer than the offsets the stream faults and crash taps draw.
var installWorkload = func() Workload {
	wl := DefaultWorkload
	wl.Keys = 32
	wl.ValueBytes = 128
	return wl
}()

// Ways a node falls behind the leader's compacted log.
const (
	lagEmpty     = iota // a fresh node joins: empty log
	lagStale            // cut off (isolated or crashed), then back: stale log
	lagDivergent        // the leader is cut off while clients write to it: divergent log
)

type plan struct {
	faults []faults.Fault
	taps   []CrashTap
}

// planInstall chooses, from the seed, how one node falls behind and when
// it catches up; aims a stream fault at its first catch-up; and in half the
// seeds arms a crash tap in the middle of that transfer (on the receiver
// mid-stream, on the sender mid-stream, or on the receiver mid-install).
//
// The divergent case is the one that matters most: an isolated leader keeps
// its lease for up to LeaderLeaseTimeout, and clients that still see it as
// leader send it writes, which it appends but cannot commit; the new
// leader's snapshot must then replace that log. It is also the case that
// hits hashicorp/raft#697 (see known.go).
func planInstall(seed sim.Seed, nodes int, safety time.Duration) plan {
	r := seed.Rand("script")
	p := plan{faults: []faults.Fault{backgroundLoss(r, safety)}}
	lag := r.IntN(3)
	var catchUp time.Duration // when the lagging node starts catching up
	target := nodeTarget(r.IntN(nodes))
	lagging := false // the tap must find the node: its index is not known now
	switch lag {
	case lagEmpty:
		// After a few snapshots and compactions, so that the new node
		// cannot be sent the log from the start.
		at := between(r, 8*time.Second, 12*time.Second)
		kind := faults.KindAddVoter
		if r.IntN(3) == 0 {
			kind = faults.KindAddLearner
		}
		target = nodeTarget(nodes)
		p.faults = append(p.faults, faults.Fault{At: at, Kind: kind, Target: target})
		catchUp = at
	case lagStale:
		at := 3 * time.Second
		down := min(between(r, 15*time.Second, 25*time.Second), safety-at-5*time.Second)
		cut := faults.Fault{At: at, Duration: down, Kind: faults.KindPartition, Target: target, Shape: faults.ShapeIsolate}
		if r.IntN(2) == 0 {
			cut = faults.Fault{At: at, Duration: down, Kind: faults.KindCrash, Target: target}
		}
		p.faults = append(p.faults, cut)
		catchUp = at + down
	case lagDivergent:
		at := between(r, 4*time.Second, 8*time.Second)
		down := min(between(r, 12*time.Second, 20*time.Second), safety-at-5*time.Second)
		p.faults = append(p.faults, faults.Fault{At: at, Duration: down, Kind: faults.KindPartition, Target: leaderTarget, Shape: faults.ShapeIsolate})
		catchUp = at + down
		lagging = true
	}
	// The stream fault is armed just before the node catches up, so it hits
	// the first InstallSnapshot body sent to it. (The old leader's index is
	// not known when the schedule is made; the swarm's stream faults cover
	// that case.)
	if !lagging {
		stream := faults.Fault{At: max(catchUp-time.Second, 0), Duration: 4 * time.Second, Kind: faults.KindSnapCorrupt,
			Target: target, OffsetBytes: r.Int64N(4096)}
		if lag == lagEmpty {
			stream.At = catchUp
		}
		if r.IntN(2) == 0 {
			stream.Kind = faults.KindSnapCut
		}
		p.faults = append(p.faults, stream)
	}
	if r.IntN(2) == 0 {
		tap := CrashTap{At: max(catchUp-500*time.Millisecond, 0), Target: target, Lagging: lagging,
			Point: CrashReceive, After: r.Int64N(6 << 10), Down: between(r, time.Second, 3*time.Second)}
		if lag == lagEmpty {
			tap.At = catchUp
		}
		switch r.IntN(4) {
		case 0:
			tap.Point, tap.Target, tap.Lagging = CrashSend, leaderTarget, false
		case 1:
			tap.Point, tap.After = CrashRestore, r.Int64N(40)
		}
		tap.PowerLoss, tap.UnsyncedDataPercent = crashKind(r)
		p.taps = append(p.taps, tap)
	}
	return p
}
