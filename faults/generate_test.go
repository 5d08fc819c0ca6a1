package faults_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftsnap/testbed/faults"
	"github.com/raftsnap/testbed/sim"
	"pgregory.net/rapid"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// allKindsSchedule generates the schedule a swarm run of seed would use with
// every kind available.
func allKindsSchedule(seed uint64, nodes int, safety time.Duration) faults.Schedule {
	s := sim.Seed(seed)
	return faults.Generate(s, nodes, safety, faults.DrawMix(s, faults.Kinds()))
}

func TestGenerateIsDeterministic(t *testing.T) {
	for seed := range uint64(20) {
		a := allKindsSchedule(seed, 5, 3*time.Minute)
		b := allKindsSchedule(seed, 5, 3*time.Minute)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("seed %d: two generations differ:\n%v\n%v", seed, a, b)
		}
	}
	if a, b := allKindsSchedule(1, 5, 3*time.Minute), allKindsSchedule(2, 5, 3*time.Minute); reflect.DeepEqual(a.Faults, b.Faults) {
		t.Fatalf("seeds 1 and 2 gave the same faults:\n%v", a)
	}
}

// TestGenerateMatchesGolden pins what a seed generates, so that a change to
// the nemesis that would make old seeds (in bug reports, CI logs) replay
// differently is seen in review. Regenerate with -update and read the diff.
func TestGenerateMatchesGolden(t *testing.T) {
	var b strings.Builder
	for _, seed := range []uint64{1, 2} {
		b.WriteString(allKindsSchedule(seed, 5, 2*time.Minute).String())
	}
	path := filepath.Join("testdata", "generate.golden")
	if *update {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got := b.String(); got != string(want) {
		t.Errorf("generated schedules differ from %s (run with -update if intended):\n%s", path, got)
	}
}

func TestZeroMixGeneratesNoFaults(t *testing.T) {
	s := faults.Generate(7, 3, time.Minute, faults.Mix{})
	if len(s.Faults) != 0 {
		t.Fatalf("zero mix gave faults:\n%v", s)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestGenerateFollowsTheMixRate(t *testing.T) {
	// Loss faults cannot overlap, so use a rate low enough that few arrivals
	// are dropped: 2 per minute of 20s faults over an hour is about 120.
	mix := faults.Mix{RatePerMinute: map[faults.Kind]float64{faults.KindLoss: 2}, Ranges: faults.Ranges{DurationMin: time.Second, DurationMax: time.Second}}
	s := faults.Generate(3, 3, time.Hour, mix)
	if n := s.Counts()[faults.KindLoss]; n < 80 || n > 140 {
		t.Fatalf("got %d loss faults in an hour at 2/min, want about 120", n)
	}
	if len(s.Counts()) != 1 {
		t.Fatalf("kinds other than loss: %v", s.Counts())
	}
}

// Each kind draws its arrivals from its own stream, so a seed keeps its crash
// schedule when the swarm also turns loss on: seeds stay comparable across
// mixes.
func TestEnablingAKindDoesNotMoveTheOthers(t *testing.T) {
	crashOnly := faults.Mix{RatePerMinute: map[faults.Kind]float64{faults.KindCrash: 3}}
	withLoss := faults.Mix{RatePerMinute: map[faults.Kind]float64{faults.KindCrash: 3, faults.KindLoss: 5}}
	for seed := range sim.Seed(10) {
		a := faults.Generate(seed, 5, 5*time.Minute, crashOnly)
		b := faults.Generate(seed, 5, 5*time.Minute, withLoss)
		var crashes []faults.Fault
		for _, f := range b.Faults {
			if f.Kind == faults.KindCrash {
				crashes = append(crashes, f)
			}
		}
		if len(a.Faults) == 0 || !reflect.DeepEqual(a.Faults, crashes) {
			t.Fatalf("seed %d: crash faults moved when loss was enabled:\n%v\n%v", seed, a, b)
		}
	}
}

func TestEveryKindIsGenerated(t *testing.T) {
	mix := faults.Mix{RatePerMinute: map[faults.Kind]float64{}}
	for _, k := range faults.Kinds() {
		mix.RatePerMinute[k] = 2
	}
	seen := map[faults.Kind]int{}
	for seed := range sim.Seed(10) {
		for k, n := range faults.Generate(seed, 5, 5*time.Minute, mix).Counts() {
			seen[k] += n
		}
	}
	for _, k := range faults.Kinds() {
		if seen[k] == 0 {
			t.Errorf("no %s fault in 10 seeds", k)
		}
	}
}

func drawSchedule(t *rapid.T) faults.Schedule {
	seed := rapid.Uint64().Draw(t, "seed")
	nodes := rapid.IntRange(1, faults.MaxVoters).Draw(t, "nodes")
	safety := time.Duration(rapid.Int64Range(1, 600).Draw(t, "safety_s")) * time.Second
	return allKindsSchedule(seed, nodes, safety)
}

func TestGeneratedSchedulesAlwaysValidate(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := drawSchedule(t)
		if err := s.Validate(); err != nil {
			t.Fatalf("%v\n%v", err, s)
		}
	})
}

func TestAllFaultsHealBeforeTheSafetyPhaseEnds(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := drawSchedule(t)
		for _, f := range s.Faults {
			if f.At < 0 || f.Duration < 0 || f.End() > s.Duration || (f.Duration == 0 && f.At >= s.Duration) {
				t.Fatalf("fault %v outside [0, %v]", f, s.Duration)
			}
		}
		if !slices.IsSortedFunc(s.Faults, func(a, b faults.Fault) int { return int(a.At - b.At) }) {
			t.Fatalf("not sorted:\n%v", s)
		}
	})
}

