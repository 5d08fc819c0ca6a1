package faults

import (
	"cmp"
	"maps"
	"math"
	"slices"
	"time"
)

// minShrinkDuration is the shortest duration Candidates halves a fault to:
// below it a fault hardly differs from none, which dropping it already tries.
const minShrinkDuration = 100 * time.Millisecond

// Without returns s without its fault i, and without the faults that name by
// index the node fault i added, if it was an add-voter or add-learner (they
// would target a node that never exists). An i out of range drops nothing.
// s is not modified.
func (s Schedule) Without(i int) Schedule {
	return s.without(func(j int) bool { return j == i })
}

func (s Schedule) without(drop func(int) bool) Schedule {
	out := s
	out.Mix.RatePerMinute = maps.Clone(s.Mix.RatePerMinute)
	out.Faults = nil
	gone := make(map[int]bool) // nodes whose addition was dropped
	for j, f := range s.Faults {
		if drop(j) {
			if isAdd(f.Kind) {
				gone[f.Target.Node] = true
			}
			continue
		}
		if !isAdd(f.Kind) && f.Target.Role == RoleNode && gone[f.Target.Node] {
			continue
		}
		out.Faults = append(out.Faults, f)
	}
	return out
}

// with returns s with fault i replaced by f, kept sorted by start time
// (f may start later than the fault it replaces).
func (s Schedule) with(i int, f Fault) Schedule {
	out := s
	out.Mix.RatePerMinute = maps.Clone(s.Mix.RatePerMinute)
	out.Faults = slices.Clone(s.Faults)
	out.Faults[i] = f
	slices.SortStableFunc(out.Faults, func(a, b Fault) int { return cmp.Compare(a.At, b.At) })
	return out
}

// Candidates returns smaller variants of s for greedy delta debugging, larger
// steps first: keep only the first or the second half of the faults (four or
// more), drop each fault ([Schedule.Without]), then make each fault milder one
// parameter at a time (halve its duration, keeping its first or its second
// half, or halve its probability, delays, stall, byte
// offset or unsynced percent, or zero its offset or minimum delay). Every
// candidate validates and is smaller than s: fewer faults, or the same faults
// with one quantity lower and none higher. Halving stops at thresholds
// (durations at 100ms, probabilities at 0.001, delays at 1ms), so repeatedly
// taking a candidate ends. A shrinker keeps the first candidate that still
// fails and asks it for candidates in turn, until none fails.
func (s Schedule) Candidates() []Schedule {
	var out []Schedule
	add := func(c Schedule) {
		if c.Validate() == nil {
			out = append(out, c)
		}
	}
	n := len(s.Faults)
	if n >= 4 {
		add(s.without(func(j int) bool { return j >= n/2 }))
		add(s.without(func(j int) bool { return j < n/2 }))
	}
	for i := range n {
		add(s.Without(i))
	}
	for i, f := range s.Faults {
		for _, g := range f.milder() {
			add(s.with(i, g))
		}
	}
	return out
}

// milder returns variants of f with one quantity lowered.
func (f Fault) milder() []Fault {
	var out []Fault
	vary := func(change func(g *Fault)) {
		g := f
		change(&g)
		out = append(out, g)
	}
	if half := (f.Duration / 2).Truncate(time.Millisecond); f.Duration > 0 && half >= minShrinkDuration {
		vary(func(g *Fault) {
			g.Duration = half
			g.Period = min(g.Period, half) // a flap's period must fit in it
		})
		// The later half, too: what makes a run fail may happen late in a
		// long fault (a lost reply the client retries), and halving from
		// the start alone cannot reach it.
		vary(func(g *Fault) {
			g.At += f.Duration - half
			g.Duration = half
			g.Period = min(g.Period, half)
		})
	}
	if q := math.Floor(f.Probability*500) / 1000; q > 0 && q < f.Probability {
		vary(func(g *Fault) { g.Probability = q })
	}
	if half := (f.DelayMax / 2).Truncate(time.Millisecond); half > 0 && half < f.DelayMax {
		vary(func(g *Fault) {
			g.DelayMax = half
			g.DelayMin = min(g.DelayMin, half)
		})
	}
	if f.DelayMin > 0 {
		vary(func(g *Fault) { g.DelayMin = 0 })
	}
	if f.OffsetBytes > 0 {
		vary(func(g *Fault) { g.OffsetBytes = 0 })
		if f.OffsetBytes > 1 {
			vary(func(g *Fault) { g.OffsetBytes /= 2 })
		}
	}
	if half := (f.Stall / 2).Truncate(time.Millisecond); half > 0 && half < f.Stall {
		vary(func(g *Fault) { g.Stall = half })
	}
	if f.UnsyncedDataPercent > 0 {
		vary(func(g *Fault) { g.UnsyncedDataPercent /= 2 })
	}
	return out
}
