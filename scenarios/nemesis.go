package scenarios

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftsnap/testbed/cluster"
	"github.com/raftsnap/testbed/faults"
	"github.com/raftsnap/testbed/sim"
)

// nemesis executes a fault schedule against a World: each fault starts at
// its virtual time and heals at its end. It runs on one goroutine, so its
// random choices (which follower, which minority) come from one seeded
// stream in program order.
type nemesis struct {
	w    *World
	rng  *rand.Rand
	base sim.LinkOptions
	// linkFaults are the active link faults, by schedule index.
	linkFaults map[int]faults.Fault
	// nodeIndex maps schedule node indexes to ids.
	nodeIndex func(int) raft.ServerID
	// addEngine picks the engine of a node added by a membership fault.
	addEngine func(int) string
	// taps are the crash taps to arm, each at its time.
	taps    []CrashTap
	skipped []string
	mu      sync.Mutex // guards skipped for the report
}

type step struct {
	at    time.Duration
	heal  bool
	tap   bool // index is into taps, not faults
	index int
}

// run executes s until every fault has healed. It returns the faults it
// skipped (target not live at the start, or not applicable), with reasons.
func (n *nemesis) run(s faults.Schedule, start time.Time) []string {
	var steps []step
	for i, f := range s.Faults {
		steps = append(steps, step{at: f.At, index: i})
		if f.Duration > 0 {
			steps = append(steps, step{at: f.End(), heal: true, index: i})
		}
	}
	for i, t := range n.taps {
		steps = append(steps, step{at: t.At, tap: true, index: i})
	}
	// Heals before starts at the same instant (the schedule's contract),
	// then faults before taps, then schedule order. One goroutine arms
	// taps and injects faults, so their order replays.
	rank := func(s step) int {
		switch {
		case s.heal:
			return 0
		case s.tap:
			return 2
		}
		return 1
	}
	sort.SliceStable(steps, func(a, b int) bool {
		if steps[a].at != steps[b].at {
			return steps[a].at < steps[b].at
		}
		return rank(steps[a]) < rank(steps[b])
	})
	heals := map[int]func(){}
	flapStop := map[int]chan struct{}{}
	var flapWG sync.WaitGroup
	for _, st := range steps {
		if d := time.Until(start.Add(st.at)); d > 0 {
			time.Sleep(d)
		}
		if st.tap {
			n.arm(n.taps[st.index])
			continue
		}
		f := s.Faults[st.index]
		if st.heal {
			if stop, ok := flapStop[st.index]; ok {
				close(stop)
				flapWG.Wait()
				delete(flapStop, st.index)
			}
			if h := heals[st.index]; h != nil {
				h()
				delete(heals, st.index)
				n.w.Trace.Record("", "heal", f.String())
			}
			continue
		}
		heal, err := n.start(st.index, f, flapStop, &flapWG)
		if err != nil {
			n.skip(f, err.Error())
			continue
		}
		n.w.CountFault(string(f.Kind))
		n.w.Trace.Record("", "fault", f.String())
		heals[st.index] = heal
	}
	for i, stop := range flapStop {
		close(stop)
		delete(flapStop, i)
	}
	flapWG.Wait()
	return n.skipped
}

// arm arms a crash tap on the node its target resolves to now.
func (n *nemesis) arm(t CrashTap) {
	var id raft.ServerID
	var err error
	if t.Lagging {
		id, err = n.lagging()
	} else {
		// A named node may be down: the tap waits for its restart.
		id, err = n.resolveTarget(t.Target, true)
	}
	if err != nil {
		n.w.Trace.Record("", "crash-point-skipped", fmt.Sprintf("%s: %v", t, err))
		return
	}
	n.w.ArmCrash(id, t)
}

// lagging is the live node whose state machine has applied the least (the
// first in creation order among equals).
func (n *nemesis) lagging() (raft.ServerID, error) {
	var best raft.ServerID
	var bestIndex uint64
	for _, nd := range n.w.Live() {
		if i := nd.FSM.Applied().Index; best == "" || i < bestIndex {
			best, bestIndex = nd.ID, i
		}
	}
	if best == "" {
		return "", fmt.Errorf("no live node")
	}
	return best, nil
}

func (n *nemesis) skip(f faults.Fault, why string) {
	n.mu.Lock()
	n.skipped = append(n.skipped, fmt.Sprintf("%s: %s", f, why))
	n.mu.Unlock()
	n.w.Trace.Record("", "fault-skipped", fmt.Sprintf("%s: %s", f, why))
}