// checkConstraints re-derives the constraints of the package doc from the
// schedule alone, independently of the package's own tracker: after all the
// events of each instant, the node-down faults active number at most a
// minority of the voters, same-group faults do not overlap, and membership
// changes stay within their limits.
func checkConstraints(s faults.Schedule) (maxDown int, err error) {
	downKinds := map[faults.Kind]bool{faults.KindCrash: true, faults.KindPowerLoss: true, faults.KindPause: true, faults.KindDiskError: true}
	group := func(k faults.Kind) faults.Kind {
		if k == faults.KindFlap {
			return faults.KindPartition
		}
		return k
	}
	changes := 0
	for _, f := range s.Faults {
		if f.Duration == 0 {
			changes++
		}
	}
	if changes > faults.MaxMembershipChanges {
		return 0, fmt.Errorf("%d membership changes", changes)
	}
	for _, now := range s.Faults {
		t := now.At
		voters, learners := s.Nodes, map[int]bool{}
		down := 0
		active := map[faults.Kind]int{}
		for _, f := range s.Faults {
			if f.At > t {
				break
			}
			switch f.Kind {
			case faults.KindAddVoter:
				voters++
			case faults.KindAddLearner:
				learners[f.Target.Node] = true
			case faults.KindRemoveNode:
				if f.Target.Role != faults.RoleNode || !learners[f.Target.Node] {
					voters--
				}
			}
			if f.At <= t && t < f.End() {
				if downKinds[f.Kind] {
					down++
				}
				if f.Kind != faults.KindCrash && f.Kind != faults.KindPause && f.Kind != faults.KindPowerLoss {
					active[group(f.Kind)]++
				}
			}
		}
		if voters > faults.MaxVoters || (voters < faults.MinVoters && now.Kind == faults.KindRemoveNode) {
			return 0, fmt.Errorf("t=%v: %d voters", t, voters)
		}
		if down > (voters-1)/2 {
			return 0, fmt.Errorf("t=%v: %d nodes down of %d voters", t, down, voters)
		}
		for k, n := range active {
			if n > 1 {
				return 0, fmt.Errorf("t=%v: %d %s faults at once", t, n, k)
			}
		}
		maxDown = max(maxDown, down)
	}
	return maxDown, nil
}

func TestNodeDownFaultsNeverExceedAMinority(t *testing.T) {
	maxDownSeen := 0
	rapid.Check(t, func(t *rapid.T) {
		s := drawSchedule(t)
		d, err := checkConstraints(s)
		if err != nil {
			t.Fatalf("%v\n%v", err, s)
		}
		maxDownSeen = max(maxDownSeen, d)
	})
	// The property must have been exercised: with five or more voters two
	// nodes may be down at once, and some seed should do it.
	if maxDownSeen < 2 {
		t.Fatalf("no schedule had two nodes down at once; the check is vacuous")
	}
}

