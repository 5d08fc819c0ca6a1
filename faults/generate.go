package faults

import (
	"cmp"
	"math/bits"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/raftsnap/testbed/sim"
	"pgregory.net/rapid"
)

const (
	// maxArrivalsPerKind guards against absurd rates: a kind stops drawing
	// arrivals after this many.
	maxArrivalsPerKind = 10000
	// maxDrawnFaults is how many faults Draw asks rapid for at most.
	maxDrawnFaults = 16
	// maxPick bounds the draw that chooses among the candidates for a random
	// node; anything above the largest cluster size will do.
	maxPick = 63
)

// Generate is the nemesis: it turns seed into the fault schedule of a run of
// a cluster of nodes whose safety phase lasts safety, with the kinds, rates
// and ranges of mix. Each enabled kind has Poisson arrivals at its rate, from
// its own stream (seed.Child("faults").Rand("arrivals/"+kind)), so turning a
// kind on or off does not move the others' faults. Every fault is clipped to
// heal by safety; arrivals that would break a constraint of the package doc
// are dropped. Times are whole milliseconds. The result always validates,
// and the same arguments give the same schedule.
//
// Schedule.Mix records mix as used: unknown kinds dropped, zero ranges
// replaced by the defaults. Nodes outside [1, MaxVoters] or a non-positive
// safety give no faults (and nodes outside that range do not validate).
func Generate(seed sim.Seed, nodes int, safety time.Duration, mix Mix) Schedule {
	mix = mix.normalized()
	s := Schedule{Seed: uint64(seed), Nodes: nodes, Duration: safety, Mix: mix}
	if nodes < 1 || nodes > MaxVoters || safety <= 0 {
		return s
	}
	base := seed.Child("faults")
	var cands []candidate
	for _, k := range mix.enabled() {
		r := base.Rand("arrivals/" + string(k))
		perNanosecond := mix.RatePerMinute[k] / float64(time.Minute)
		t := 0.0
		for range maxArrivalsPerKind {
			t += r.ExpFloat64() / perNanosecond
			if t >= float64(safety) {
				break
			}
			at := time.Duration(t).Truncate(time.Millisecond)
			if c, ok := drawFault(randSource{r}, k, at, safety, mix.Ranges); ok {
				cands = append(cands, c)
			}
		}
	}
	s.Faults = admit(nodes, cands)
	return s
}

// Draw builds a schedule from rapid's generators, for property tests: rapid
// chooses the number of faults, their kinds (among kinds), times, durations,
// targets and parameters (within [DefaultRanges]), so rapid's shrinker
// minimizes a failing schedule. Faults that would break a constraint are
// dropped, so the result always validates. Seed and Mix are zero.
func Draw(t *rapid.T, nodes int, safety time.Duration, kinds []Kind) Schedule {
	s := Schedule{Nodes: nodes, Duration: safety}
	var known []Kind
	for _, k := range kinds {
		if k.Valid() && !slices.Contains(known, k) {
			known = append(known, k)
		}
	}
	if nodes < 1 || nodes > MaxVoters || safety < time.Millisecond || len(known) == 0 {
		return s
	}
	src := rapidSource{t}
	rg := DefaultRanges()
	n := rapid.IntRange(0, maxDrawnFaults).Draw(t, "faults")
	var cands []candidate
	for range n {
		k := rapid.SampledFrom(known).Draw(t, "kind")
		at := ms(src.between(0, int64(safety/time.Millisecond)-1, "at_ms"))
		if c, ok := drawFault(src, k, at, safety, rg); ok {
			cands = append(cands, c)
		}
	}
	s.Faults = admit(nodes, cands)
	return s
}

// source is where drawFault gets its choices: a seeded generator (Generate)
// or rapid's bitstream (Draw).
type source interface {
	// between returns an integer in [lo, hi]; lo <= hi.
	between(lo, hi int64, label string) int64
}

type randSource struct{ r *rand.Rand }

func (s randSource) between(lo, hi int64, _ string) int64 { return lo + s.r.Int64N(hi-lo+1) }

type rapidSource struct{ t *rapid.T }

func (s rapidSource) between(lo, hi int64, label string) int64 {
	return rapid.Int64Range(lo, hi).Draw(s.t, label)
}

func ms(n int64) time.Duration { return time.Duration(n) * time.Millisecond }

func msOf(d time.Duration) int64 { return int64(d / time.Millisecond) }

// candidate is a drawn fault before admission. role is the target role drawn
// (RoleNode: a random node, resolved by admit to members[pick % len]).
type candidate struct {
	f    Fault
	role Role
	pick int
}