// resolve turns a target into a live node id at this instant.
func (n *nemesis) resolve(t faults.Target) (raft.ServerID, error) { return n.resolveTarget(t, false) }

// resolveTarget is resolve, optionally accepting a named node that is down
// (a link or stream fault aimed at it waits for it to come back).
func (n *nemesis) resolveTarget(t faults.Target, allowDown bool) (raft.ServerID, error) {
	switch t.Role {
	case faults.RoleLeader:
		l := n.w.Leader()
		if l == nil {
			return "", fmt.Errorf("no leader")
		}
		return l.ID, nil
	case faults.RoleFollower:
		var followers []raft.ServerID
		leader := n.w.Leader()
		for _, nd := range n.w.Live() {
			if (leader == nil || nd.ID != leader.ID) && n.w.isVoter(nd.ID) {
				followers = append(followers, nd.ID)
			}
		}
		if len(followers) == 0 {
			return "", fmt.Errorf("no live follower")
		}
		return followers[n.rng.IntN(len(followers))], nil
	case faults.RoleNode:
		id := n.nodeIndex(t.Node)
		if allowDown && n.w.exists(id) && !n.w.removed(id) {
			return id, nil
		}
		if n.w.Node(id) == nil {
			return "", fmt.Errorf("%s is not running", id)
		}
		return id, nil
	}
	return "", fmt.Errorf("target %s does not name a node", t)
}

