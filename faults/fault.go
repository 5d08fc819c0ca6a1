package faults

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Fault is one fault of a schedule. Only the parameter fields its Kind uses
// (see the Kind constants) may be non-zero.
type Fault struct {
	// At is when the fault starts, in virtual time from the run's start.
	At time.Duration
	// Duration is how long it lasts; it heals at At+Duration. Zero for the
	// instantaneous membership kinds, positive for every other kind.
	Duration time.Duration
	Kind     Kind
	Target   Target

	// Shape is the form of a partition or flap.
	Shape Shape
	// Period is how long a flap stays on, then off, in turn.
	Period time.Duration
	// Probability is the per-message (loss, duplicate, reorder) or per-I/O
	// (disk-error) chance, in [0, 1].
	Probability float64
	// DelayMin and DelayMax bound an extra latency: per message for delay
	// (and DelayMax alone for reorder), per sync for slow-disk.
	DelayMin, DelayMax time.Duration
	// OffsetBytes is where in an InstallSnapshot body a snap-* fault hits.
	OffsetBytes int64
	// Stall is how long a snap-stall stops the body.
	Stall time.Duration
	// UnsyncedDataPercent is the chance, in percent, that a power-loss drops
	// each unsynced block, in [0, 100] (the complement of Pebble's field of
	// the same name; see KindPowerLoss).
	UnsyncedDataPercent int
}

// End is when the fault heals: At+Duration.
func (f Fault) End() time.Duration { return f.At + f.Duration }

// String is the fault's line in a schedule's text form, e.g.
// "t=12.5s +4s crash target=follower".
func (f Fault) String() string {
	var b strings.Builder
	b.WriteString("t=")
	b.WriteString(f.At.String())
	if f.Duration != 0 {
		b.WriteString(" +")
		b.WriteString(f.Duration.String())
	}
	b.WriteString(" ")
	b.WriteString(string(f.Kind))
	b.WriteString(" target=")
	b.WriteString(f.Target.String())
	// A kind's parameters are printed even when zero (p=0 says the fault is
	// harmless); others only when set, which Validate rejects anyway.
	ki, _ := info(f.Kind)
	uses := func(p param, set bool) bool { return ki.params&p != 0 || set }
	if uses(pShape, f.Shape != "") {
		b.WriteString(" shape=" + string(f.Shape))
	}
	if uses(pPeriod, f.Period != 0) {
		b.WriteString(" period=" + f.Period.String())
	}
	if uses(pProbability, f.Probability != 0) {
		b.WriteString(" p=" + strconv.FormatFloat(f.Probability, 'g', -1, 64))
	}
	switch {
	case uses(pDelayMin, f.DelayMin != 0):
		b.WriteString(" delay=" + f.DelayMin.String() + ".." + f.DelayMax.String())
	case uses(pDelayMax, f.DelayMax != 0):
		b.WriteString(" delay<=" + f.DelayMax.String())
	}
	if uses(pOffset, f.OffsetBytes != 0) {
		b.WriteString(" offset=" + strconv.FormatInt(f.OffsetBytes, 10) + "B")
	}
	if uses(pStall, f.Stall != 0) {
		b.WriteString(" stall=" + f.Stall.String())
	}
	if uses(pPercent, f.UnsyncedDataPercent != 0) {
		b.WriteString(" unsynced=" + strconv.Itoa(f.UnsyncedDataPercent) + "%")
	}
	return b.String()
}