// drawFault draws a fault of kind k starting at at; its duration is clipped to
// end. It reports false when the fault would be too short to exist.
func drawFault(src source, k Kind, at, end time.Duration, rg Ranges) (candidate, bool) {
	ki, _ := info(k)
	c := candidate{f: Fault{At: at, Kind: k}}
	if !ki.instant {
		d := ms(src.between(msOf(rg.DurationMin), max(msOf(rg.DurationMin), msOf(rg.DurationMax)), "duration_ms"))
		d = min(d, end-at)
		if d < time.Millisecond {
			return c, false
		}
		c.f.Duration = d
	}
	c.role = ki.roles[src.between(0, int64(len(ki.roles)-1), "role")]
	c.pick = int(src.between(0, maxPick, "pick"))
	f := &c.f
	switch k {
	case KindPartition:
		f.Shape = shapes[src.between(0, int64(len(shapes)-1), "shape")]
	case KindFlap:
		f.Shape = shapes[src.between(0, int64(len(shapes)-1), "shape")]
		p := ms(src.between(msOf(rg.PeriodMin), max(msOf(rg.PeriodMin), msOf(rg.PeriodMax)), "period_ms"))
		// At least one full on-off cycle when the flap is long enough.
		if half := (f.Duration / 2).Truncate(time.Millisecond); p > half {
			p = half
		}
		if p <= 0 {
			p = f.Duration
		}
		f.Period = p
	case KindLoss, KindDuplicate:
		f.Probability = permille(src, rg.ProbabilityMax)
	case KindReorder:
		f.Probability = permille(src, rg.ProbabilityMax)
		f.DelayMax = ms(src.between(1, max(1, msOf(rg.NetDelayMax)), "delay_max_ms"))
	case KindDelay:
		f.DelayMin, f.DelayMax = delayRange(src, rg.NetDelayMax)
	case KindSlowDisk:
		f.DelayMin, f.DelayMax = delayRange(src, rg.SyncDelayMax)
	case KindDiskError:
		f.Probability = permille(src, rg.DiskErrorProbabilityMax)
	case KindSnapCut, KindSnapCorrupt:
		f.OffsetBytes = logUniform(src, rg.OffsetBytesMax)
	case KindSnapStall:
		f.OffsetBytes = logUniform(src, rg.OffsetBytesMax)
		f.Stall = ms(src.between(1, max(1, msOf(rg.StallMax)), "stall_ms"))
	case KindPowerLoss:
		f.UnsyncedDataPercent = int(src.between(0, int64(rg.UnsyncedDataPercentMax), "unsynced_percent"))
	}
	return c, true
}

// permille draws a probability in [0.001, pmax] in steps of 0.001, which
// keeps the text form short; 0 would make the fault a no-op.
func permille(src source, pmax float64) float64 {
	return float64(src.between(1, max(1, int64(pmax*1000)), "permille")) / 1000
}

func delayRange(src source, dmax time.Duration) (lo, hi time.Duration) {
	top := msOf(dmax)
	l := src.between(0, top, "delay_min_ms")
	return ms(l), ms(src.between(l, top, "delay_max_ms"))
}

// logUniform draws from [0, vmax] so that each power of two is as likely as
// the next: small offsets (a stream's header) come up as often as large ones.
func logUniform(src source, vmax int64) int64 {
	if vmax <= 0 {
		return 0
	}
	b := src.between(0, int64(bits.Len64(uint64(vmax))), "offset_bits")
	hi := vmax
	if b < 63 {
		hi = min(vmax, int64(1)<<b-1)
	}
	return src.between(0, hi, "offset_bytes")
}

// admit sorts the candidates by start time and keeps those the constraints
// allow, resolving random nodes and the indexes of added nodes on the way.
func admit(nodes int, cands []candidate) []Fault {
	slices.SortStableFunc(cands, func(a, b candidate) int { return cmp.Compare(a.f.At, b.f.At) })
	tr := newTracker(nodes)
	var out []Fault
	for _, c := range cands {
		f := c.f
		tr.advance(f.At)
		switch {
		case isAdd(f.Kind):
			i, ok := tr.nextIndex()
			if !ok {
				continue
			}
			f.Target = Target{Role: RoleNode, Node: i}
		case c.role == RoleNode:
			m := tr.members(f.Kind)
			if len(m) == 0 {
				continue
			}
			f.Target = Target{Role: RoleNode, Node: m[c.pick%len(m)]}
		default:
			f.Target = Target{Role: c.role}
		}
		if tr.check(f) != nil {
			continue
		}
		tr.apply(f)
		out = append(out, f)
	}
	return out
}
