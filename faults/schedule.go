package faults

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Limits on membership changes; see the package doc.
const (
	// MaxMembershipChanges bounds the add-voter, add-learner and remove-node
	// faults of a schedule, together.
	MaxMembershipChanges = 4
	// MinVoters is the fewest voters a remove-node may leave.
	MinVoters = 3
	// MaxVoters is the most voters a cluster may have, initially or after an
	// add-voter.
	MaxVoters = 7
)

// Errors of an invalid schedule. Every error from [Schedule.Validate] wraps
// ErrInvalid and one of the others; errors.Is tells them apart.
var (
	ErrInvalid      = errors.New("invalid fault schedule")
	ErrNegativeTime = errors.New("negative time")
	ErrUnknownKind  = errors.New("unknown fault kind")
	ErrPastEnd      = errors.New("fault outside the safety phase")
	ErrProbability  = errors.New("probability not in [0, 1]")
	ErrTarget       = errors.New("bad target")
	ErrParam        = errors.New("bad parameter")
	ErrOrder        = errors.New("faults not sorted by start time")
	ErrConstraint   = errors.New("constraint violated")
	ErrMix          = errors.New("bad mix")
)

// FaultError is a validation error of one fault.
type FaultError struct {
	Index int // in Schedule.Faults
	Fault Fault
	Err   error // wraps ErrInvalid and the specific error
}

func (e *FaultError) Error() string {
	return fmt.Sprintf("fault %d (%v): %v", e.Index, e.Fault, e.Err)
}

func (e *FaultError) Unwrap() error { return e.Err }

func invalid(err error) error { return fmt.Errorf("%w: %w", ErrInvalid, err) }

// Schedule is the faults of one run, sorted by start time.
type Schedule struct {
	// Seed is the seed the schedule was generated from (0 if drawn by rapid
	// or written by hand); it is informational.
	Seed uint64
	// Nodes is the size of the initial cluster, nodes 0..Nodes-1, all voters.
	Nodes int
	// Duration is the length of the safety phase: every fault heals by then.
	Duration time.Duration
	// Mix is the swarm options the schedule was generated with; it is
	// informational (logged with the run) and constrains nothing.
	Mix Mix
	// Faults, sorted by At (ties keep their order).
	Faults []Fault
}

// Validate reports the first thing wrong with s: a negative time, an unknown
// kind, a fault outside the safety phase, a probability outside [0, 1], a
// target that does not exist, a parameter the kind does not take or a
// nonsensical one, faults out of order, or a broken constraint (package doc).
// The error wraps ErrInvalid and a specific error; a fault's is a *FaultError.
func (s Schedule) Validate() error {
	if s.Nodes < 1 || s.Nodes > MaxVoters {
		return invalid(fmt.Errorf("%w: nodes = %d not in [1, %d]", ErrParam, s.Nodes, MaxVoters))
	}
	if s.Duration < 0 {
		return invalid(fmt.Errorf("%w: duration = %v", ErrNegativeTime, s.Duration))
	}
	if err := s.Mix.validate(); err != nil {
		return invalid(err)
	}
	tr := newTracker(s.Nodes)
	for i, f := range s.Faults {
		err := f.check(s.Duration)
		if err == nil && i > 0 && f.At < s.Faults[i-1].At {
			err = fmt.Errorf("%w: starts before fault %d (%v)", ErrOrder, i-1, s.Faults[i-1].At)
		}
		if err == nil {
			tr.advance(f.At)
			err = tr.check(f)
		}
		if err != nil {
			return &FaultError{Index: i, Fault: f, Err: invalid(err)}
		}
		tr.apply(f)
	}
	return nil
}

// Counts returns how many faults of each kind s has.
func (s Schedule) Counts() map[Kind]int {
	c := make(map[Kind]int)
	for _, f := range s.Faults {
		c[f.Kind]++
	}
	return c
}

