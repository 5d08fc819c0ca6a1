package faults

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/raftsnap/testbed/sim"
)

// Mix is the swarm options of a run: which fault kinds are on, how often
// they happen and the ranges their durations and parameters are drawn from.
// The zero Mix has no faults.
type Mix struct {
	// RatePerMinute is the mean number of faults of each kind per virtual
	// minute of the safety phase. A kind that is absent or at 0 is off.
	// Arrivals that would break a constraint are dropped, so the realized
	// rate can be lower.
	RatePerMinute map[Kind]float64
	// Ranges bound what the nemesis draws for each fault.
	Ranges Ranges
}

// Ranges bound the durations and parameters of generated faults. A zero field
// takes its value from [DefaultRanges], so the zero Ranges is the default.
type Ranges struct {
	// DurationMin and DurationMax bound the duration of every fault that
	// lasts (clipped to the end of the safety phase).
	DurationMin, DurationMax time.Duration
	// PeriodMin and PeriodMax bound a flap's half cycle.
	PeriodMin, PeriodMax time.Duration
	// ProbabilityMax bounds the loss, duplicate and reorder probabilities,
	// drawn from [0, ProbabilityMax].
	ProbabilityMax float64
	// DiskErrorProbabilityMax bounds a disk-error's per-I/O probability.
	DiskErrorProbabilityMax float64
	// NetDelayMax bounds the extra delay of delay and reorder faults.
	NetDelayMax time.Duration
	// SyncDelayMax bounds the per-sync latency of slow-disk.
	SyncDelayMax time.Duration
	// StallMax bounds how long a snap-stall stops a snapshot body.
	StallMax time.Duration
	// OffsetBytesMax bounds the offset of snap-* faults; offsets are drawn
	// log-uniformly so that the stream's header is hit often.
	OffsetBytesMax int64
	// UnsyncedDataPercentMax bounds a power-loss's UnsyncedDataPercent.
	UnsyncedDataPercentMax int
}

// DefaultRanges returns the ranges a zero [Ranges] field stands for.
func DefaultRanges() Ranges {
	return Ranges{
		DurationMin:             time.Second,
		DurationMax:             20 * time.Second,
		PeriodMin:               500 * time.Millisecond,
		PeriodMax:               5 * time.Second,
		ProbabilityMax:          0.3,
		DiskErrorProbabilityMax: 0.05,
		NetDelayMax:             500 * time.Millisecond,
		SyncDelayMax:            100 * time.Millisecond,
		// Beyond raft's default InstallSnapshot timeout (sim's 10 x RPC
		// timeout), so some stalls make the sender give up.
		StallMax:               15 * time.Second,
		OffsetBytesMax:         1 << 20,
		UnsyncedDataPercentMax: 100,
	}
}

// DrawMix draws a swarm mix from seed: each kind of enabled is on with
// probability 1/2 (at least one is on if enabled names any known kind), with
// a rate log-uniform in [0.5, 8) per minute; the ranges of durations,
// probabilities and delays are drawn too, so seeds differ in intensity as
// well as in kinds. Unknown kinds in enabled are ignored. The caller logs
// the result before the run.
func DrawMix(seed sim.Seed, enabled []Kind) Mix {
	r := seed.Child("faults").Rand("mix")
	var known []Kind
	for _, k := range enabled {
		if k.Valid() && !slices.Contains(known, k) {
			known = append(known, k)
		}
	}
	m := Mix{}
	if len(known) == 0 {
		return m
	}
	var on []Kind
	for _, k := range known {
		if r.IntN(2) == 0 {
			on = append(on, k)
		}
	}
	if len(on) == 0 {
		on = append(on, known[r.IntN(len(known))])
	}
	m.RatePerMinute = make(map[Kind]float64, len(on))
	for _, k := range on {
		m.RatePerMinute[k] = roundTo(0.5*math.Pow(16, r.Float64()), 100)
	}
	rg := DefaultRanges()
	rg.DurationMax = time.Duration(2000+r.IntN(28001)) * time.Millisecond
	rg.ProbabilityMax = roundTo(0.05+0.45*r.Float64(), 100)
	rg.NetDelayMax = time.Duration(20+r.IntN(1981)) * time.Millisecond
	rg.PeriodMax = time.Duration(1000+r.IntN(9001)) * time.Millisecond
	m.Ranges = rg
	return m
}

func roundTo(x, scale float64) float64 { return math.Round(x*scale) / scale }

