package scenarios

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/raftsnap/testbed/faults"
)

// ShrinkResult is what Shrink found: the smallest schedule (and safety
// phase) it could find that still fails the same way.
type ShrinkResult struct {
	Original, Minimal faults.Schedule
	// Checker is the violation kind both fail with (the text before the
	// first colon of the first violation, e.g. "durability").
	Checker string
	// Runs is how many runs the search made.
	Runs int
	// Report is the run of Minimal that failed last.
	Report Report
}

// Size is a schedule's size for reporting: its number of faults.
func Size(s faults.Schedule) int { return len(s.Faults) }

// FaultTime is the total time faults are active in s (instantaneous ones
// count for nothing).
func FaultTime(s faults.Schedule) time.Duration {
	var d time.Duration
	for _, f := range s.Faults {
		d += f.Duration
	}
	return d
}

// checkerOf is the kind of a run's first violation.
func checkerOf(rep Report) string {
	if len(rep.Violations) == 0 {
		return ""
	}
	kind, _, _ := strings.Cut(rep.Violations[0], ":")
	return kind
}

// Shrink searches for a smaller fault schedule and a shorter safety phase
// that still make opts fail with the same kind of violation as failing (a
// run of opts). It is greedy delta debugging over the saved schedule: try
// each candidate of faults.Schedule.Candidates (and halving the safety
// phase), keep the first that still fails, repeat until none does or
// maxRuns runs are spent. Runs replay (see README on determinism), so
// every accepted step fails again when its schedule is replayed.
//
// fresh, if not nil, prepares the options of each run (a planted bug's
// Mutation is planted afresh for every run).
func Shrink(t *testing.T, opts Options, failing Report, maxRuns int, fresh func(*Options)) (ShrinkResult, error) {
	if failing.OK || failing.Schedule == nil {
		return ShrinkResult{}, fmt.Errorf("scenarios: shrink needs a failing run with its schedule")
	}
	res := ShrinkResult{Original: *failing.Schedule, Minimal: *failing.Schedule, Checker: checkerOf(failing), Report: failing}
	fails := func(s faults.Schedule) (Report, bool, error) {
		o := opts
		o.Schedule = &s
		o.TracePath = ""
		if fresh != nil {
			fresh(&o)
		}
		res.Runs++
		rep, err := Run(t, o)
		if err != nil {
			return rep, false, err
		}
		// The same way also means the same known upstream bug: a
		// reproduction of one must not shrink into another failure.
		return rep, !rep.OK && checkerOf(rep) == res.Checker && rep.Known == failing.Known, nil
	}
	for res.Runs < maxRuns {
		progressed := false
		for _, c := range shorter(res.Minimal) {
			if res.Runs >= maxRuns {
				break
			}
			rep, ok, err := fails(c)
			if err != nil {
				return res, err
			}
			if ok {
				res.Minimal, res.Report, progressed = c, rep, true
				break
			}
		}
		if !progressed {
			break
		}
	}
	return res, nil
}

// shorter lists the candidates of s, shortest first: the safety phase cut
// to end when the last fault heals, halved (faults kept), halved with time
// compressed (every time and duration halved), with the quiet time before
// the first fault removed; then faults.Schedule's own candidates.
func shorter(s faults.Schedule) []faults.Schedule {
	var out []faults.Schedule
	add := func(c faults.Schedule) {
		if c.Duration >= minSafety && c.Duration < s.Duration && c.Validate() == nil {
			out = append(out, c)
		}
	}
	var lastEnd time.Duration
	first := s.Duration
	for _, f := range s.Faults {
		lastEnd = max(lastEnd, f.End())
		first = min(first, f.At)
	}
	cut := s
	cut.Duration = max(lastEnd.Round(time.Second)+time.Second, minSafety)
	add(cut)
	half := s
	half.Duration = (s.Duration / 2).Round(time.Second)
	add(half)
	add(scaled(s, 2))
	if shift := (first - time.Second).Truncate(time.Second); shift > 0 {
		moved := s
		moved.Duration = s.Duration - shift
		moved.Faults = nil
		for _, f := range s.Faults {
			f.At -= shift
			moved.Faults = append(moved.Faults, f)
		}
		add(moved)
	}
	return append(out, s.Candidates()...)
}

// minSafety is the shortest safety phase Run accepts.
const minSafety = 5 * time.Second

// scaled divides every time of s by k.
func scaled(s faults.Schedule, k time.Duration) faults.Schedule {
	out := s
	out.Duration = (s.Duration / k).Round(time.Millisecond)
	out.Faults = nil
	for _, f := range s.Faults {
		f.At = (f.At / k).Round(time.Millisecond)
		if f.Duration > 0 {
			f.Duration = max((f.Duration / k).Round(time.Millisecond), time.Millisecond)
		}
		if f.Period > 0 {
			f.Period = max((f.Period / k).Round(time.Millisecond), time.Millisecond)
		}
		out.Faults = append(out.Faults, f)
	}
	return out
}