// Format writes s as text: a header with the seed, nodes, safety phase and
// mix, then one line per fault (see [Fault.String]).
func (s Schedule) Format(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# fault schedule: seed=%d nodes=%d safety=%v faults=%d\n", s.Seed, s.Nodes, s.Duration, len(s.Faults))
	if m := s.Mix.String(); m != "" {
		fmt.Fprintf(&b, "# mix: %s\n", m)
	}
	for _, f := range s.Faults {
		b.WriteString(f.String())
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// String is the text of [Schedule.Format].
func (s Schedule) String() string {
	var b strings.Builder
	_ = s.Format(&b) // a strings.Builder does not fail
	return b.String()
}

// nodeState is what a tracker knows of a node index.
type nodeState uint8

const (
	unused  nodeState = iota // never part of the cluster
	voter                    // a voter, as far as the schedule names it
	learner                  // a non-voter
	removed                  // removed by a remove-node naming its index
)

// tracker follows the cluster a schedule implies through time, to check the
// constraints of the package doc. Generation and validation share it, so a
// generated schedule always validates. Role-targeted removals are counted
// (voters) but not placed: the tracker does not know which node left.
type tracker struct {
	nodes   []nodeState // by index
	limit   int         // indexes must stay below it
	voters  int
	changes int
	active  []Fault // non-instantaneous faults not yet healed
}

func newTracker(initial int) *tracker {
	t := &tracker{nodes: make([]nodeState, initial+MaxMembershipChanges), limit: initial + MaxMembershipChanges, voters: initial}
	for i := range initial {
		t.nodes[i] = voter
	}
	return t
}

// advance forgets the faults healed by now.
func (t *tracker) advance(now time.Duration) {
	kept := t.active[:0]
	for _, f := range t.active {
		if f.End() > now {
			kept = append(kept, f)
		}
	}
	t.active = kept
}

func (t *tracker) state(i int) nodeState {
	if i < 0 || i >= len(t.nodes) {
		return unused
	}
	return t.nodes[i]
}

// down counts the active node-down faults.
func (t *tracker) down() (n int) {
	for _, f := range t.active {
		if ki, _ := info(f.Kind); ki.down {
			n++
		}
	}
	return n
}

// downOn reports whether an active node-down fault names node i by index.
func (t *tracker) downOn(i int) bool {
	for _, f := range t.active {
		if ki, _ := info(f.Kind); ki.down && f.Target == (Target{Role: RoleNode, Node: i}) {
			return true
		}
	}
	return false
}

// check reports whether f may start now (after advance(f.At)).
func (t *tracker) check(f Fault) error {
	ki, _ := info(f.Kind)
	if f.Target.Role == RoleNode {
		i := f.Target.Node
		switch st := t.state(i); {
		case i >= t.limit:
			return fmt.Errorf("%w: node index %d out of range [0, %d)", ErrTarget, i, t.limit)
		case isAdd(f.Kind) && st != unused:
			return fmt.Errorf("%w: %s of n%d, which already exists or existed", ErrTarget, f.Kind, i)
		case !isAdd(f.Kind) && st == unused:
			return fmt.Errorf("%w: n%d is not in the cluster at %v", ErrTarget, i, f.At)
		case !isAdd(f.Kind) && st == removed:
			return fmt.Errorf("%w: n%d was removed before %v", ErrTarget, i, f.At)
		}
	}
	if ki.instant && t.changes >= MaxMembershipChanges {
		return fmt.Errorf("%w: more than %d membership changes", ErrConstraint, MaxMembershipChanges)
	}
	switch f.Kind {
	case KindAddVoter:
		if t.voters >= MaxVoters {
			return fmt.Errorf("%w: add-voter would make more than %d voters", ErrConstraint, MaxVoters)
		}
	case KindRemoveNode:
		if f.Target.Role != RoleNode || t.state(f.Target.Node) == voter {
			if t.voters <= MinVoters {
				return fmt.Errorf("%w: remove-node would leave fewer than %d voters", ErrConstraint, MinVoters)
			}
			if d := t.down(); d > (t.voters-2)/2 {
				return fmt.Errorf("%w: remove-node while %d nodes are down would leave them a majority of %d voters", ErrConstraint, d, t.voters-1)
			}
		}
	}
	if ki.down {
		if d := t.down(); d+1 > (t.voters-1)/2 {
			return fmt.Errorf("%w: %d nodes down at once, more than a minority of %d voters", ErrConstraint, d+1, t.voters)
		}
		if f.Target.Role == RoleNode && t.downOn(f.Target.Node) {
			return fmt.Errorf("%w: n%d is already down", ErrConstraint, f.Target.Node)
		}
	}
	if ki.group != "" {
		for _, a := range t.active {
			if ai, _ := info(a.Kind); ai.group == ki.group {
				return fmt.Errorf("%w: overlaps %v until %v", ErrConstraint, a.Kind, a.End())
			}
		}
	}
	return nil
}

// apply records f, which check accepted.
func (t *tracker) apply(f Fault) {
	switch f.Kind {
	case KindAddVoter:
		t.nodes[f.Target.Node] = voter
		t.voters++
	case KindAddLearner:
		t.nodes[f.Target.Node] = learner
	case KindRemoveNode:
		if f.Target.Role != RoleNode {
			t.voters--
		} else {
			if t.nodes[f.Target.Node] == voter {
				t.voters--
			}
			t.nodes[f.Target.Node] = removed
		}
	}
	if f.Kind.Instant() {
		t.changes++
	} else {
		t.active = append(t.active, f)
	}
}

// members returns the indexes a random target may name for kind k: members
// not known to be removed; for remove-node, voters only; for a node-down
// kind, not already down by index.
func (t *tracker) members(k Kind) []int {
	ki, _ := info(k)
	var out []int
	for i, st := range t.nodes {
		switch {
		case st == unused || st == removed:
		case k == KindRemoveNode && st != voter:
		case ki.down && t.downOn(i):
		default:
			out = append(out, i)
		}
	}
	return out
}

// nextIndex is the lowest index never used, for a node being added.
func (t *tracker) nextIndex() (int, bool) {
	for i, st := range t.nodes {
		if st == unused {
			return i, true
		}
	}
	return 0, false
}