// check finds what is wrong with f on its own, whatever the schedule around
// it; end is the end of the safety phase.
func (f Fault) check(end time.Duration) error {
	ki, ok := info(f.Kind)
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownKind, f.Kind)
	}
	switch {
	case f.At < 0:
		return fmt.Errorf("%w: at = %v", ErrNegativeTime, f.At)
	case f.Duration < 0:
		return fmt.Errorf("%w: duration = %v", ErrNegativeTime, f.Duration)
	case f.At >= end:
		return fmt.Errorf("%w: starts at %v, safety phase ends at %v", ErrPastEnd, f.At, end)
	case f.Duration > end-f.At:
		return fmt.Errorf("%w: heals at %v, safety phase ends at %v", ErrPastEnd, f.End(), end)
	case ki.instant && f.Duration != 0:
		return fmt.Errorf("%w: %s is instantaneous, duration = %v", ErrParam, f.Kind, f.Duration)
	case !ki.instant && f.Duration == 0:
		return fmt.Errorf("%w: %s needs a positive duration", ErrParam, f.Kind)
	}
	if !roleAllowed(ki.roles, f.Target.Role) {
		return fmt.Errorf("%w: %s does not take target %q", ErrTarget, f.Kind, f.Target)
	}
	if f.Target.Role != RoleNode && f.Target.Node != 0 {
		return fmt.Errorf("%w: node index %d with role %q", ErrTarget, f.Target.Node, f.Target.Role)
	}
	if f.Target.Role == RoleNode && f.Target.Node < 0 {
		return fmt.Errorf("%w: negative node index %d", ErrTarget, f.Target.Node)
	}
	return f.checkParams(ki.params)
}

func roleAllowed(roles []Role, r Role) bool {
	for _, x := range roles {
		if x == r {
			return true
		}
	}
	return false
}

func (f Fault) checkParams(used param) error {
	// Unused fields must be zero, so that a hand-edited file that sets the
	// wrong field fails loudly instead of being silently ignored.
	unused := []struct {
		p    param
		name string
		zero bool
	}{
		{pShape, "shape", f.Shape == ""},
		{pPeriod, "period", f.Period == 0},
		{pProbability, "probability", f.Probability == 0},
		{pDelayMin, "delay_min", f.DelayMin == 0},
		{pDelayMax, "delay_max", f.DelayMax == 0},
		{pOffset, "offset_bytes", f.OffsetBytes == 0},
		{pStall, "stall", f.Stall == 0},
		{pPercent, "unsynced_data_percent", f.UnsyncedDataPercent == 0},
	}
	for _, u := range unused {
		if used&u.p == 0 && !u.zero {
			return fmt.Errorf("%w: %s does not use %s", ErrParam, f.Kind, u.name)
		}
	}
	if used&pShape != 0 && !validShape(f.Shape) {
		return fmt.Errorf("%w: shape %q", ErrParam, f.Shape)
	}
	if used&pPeriod != 0 && (f.Period <= 0 || f.Period > f.Duration) {
		return fmt.Errorf("%w: period %v not in (0, duration %v]", ErrParam, f.Period, f.Duration)
	}
	if used&pProbability != 0 && !(f.Probability >= 0 && f.Probability <= 1) { // NaN fails too
		return fmt.Errorf("%w: %v", ErrProbability, f.Probability)
	}
	if f.DelayMin < 0 || f.DelayMax < 0 || f.Stall < 0 {
		return fmt.Errorf("%w: negative delay or stall", ErrNegativeTime)
	}
	if f.DelayMin > f.DelayMax {
		return fmt.Errorf("%w: delay_min %v > delay_max %v", ErrParam, f.DelayMin, f.DelayMax)
	}
	if f.OffsetBytes < 0 {
		return fmt.Errorf("%w: offset_bytes = %d", ErrParam, f.OffsetBytes)
	}
	if f.UnsyncedDataPercent < 0 || f.UnsyncedDataPercent > 100 {
		return fmt.Errorf("%w: unsynced_data_percent = %d not in [0, 100]", ErrParam, f.UnsyncedDataPercent)
	}
	return nil
}

func validShape(s Shape) bool {
	for _, x := range shapes {
		if x == s {
			return true
		}
	}
	return false
}

// validProbability reports whether p is in [0, 1] (not NaN).
func validProbability(p float64) bool { return p >= 0 && p <= 1 && !math.IsNaN(p) }