// start begins fault i and returns how to heal it.
func (n *nemesis) start(i int, f faults.Fault, flapStop map[int]chan struct{}, flapWG *sync.WaitGroup) (func(), error) {
	w := n.w
	switch f.Kind {
	case faults.KindLoss, faults.KindDelay, faults.KindDuplicate, faults.KindReorder:
		if f.Target.Role != faults.RoleAll {
			id, err := n.resolveTarget(f.Target, true)
			if err != nil {
				return nil, err
			}
			f.Target = faults.Target{Role: faults.RoleNode, Node: n.indexOf(id)}
		}
		n.linkFaults[i] = f
		n.applyLinks()
		return func() { delete(n.linkFaults, i); n.applyLinks() }, nil

	case faults.KindPartition, faults.KindFlap:
		id, err := n.resolve(f.Target)
		if err != nil {
			return nil, err
		}
		cut := n.partition(f.Shape, id)
		if f.Kind == faults.KindPartition {
			cut()
			return w.Net.HealAll, nil
		}
		stop := make(chan struct{})
		flapStop[i] = stop
		flapWG.Add(1)
		go func() {
			defer flapWG.Done()
			on := true
			cut()
			for {
				select {
				case <-stop:
					return
				case <-time.After(f.Period):
				}
				if on {
					w.Net.HealAll()
				} else {
					cut()
				}
				on = !on
			}
		}()
		return w.Net.HealAll, nil

	case faults.KindSnapCut, faults.KindSnapCorrupt, faults.KindSnapStall:
		id, err := n.resolveTarget(f.Target, true)
		if err != nil {
			return nil, err
		}
		sf := sim.StreamFault{Offset: f.OffsetBytes, Stall: f.Stall}
		switch f.Kind {
		case faults.KindSnapCut:
			sf.Kind = sim.StreamCut
		case faults.KindSnapCorrupt:
			sf.Kind = sim.StreamCorrupt
		default:
			sf.Kind = sim.StreamStall
		}
		for _, from := range w.IDs() {
			if from != id {
				w.Net.InjectStreamFault(from, id, sf)
			}
		}
		return func() {
			for _, from := range w.IDs() {
				if from != id {
					w.Net.ClearStreamFaults(from, id)
				}
			}
		}, nil

	case faults.KindCrash, faults.KindPowerLoss:
		id, err := n.resolve(f.Target)
		if err != nil {
			return nil, err
		}
		powerLoss := f.Kind == faults.KindPowerLoss
		if powerLoss && !w.takesPowerLoss(id) {
			// bbolt has no virtual filesystem to drop unsynced writes
			// from (nor has any node when engines are compared); it
			// gets a process crash.
			powerLoss = false
		}
		if powerLoss && w.engineOf(id) == EngineBbolt {
			// It strikes at the node's next sync (armPowerCut), and
			// the node restarts f.Duration after that.
			w.armPowerCut(id, 100-f.UnsyncedDataPercent, f.Duration)
			return func() { w.disarmPowerCut(id) }, nil
		}
		if err := w.Crash(id, powerLoss, 100-f.UnsyncedDataPercent); err != nil {
			return nil, err
		}
		return func() { n.restart(id) }, nil

	case faults.KindPause:
		id, err := n.resolve(f.Target)
		if err != nil {
			return nil, err
		}
		w.Net.Pause(id)
		return func() { w.Net.Resume(id) }, nil

	case faults.KindDiskError, faults.KindSlowDisk:
		id, err := n.resolve(f.Target)
		if err != nil {
			return nil, err
		}
		if w.commonFaults {
			return nil, fmt.Errorf("disk faults are left out when engines are compared")
		}
		disk := w.disk(id)
		if f.Kind == faults.KindDiskError {
			before, inc := disk.injected.Load(), w.incarnationOf(id)
			full, reads := disk.full.Load(), disk.reads.Load()
			disk.setErrorProbability(f.Probability)
			return func() {
				disk.setErrorProbability(0)
				injected := disk.injected.Load() - before
				w.Trace.Record(string(id), "disk-errors", fmt.Sprintf("injected=%d enospc=%d reads=%d",
					injected, disk.full.Load()-full, disk.reads.Load()-reads))
				// A write error in a file Pebble owns fail-stops the
				// node at once (simDisk.failStop). The others (snapshot
				// store, install staging) are handled where they
				// happen, but may leave a store that only recovers by
				// reopening, or a stopped state machine: restart from
				// what the disk holds, as for a process that died, any
				// node still running the instance that saw errors. One
				// that crashed and restarted since reopened already.
				nd := w.Node(id)
				if nd == nil {
					return
				}
				why := ""
				switch {
				case nd.Failed() != nil:
					why = nd.Failed().Error()
				case injected > 0 && w.incarnationOf(id) == inc:
					why = "after injected I/O errors"
				default:
					return
				}
				w.Trace.Record(string(id), "fail-stop", why)
				if err := w.Crash(id, false, 100); err == nil {
					n.restart(id)
				}
			}, nil
		}
		before := disk.delayed.Load()
		disk.setSyncDelay(f.DelayMin, f.DelayMax)
		return func() {
			disk.setSyncDelay(0, 0)
			w.Trace.Record(string(id), "slow-disk-syncs", fmt.Sprintf("delayed=%d", disk.delayed.Load()-before))
		}, nil

	case faults.KindSnapRot:
		id, err := n.resolve(f.Target)
		if err != nil {
			return nil, err
		}
		if w.commonFaults {
			return nil, fmt.Errorf("disk faults are left out when engines are compared")
		}
		rot := w.rotOf(id)
		before := rot.rotted.Load()
		rot.on.Store(true)
		return func() {
			rot.on.Store(false)
			w.Trace.Record(string(id), "snapshots-rotted", fmt.Sprintf("count=%d", rot.rotted.Load()-before))
		}, nil

	case faults.KindAddVoter, faults.KindAddLearner:
		leader := w.Leader()
		if leader == nil {
			return nil, fmt.Errorf("no leader")
		}
		id := n.nodeIndex(f.Target.Node)
		w.AddNode(id, n.addEngine(f.Target.Node))
		if err := w.Start(id); err != nil {
			return nil, err
		}
		var fut raft.IndexFuture
		if f.Kind == faults.KindAddVoter {
			fut = leader.Raft.AddVoter(id, raft.ServerAddress(id), 0, 5*time.Second)
		} else {
			fut = leader.Raft.AddNonvoter(id, raft.ServerAddress(id), 0, 5*time.Second)
		}
		if err := awaitWithin(leader, fut, membershipWait); err != nil {
			w.Trace.Record(string(id), "membership-error", err.Error())
			w.MarkJoining(id, f.Kind == faults.KindAddVoter)
		}
		return nil, nil

	case faults.KindRemoveNode:
		id, err := n.resolve(f.Target)
		if err != nil {
			return nil, err
		}
		leader := w.Leader()
		if leader == nil {
			return nil, fmt.Errorf("no leader")
		}
		if err := awaitWithin(leader, leader.Raft.RemoveServer(id, 0, 5*time.Second), membershipWait); err != nil {
			if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrEnqueueTimeout) ||
				errors.Is(err, raft.ErrLeadershipTransferInProgress) {
				return nil, fmt.Errorf("remove %s: %w", id, err) // refused: nothing changed
			}
			// The entry may be in the log and commit later under
			// another leader: settled in the liveness phase.
			w.MarkRemoving(id)
			w.Trace.Record(string(id), "membership-error", err.Error())
			return nil, nil
		}
		w.Remove(id)
		return nil, nil
	}
	return nil, fmt.Errorf("unknown fault kind %q", f.Kind)
}