func TestDifferentSeedsDrawDifferentMixes(t *testing.T) {
	sets := map[string]bool{}
	on := map[faults.Kind]int{}
	const seeds = 40
	for seed := range sim.Seed(seeds) {
		m := faults.DrawMix(seed, faults.Kinds())
		if !reflect.DeepEqual(m, faults.DrawMix(seed, faults.Kinds())) {
			t.Fatalf("seed %d: DrawMix is not deterministic", seed)
		}
		var ks []string
		for k, r := range m.RatePerMinute {
			if r <= 0 {
				t.Fatalf("seed %d: enabled kind %s with rate %v", seed, k, r)
			}
			ks = append(ks, string(k))
			on[k]++
		}
		if len(ks) == 0 {
			t.Fatalf("seed %d: no kind enabled", seed)
		}
		slices.Sort(ks)
		sets[strings.Join(ks, ",")] = true
	}
	if len(sets) < seeds/2 {
		t.Fatalf("%d seeds drew only %d distinct kind sets", seeds, len(sets))
	}
	for _, k := range faults.Kinds() {
		if on[k] == 0 || on[k] == seeds {
			t.Errorf("kind %s on in %d of %d mixes; swarm testing wants each kind on in some and off in others", k, on[k], seeds)
		}
	}
}

func TestDrawMixEnablesOnlyTheGivenKinds(t *testing.T) {
	allowed := []faults.Kind{faults.KindCrash, faults.KindLoss, "no-such-kind"}
	for seed := range sim.Seed(30) {
		m := faults.DrawMix(seed, allowed)
		if len(m.RatePerMinute) == 0 {
			t.Fatalf("seed %d: nothing enabled", seed)
		}
		for k := range m.RatePerMinute {
			if k != faults.KindCrash && k != faults.KindLoss {
				t.Fatalf("seed %d: enabled %s", seed, k)
			}
		}
	}
	if m := faults.DrawMix(1, nil); !reflect.DeepEqual(m, faults.Mix{}) {
		t.Fatalf("no kinds should give the zero mix, got %v", m)
	}
}

func TestDrawnSchedulesValidate(t *testing.T) {
	nonEmpty := 0
	rapid.Check(t, func(t *rapid.T) {
		nodes := rapid.IntRange(1, faults.MaxVoters).Draw(t, "nodes")
		s := faults.Draw(t, nodes, time.Minute, faults.Kinds())
		if err := s.Validate(); err != nil {
			t.Fatalf("%v\n%v", err, s)
		}
		if _, err := checkConstraints(s); err != nil {
			t.Fatalf("%v\n%v", err, s)
		}
		if len(s.Faults) > 0 {
			nonEmpty++
		}
	})
	if nonEmpty == 0 {
		t.Fatal("Draw never produced a fault")
	}
}

func TestDrawWithoutKindsHasNoFaults(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		if s := faults.Draw(t, 3, time.Minute, nil); len(s.Faults) != 0 {
			t.Fatalf("faults without kinds:\n%v", s)
		}
	})
}

func TestGenerateWithBadArgumentsStaysSafe(t *testing.T) {
	// Bad arguments give an empty schedule, never a panic.
	for _, c := range []struct {
		nodes  int
		safety time.Duration
	}{{0, time.Minute}, {-1, time.Minute}, {faults.MaxVoters + 1, time.Minute}, {3, 0}, {3, -time.Second}} {
		s := faults.Generate(1, c.nodes, c.safety, faults.DrawMix(1, faults.Kinds()))
		if len(s.Faults) != 0 {
			t.Errorf("nodes=%d safety=%v: got faults", c.nodes, c.safety)
		}
	}
	// A mix with nonsense in it is normalized, and the schedule records it.
	bad := faults.Mix{RatePerMinute: map[faults.Kind]float64{"bogus": 3, faults.KindCrash: -1, faults.KindLoss: 2}, Ranges: faults.Ranges{ProbabilityMax: 7}}
	s := faults.Generate(1, 3, time.Minute, bad)
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if want := map[faults.Kind]float64{faults.KindLoss: 2}; !reflect.DeepEqual(s.Mix.RatePerMinute, want) || s.Mix.Ranges.ProbabilityMax != 1 {
		t.Fatalf("mix not normalized: %v", s.Mix)
	}
}