// enabled returns the kinds that are on, in canonical order.
func (m Mix) enabled() []Kind {
	var out []Kind
	for _, ki := range kinds {
		if r := m.RatePerMinute[ki.kind]; r > 0 {
			out = append(out, ki.kind)
		}
	}
	return out
}

// normalized returns m as Generate uses it: unknown kinds and rates that are
// not positive and finite dropped, zero ranges replaced by the defaults,
// maxima raised to their minima and probabilities clamped to [0, 1].
func (m Mix) normalized() Mix {
	out := Mix{Ranges: m.Ranges.normalized()}
	for k, r := range m.RatePerMinute {
		if k.Valid() && r > 0 && !math.IsInf(r, 0) {
			if out.RatePerMinute == nil {
				out.RatePerMinute = make(map[Kind]float64)
			}
			out.RatePerMinute[k] = r
		}
	}
	return out
}

func (r Ranges) normalized() Ranges {
	d := DefaultRanges()
	dur := func(x *time.Duration, def time.Duration) {
		if *x <= 0 {
			*x = def
		}
	}
	prob := func(x *float64, def float64) {
		if !(*x > 0) { // NaN too
			*x = def
		}
		*x = min(*x, 1)
	}
	dur(&r.DurationMin, d.DurationMin)
	dur(&r.DurationMax, d.DurationMax)
	r.DurationMax = max(r.DurationMax, r.DurationMin)
	dur(&r.PeriodMin, d.PeriodMin)
	dur(&r.PeriodMax, d.PeriodMax)
	r.PeriodMax = max(r.PeriodMax, r.PeriodMin)
	prob(&r.ProbabilityMax, d.ProbabilityMax)
	prob(&r.DiskErrorProbabilityMax, d.DiskErrorProbabilityMax)
	dur(&r.NetDelayMax, d.NetDelayMax)
	dur(&r.SyncDelayMax, d.SyncDelayMax)
	dur(&r.StallMax, d.StallMax)
	if r.OffsetBytesMax <= 0 {
		r.OffsetBytesMax = d.OffsetBytesMax
	}
	if r.UnsyncedDataPercentMax <= 0 {
		r.UnsyncedDataPercentMax = d.UnsyncedDataPercentMax
	}
	r.UnsyncedDataPercentMax = min(r.UnsyncedDataPercentMax, 100)
	return r
}

func (m Mix) validate() error {
	for k, r := range m.RatePerMinute {
		if !k.Valid() {
			return fmt.Errorf("%w: %w %q", ErrMix, ErrUnknownKind, k)
		}
		if !(r >= 0) || math.IsInf(r, 0) {
			return fmt.Errorf("%w: rate of %s = %v", ErrMix, k, r)
		}
	}
	g := m.Ranges
	for _, d := range []time.Duration{g.DurationMin, g.DurationMax, g.PeriodMin, g.PeriodMax, g.NetDelayMax, g.SyncDelayMax, g.StallMax} {
		if d < 0 {
			return fmt.Errorf("%w: %w in ranges", ErrMix, ErrNegativeTime)
		}
	}
	if !validProbability(g.ProbabilityMax) || !validProbability(g.DiskErrorProbabilityMax) {
		return fmt.Errorf("%w: %w in ranges", ErrMix, ErrProbability)
	}
	if g.OffsetBytesMax < 0 || g.UnsyncedDataPercentMax < 0 || g.UnsyncedDataPercentMax > 100 {
		return fmt.Errorf("%w: offset or percent out of range", ErrMix)
	}
	return nil
}

// String is a one-line form of m for logs, e.g.
// "crash=2.5/min loss=1.2/min; duration=1s..20s period=500ms..5s ...".
// The zero Mix gives "".
func (m Mix) String() string {
	on := m.enabled()
	if len(on) == 0 {
		return ""
	}
	var b strings.Builder
	for i, k := range on {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(string(k) + "=" + strconv.FormatFloat(m.RatePerMinute[k], 'g', -1, 64) + "/min")
	}
	g := m.Ranges
	fmt.Fprintf(&b, "; duration=%v..%v period=%v..%v p<=%v disk-p<=%v net-delay<=%v sync-delay<=%v stall<=%v offset<=%dB unsynced<=%d%%",
		g.DurationMin, g.DurationMax, g.PeriodMin, g.PeriodMax, g.ProbabilityMax, g.DiskErrorProbabilityMax,
		g.NetDelayMax, g.SyncDelayMax, g.StallMax, g.OffsetBytesMax, g.UnsyncedDataPercentMax)
	return b.String()
}