func (n *nemesis) restart(id raft.ServerID) {
	if n.w.removed(id) {
		return
	}
	if err := n.w.Restart(id); err != nil {
		n.w.Trace.Record(string(id), "restart-error", n.w.errText(err))
	}
}

func (n *nemesis) indexOf(id raft.ServerID) int {
	for i := 0; ; i++ {
		if n.nodeIndex(i) == id {
			return i
		}
		if i > 1000 {
			return -1
		}
	}
}

// partition returns the function that cuts the network into shape around id.
func (n *nemesis) partition(shape faults.Shape, id raft.ServerID) func() {
	w := n.w
	others := slices.DeleteFunc(w.IDs(), func(o raft.ServerID) bool { return o == id || w.removed(o) })
	switch shape {
	case faults.ShapeMajorityMinority:
		// The minority: id plus enough others to stay a minority.
		all := len(others) + 1
		extra := (all-1)/2 - 1
		n.rng.Shuffle(len(others), func(a, b int) { others[a], others[b] = others[b], others[a] })
		minority := append([]raft.ServerID{id}, others[:max(extra, 0)]...)
		majority := slices.Clone(others[max(extra, 0):])
		return func() { w.Net.Partition(minority, majority) }
	case faults.ShapeBridge:
		n.rng.Shuffle(len(others), func(a, b int) { others[a], others[b] = others[b], others[a] })
		left, right := slices.Clone(others[:len(others)/2]), slices.Clone(others[len(others)/2:])
		return func() { w.Net.Bridge(id, left, right) }
	case faults.ShapeOneWayOut:
		return func() { w.Net.OneWay([]raft.ServerID{id}, others) }
	case faults.ShapeOneWayIn:
		return func() { w.Net.OneWay(others, []raft.ServerID{id}) }
	default: // isolate
		return func() { w.Net.Isolate(id) }
	}
}

// applyLinks sets every link's model to the base plus the active link
// faults that cover it.
func (n *nemesis) applyLinks() {
	ids := n.w.IDs()
	for _, a := range ids {
		for _, b := range ids {
			if a == b {
				continue
			}
			o := n.base
			for _, f := range n.linkFaults {
				if f.Target.Role == faults.RoleNode {
					t := n.nodeIndex(f.Target.Node)
					if t != a && t != b {
						continue
					}
				}
				switch f.Kind {
				case faults.KindLoss:
					o.LossProbability = max(o.LossProbability, f.Probability)
				case faults.KindDelay:
					o.DelayMin += f.DelayMin
					o.DelayMax += f.DelayMax
				case faults.KindDuplicate:
					o.DuplicateProbability = max(o.DuplicateProbability, f.Probability)
				case faults.KindReorder:
					o.ReorderProbability = max(o.ReorderProbability, f.Probability)
					o.ReorderDelayMax = max(o.ReorderDelayMax, f.DelayMax)
				}
			}
			n.w.Net.SetLink(a, b, o)
		}
	}
}

// membershipWait bounds how long the nemesis (and the liveness phase's
// settling) waits for raft to answer a membership change. The nemesis runs
// the schedule on one goroutine, so an unbounded wait there also holds
// back every later step, the heals included: swarm/Pebble 15 (on 71ac3e5,
// with snap-rot in the mix) removed the leader in the middle of a bridge
// partition while a delay fault kept one of the remaining voters out and
// another needed a snapshot; the change could not commit until those
// faults healed, the nemesis that would heal them waited on it, and the
// run went on in virtual time for ever (a hung worker in wall time).
// Past the bound the change is left pending, as one that failed
// ambiguously, and settled in the liveness phase.
const membershipWait = 30 * time.Second

// errUnanswered is the error of a future raft did not answer within the
// bound of awaitWithin.
var errUnanswered = errors.New("raft did not answer the membership change within " + membershipWait.String())

// awaitWithin is n.Await(f), waiting at most d of virtual time; past that
// it returns errUnanswered. The goroutine left waiting on f ends when raft
// answers it, or when n shuts down (cluster.Node.Await answers what raft
// left unanswered), so before the run's bubble ends.
func awaitWithin(n *cluster.Node, f raft.Future, d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- n.Await(f) }()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
	}
	// An answer that came at the same instant as the bound counts, so
	// that Go's random choice between ready cases decides nothing.
	select {
	case err := <-done:
		return err
	default:
		return errUnanswered
	}
}
