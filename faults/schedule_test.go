package faults_test

import (
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/raftsnap/testbed/faults"
	"github.com/raftsnap/testbed/sim"
)

func node(i int) faults.Target { return faults.Target{Role: faults.RoleNode, Node: i} }

var (
	leader   = faults.Target{Role: faults.RoleLeader}
	follower = faults.Target{Role: faults.RoleFollower}
	all      = faults.Target{Role: faults.RoleAll}
)

const sec = time.Second

// handSchedule has one fault of most kinds, as a person would write it.
func handSchedule() faults.Schedule {
	return faults.Schedule{
		Seed: 42, Nodes: 3, Duration: 2 * time.Minute,
		Mix: faults.Mix{RatePerMinute: map[faults.Kind]float64{faults.KindCrash: 1.5}},
		Faults: []faults.Fault{
			{At: 1 * sec, Duration: 10 * sec, Kind: faults.KindPartition, Target: leader, Shape: faults.ShapeMajorityMinority},
			{At: 2 * sec, Duration: 3 * sec, Kind: faults.KindLoss, Target: all, Probability: 0.25},
			{At: 12500 * time.Millisecond, Duration: 4 * sec, Kind: faults.KindCrash, Target: follower},
			{At: 20 * sec, Kind: faults.KindAddLearner, Target: node(3)},
			{At: 21 * sec, Duration: 5 * sec, Kind: faults.KindSnapStall, Target: node(3), OffsetBytes: 17, Stall: 2 * sec},
			{At: 30 * sec, Duration: 20 * sec, Kind: faults.KindFlap, Target: node(1), Shape: faults.ShapeOneWayOut, Period: 2 * sec},
			{At: 31 * sec, Duration: 5 * sec, Kind: faults.KindDelay, Target: node(0), DelayMin: 10 * time.Millisecond, DelayMax: 300 * time.Millisecond},
			{At: 40 * sec, Duration: time.Second + time.Nanosecond, Kind: faults.KindPowerLoss, Target: node(2), UnsyncedDataPercent: 50},
			{At: 60 * sec, Kind: faults.KindAddVoter, Target: node(4)},
			{At: 61 * sec, Duration: 5 * sec, Kind: faults.KindReorder, Target: node(4), Probability: 0.5, DelayMax: 100 * time.Millisecond},
			{At: 70 * sec, Kind: faults.KindRemoveNode, Target: leader},
			{At: 80 * sec, Duration: 9 * sec, Kind: faults.KindDiskError, Target: follower, Probability: 0.01},
			{At: 80 * sec, Duration: 9 * sec, Kind: faults.KindSlowDisk, Target: node(0), DelayMin: time.Millisecond, DelayMax: 50 * time.Millisecond},
		},
	}
}

func TestHandWrittenScheduleValidates(t *testing.T) {
	if err := handSchedule().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestFormatPrintsOneLinePerFault(t *testing.T) {
	got := handSchedule().String()
	want := `# fault schedule: seed=42 nodes=3 safety=2m0s faults=13
# mix: crash=1.5/min; duration=0s..0s period=0s..0s p<=0 disk-p<=0 net-delay<=0s sync-delay<=0s stall<=0s offset<=0B unsynced<=0%
t=1s +10s partition target=leader shape=majority-minority
t=2s +3s loss target=all p=0.25
t=12.5s +4s crash target=follower
t=20s add-learner target=n3
t=21s +5s snap-stall target=n3 offset=17B stall=2s
t=30s +20s flap target=n1 shape=one-way-out period=2s
t=31s +5s delay target=n0 delay=10ms..300ms
t=40s +1.000000001s power-loss target=n2 unsynced=50%
t=1m0s add-voter target=n4
t=1m1s +5s reorder target=n4 p=0.5 delay<=100ms
t=1m10s remove-node target=leader
t=1m20s +9s disk-error target=follower p=0.01
t=1m20s +9s slow-disk target=n0 delay=1ms..50ms
`
	if got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestCountsCountsEachKind(t *testing.T) {
	s := handSchedule()
	s.Faults = append(s.Faults, faults.Fault{At: 100 * sec, Duration: sec, Kind: faults.KindCrash, Target: leader})
	c := s.Counts()
	if c[faults.KindCrash] != 2 || c[faults.KindPartition] != 1 || c[faults.KindPause] != 0 {
		t.Fatalf("counts %v", c)
	}
	total := 0
	for _, n := range c {
		total += n
	}
	if total != len(s.Faults) {
		t.Fatalf("counts sum to %d, want %d", total, len(s.Faults))
	}
}

func TestTargetTextRoundTrips(t *testing.T) {
	for _, tg := range []faults.Target{leader, follower, all, node(0), node(12)} {
		b, _ := tg.MarshalText()
		var got faults.Target
		if err := got.UnmarshalText(b); err != nil || got != tg {
			t.Errorf("%q: got %v, %v", b, got, err)
		}
	}
	for _, bad := range []string{"", "boss", "n", "n-1", "n+1", "nx", "node", "N1", "n1 "} {
		var got faults.Target
		if err := got.UnmarshalText([]byte(bad)); !errors.Is(err, faults.ErrTarget) {
			t.Errorf("%q: got %v, %v; want ErrTarget", bad, got, err)
		}
	}
}

func TestValidateCatchesEachBadInput(t *testing.T) {
	one := func(f faults.Fault) func(*faults.Schedule) {
		return func(s *faults.Schedule) { s.Faults = []faults.Fault{f} }
	}
	crash := faults.Fault{At: sec, Duration: sec, Kind: faults.KindCrash, Target: follower}
	loss := faults.Fault{At: sec, Duration: sec, Kind: faults.KindLoss, Target: all, Probability: 0.1}
	with := func(f faults.Fault, change func(*faults.Fault)) faults.Fault { change(&f); return f }
	cases := []struct {
		name   string
		change func(*faults.Schedule)
		want   error
	}{
		{"no nodes", func(s *faults.Schedule) { s.Nodes = 0 }, faults.ErrParam},
		{"too many nodes", func(s *faults.Schedule) { s.Nodes = faults.MaxVoters + 1 }, faults.ErrParam},
		{"negative safety phase", func(s *faults.Schedule) { s.Duration = -sec }, faults.ErrNegativeTime},
		{"mix with unknown kind", func(s *faults.Schedule) { s.Mix.RatePerMinute = map[faults.Kind]float64{"meteor": 1} }, faults.ErrUnknownKind},
		{"mix with negative rate", func(s *faults.Schedule) { s.Mix.RatePerMinute = map[faults.Kind]float64{faults.KindCrash: -1} }, faults.ErrMix},
		{"mix with probability above 1", func(s *faults.Schedule) { s.Mix.Ranges.ProbabilityMax = 2 }, faults.ErrProbability},
		{"negative start", one(with(crash, func(f *faults.Fault) { f.At = -sec })), faults.ErrNegativeTime},
		{"negative duration", one(with(crash, func(f *faults.Fault) { f.Duration = -sec })), faults.ErrNegativeTime},
		{"negative delay", one(faults.Fault{At: sec, Duration: sec, Kind: faults.KindDelay, Target: all, DelayMin: -1, DelayMax: 1}), faults.ErrNegativeTime},
		{"unknown kind", one(with(crash, func(f *faults.Fault) { f.Kind = "meteor" })), faults.ErrUnknownKind},
		{"starts at the end", one(with(crash, func(f *faults.Fault) { f.At = time.Minute })), faults.ErrPastEnd},
		{"instant at the end", one(faults.Fault{At: time.Minute, Kind: faults.KindAddVoter, Target: node(3)}), faults.ErrPastEnd},
		{"heals after the end", one(with(crash, func(f *faults.Fault) { f.At = 59 * sec; f.Duration = 2 * sec })), faults.ErrPastEnd},
		{"heals after the end, huge", one(with(crash, func(f *faults.Fault) { f.Duration = math.MaxInt64 })), faults.ErrPastEnd},
		{"probability below 0", one(with(loss, func(f *faults.Fault) { f.Probability = -0.1 })), faults.ErrProbability},
		{"probability above 1", one(with(loss, func(f *faults.Fault) { f.Probability = 1.5 })), faults.ErrProbability},
		{"probability NaN", one(with(loss, func(f *faults.Fault) { f.Probability = math.NaN() })), faults.ErrProbability},
		{"target index out of range", one(with(crash, func(f *faults.Fault) { f.Target = node(50) })), faults.ErrTarget},
		{"target node not in the cluster", one(with(crash, func(f *faults.Fault) { f.Target = node(3) })), faults.ErrTarget},
		{"negative target index", one(with(crash, func(f *faults.Fault) { f.Target = node(-1) })), faults.ErrTarget},
		{"no target", one(with(crash, func(f *faults.Fault) { f.Target = faults.Target{} })), faults.ErrTarget},
		{"role all on a node fault", one(with(crash, func(f *faults.Fault) { f.Target = all })), faults.ErrTarget},
		{"leader as snapshot receiver", one(faults.Fault{At: sec, Duration: sec, Kind: faults.KindSnapCut, Target: leader}), faults.ErrTarget},
		{"index with a role", one(with(crash, func(f *faults.Fault) { f.Target = faults.Target{Role: faults.RoleLeader, Node: 2} })), faults.ErrTarget},
		{"add an existing node", one(faults.Fault{At: sec, Kind: faults.KindAddVoter, Target: node(1)}), faults.ErrTarget},
		{"add by role", one(faults.Fault{At: sec, Kind: faults.KindAddVoter, Target: leader}), faults.ErrTarget},
		{"parameter the kind does not use", one(with(crash, func(f *faults.Fault) { f.Probability = 0.5 })), faults.ErrParam},
		{"partition without shape", one(faults.Fault{At: sec, Duration: sec, Kind: faults.KindPartition, Target: leader}), faults.ErrParam},
		{"unknown shape", one(faults.Fault{At: sec, Duration: sec, Kind: faults.KindPartition, Target: leader, Shape: "donut"}), faults.ErrParam},
		{"flap period longer than the flap", one(faults.Fault{At: sec, Duration: sec, Kind: faults.KindFlap, Target: leader, Shape: faults.ShapeIsolate, Period: 2 * sec}), faults.ErrParam},
		{"flap without period", one(faults.Fault{At: sec, Duration: sec, Kind: faults.KindFlap, Target: leader, Shape: faults.ShapeIsolate}), faults.ErrParam},
		{"delay min above max", one(faults.Fault{At: sec, Duration: sec, Kind: faults.KindDelay, Target: all, DelayMin: 2, DelayMax: 1}), faults.ErrParam},
		{"negative offset", one(faults.Fault{At: sec, Duration: sec, Kind: faults.KindSnapCut, Target: follower, OffsetBytes: -1}), faults.ErrParam},
		{"percent above 100", one(faults.Fault{At: sec, Duration: sec, Kind: faults.KindPowerLoss, Target: follower, UnsyncedDataPercent: 101}), faults.ErrParam},
		{"instant kind with duration", one(faults.Fault{At: sec, Duration: sec, Kind: faults.KindAddVoter, Target: node(3)}), faults.ErrParam},
		{"lasting kind without duration", one(with(crash, func(f *faults.Fault) { f.Duration = 0 })), faults.ErrParam},
		{"out of order", func(s *faults.Schedule) {
			s.Faults = []faults.Fault{with(crash, func(f *faults.Fault) { f.At = 5 * sec }), loss}
		}, faults.ErrOrder},
		{"two nodes down of three", func(s *faults.Schedule) {
			s.Faults = []faults.Fault{crash, with(crash, func(f *faults.Fault) { f.Kind = faults.KindPause; f.At = 1500 * time.Millisecond })}
		}, faults.ErrConstraint},
		{"the same node down twice", func(s *faults.Schedule) {
			s.Nodes = 5
			s.Faults = []faults.Fault{with(crash, func(f *faults.Fault) { f.Target = node(1) }), with(crash, func(f *faults.Fault) { f.Target = node(1) })}
		}, faults.ErrConstraint},
		{"overlapping losses", func(s *faults.Schedule) {
			s.Faults = []faults.Fault{loss, with(loss, func(f *faults.Fault) { f.At = 1500 * time.Millisecond; f.Target = leader })}
		}, faults.ErrConstraint},
		{"partition overlapping a flap", func(s *faults.Schedule) {
			s.Faults = []faults.Fault{
				{At: sec, Duration: 5 * sec, Kind: faults.KindFlap, Target: leader, Shape: faults.ShapeIsolate, Period: sec},
				{At: 2 * sec, Duration: sec, Kind: faults.KindPartition, Target: follower, Shape: faults.ShapeBridge},
			}
		}, faults.ErrConstraint},
		{"remove below three voters", one(faults.Fault{At: sec, Kind: faults.KindRemoveNode, Target: follower}), faults.ErrConstraint},
		{"remove leaving the down nodes a majority", func(s *faults.Schedule) {
			s.Nodes = 5 // two down is a minority of five, not of the four left
			s.Faults = []faults.Fault{crash, with(crash, func(f *faults.Fault) { f.Target = leader }), {At: 1500 * time.Millisecond, Kind: faults.KindRemoveNode, Target: node(4)}}
		}, faults.ErrConstraint},
		{"too many voters", func(s *faults.Schedule) {
			s.Nodes = faults.MaxVoters
			s.Faults = []faults.Fault{{At: sec, Kind: faults.KindAddVoter, Target: node(faults.MaxVoters)}}
		}, faults.ErrConstraint},
		{"too many membership changes", func(s *faults.Schedule) {
			for i := range faults.MaxMembershipChanges {
				s.Faults = append(s.Faults, faults.Fault{At: time.Duration(i+1) * sec, Kind: faults.KindAddLearner, Target: node(3 + i)})
			}
			s.Faults = append(s.Faults, faults.Fault{At: 10 * sec, Kind: faults.KindRemoveNode, Target: node(3)})
		}, faults.ErrConstraint},
		{"target a removed node", func(s *faults.Schedule) {
			s.Nodes = 4
			s.Faults = []faults.Fault{{At: sec, Kind: faults.KindRemoveNode, Target: node(3)}, with(crash, func(f *faults.Fault) { f.At = 2 * sec; f.Target = node(3) })}
		}, faults.ErrTarget},
		{"target a node before it is added", func(s *faults.Schedule) {
			s.Faults = []faults.Fault{with(crash, func(f *faults.Fault) { f.Target = node(3) }), {At: 2 * sec, Kind: faults.KindAddVoter, Target: node(3)}}
		}, faults.ErrTarget},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := faults.Schedule{Nodes: 3, Duration: time.Minute}
			c.change(&s)
			err := s.Validate()
			if !errors.Is(err, c.want) || !errors.Is(err, faults.ErrInvalid) {
				t.Fatalf("got %v, want %v wrapped in ErrInvalid\n%v", err, c.want, s)
			}
			if len(s.Faults) > 0 && !errors.Is(err, faults.ErrMix) && s.Nodes >= 1 && s.Nodes <= faults.MaxVoters && s.Duration >= 0 {
				var fe *faults.FaultError
				if !errors.As(err, &fe) || fe.Index < 0 || fe.Index >= len(s.Faults) || fe.Fault.String() != s.Faults[fe.Index].String() {
					t.Fatalf("error %v does not name the bad fault", err)
				}
			}
		})
	}
}

// The same faults are fine when they do not overlap, so the constraint
// cases above fail for the reason they name.
func TestValidateAcceptsSequentialFaults(t *testing.T) {
	s := faults.Schedule{Nodes: 3, Duration: time.Minute, Faults: []faults.Fault{
		{At: sec, Duration: sec, Kind: faults.KindCrash, Target: follower},
		{At: 2 * sec, Duration: sec, Kind: faults.KindPause, Target: follower}, // starts as the crash heals
		{At: 3 * sec, Duration: sec, Kind: faults.KindLoss, Target: all, Probability: 1},
		{At: 4 * sec, Duration: sec, Kind: faults.KindLoss, Target: all, Probability: 0},
		{At: 5 * sec, Kind: faults.KindAddVoter, Target: node(3)},
		{At: 6 * sec, Kind: faults.KindRemoveNode, Target: node(3)},
		{At: 59 * sec, Duration: sec, Kind: faults.KindCrash, Target: node(0)}, // heals exactly at the end
	}}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	schedules := []faults.Schedule{handSchedule(), {Nodes: 1}}
	for seed := range uint64(20) {
		schedules = append(schedules, allKindsSchedule(seed, 5, 3*time.Minute))
	}
	for i, s := range schedules {
		path := filepath.Join(dir, "s.json")
		if err := s.Save(path); err != nil {
			t.Fatal(err)
		}
		got, err := faults.Load(path)
		if err != nil {
			t.Fatalf("schedule %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, s) {
			t.Fatalf("schedule %d: round trip changed it:\n%v\n%v", i, s, got)
		}
	}
}

func TestSavedFileIsReadableJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.json")
	if err := handSchedule().Save(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"version": 1`, `"at": "12.5s"`, `"duration": "4s"`, `"target": "follower"`, `"target": "n3"`, `"kind": "power-loss"`, `"unsynced_data_percent": 50`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("file lacks %s:\n%s", want, b)
		}
	}
}

func TestLoadRejectsBadFilesWithClearErrors(t *testing.T) {
	dir := t.TempDir()
	valid := `{"version": 1, "seed": 1, "nodes": 3, "duration": "1m0s", "mix": {"ranges": {}}, "faults": [%s]}`
	fault := func(s string) string { return strings.Replace(valid, "%s", s, 1) }
	cases := []struct {
		name, content string
		want          []error
	}{
		{"empty file", "", []error{faults.ErrMalformed}},
		{"not JSON", "t=1s crash", []error{faults.ErrMalformed}},
		{"truncated", `{"version": 1, "nodes": 3`, []error{faults.ErrMalformed}},
		{"trailing garbage", fault("") + "}", []error{faults.ErrMalformed}},
		{"wrong version", `{"version": 2, "whatever": true}`, []error{faults.ErrVersion}},
		{"no version", `{"nodes": 3, "duration": "1m0s"}`, []error{faults.ErrVersion}},
		{"version not a number", `{"version": "1"}`, []error{faults.ErrMalformed}},
		{"unknown field", strings.Replace(valid, `"seed"`, `"sed"`, 1), []error{faults.ErrMalformed}},
		{"unknown fault field", fault(`{"at": "1s", "duration": "1s", "kind": "crash", "target": "leader", "victim": "n1"}`), []error{faults.ErrMalformed}},
		{"bad duration text", fault(`{"at": "1 parsec", "duration": "1s", "kind": "crash", "target": "leader"}`), []error{faults.ErrMalformed}},
		{"duration as a number", fault(`{"at": 1000000000, "duration": "1s", "kind": "crash", "target": "leader"}`), []error{faults.ErrMalformed}},
		{"bad target text", fault(`{"at": "1s", "duration": "1s", "kind": "crash", "target": "n-1"}`), []error{faults.ErrMalformed, faults.ErrTarget}},
		{"bad probability", fault(`{"at": "1s", "duration": "1s", "kind": "loss", "target": "all", "probability": 1.5}`), []error{faults.ErrInvalid, faults.ErrProbability}},
		{"unknown kind", fault(`{"at": "1s", "duration": "1s", "kind": "meteor", "target": "all"}`), []error{faults.ErrInvalid, faults.ErrUnknownKind}},
		{"past the end", fault(`{"at": "50s", "duration": "20s", "kind": "crash", "target": "leader"}`), []error{faults.ErrInvalid, faults.ErrPastEnd}},
		{"target out of range", fault(`{"at": "1s", "duration": "1s", "kind": "crash", "target": "n9"}`), []error{faults.ErrInvalid, faults.ErrTarget}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, "bad.json")
			if err := os.WriteFile(path, []byte(c.content), 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := faults.Load(path)
			for _, want := range c.want {
				if !errors.Is(err, want) {
					t.Errorf("got %v, want %v", err, want)
				}
			}
			if err != nil && !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			if !reflect.DeepEqual(s, faults.Schedule{}) {
				t.Errorf("got a schedule with the error: %v", s)
			}
		})
	}
	if _, err := faults.Load(filepath.Join(dir, "missing.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: got %v, want fs.ErrNotExist", err)
	}
}

// size measures a schedule for shrinking: a candidate must be no larger in
// any component and smaller in one.
func size(s faults.Schedule) [7]float64 {
	var m [7]float64
	m[0] = float64(len(s.Faults))
	for _, f := range s.Faults {
		m[1] += float64(f.Duration)
		// In millionths: a float sum depends on the order of the faults,
		// which a candidate that moves a fault's start may change.
		m[2] += math.Round(f.Probability * 1e6)
		m[3] += float64(f.DelayMin + f.DelayMax + f.Period)
		m[4] += float64(f.Stall)
		m[5] += float64(f.OffsetBytes)
		m[6] += float64(f.UnsyncedDataPercent)
	}
	return m
}

func strictlySmaller(a, b [7]float64) bool {
	less := false
	for i := range a {
		if a[i] > b[i] {
			return false
		}
		less = less || a[i] < b[i]
	}
	return less
}

func TestCandidatesAreStrictlySmallerAndValid(t *testing.T) {
	schedules := []faults.Schedule{handSchedule()}
	for seed := range uint64(15) {
		schedules = append(schedules, allKindsSchedule(seed, 5, 2*time.Minute))
	}
	for i, s := range schedules {
		before := s.String()
		cands := s.Candidates()
		if len(s.Faults) > 0 && len(cands) == 0 {
			t.Fatalf("schedule %d has faults but no candidates", i)
		}
		for j, c := range cands {
			if err := c.Validate(); err != nil {
				t.Fatalf("schedule %d candidate %d: %v\n%v", i, j, err, c)
			}
			if !strictlySmaller(size(c), size(s)) {
				t.Fatalf("schedule %d candidate %d is not smaller:\n%v\n%v", i, j, s, c)
			}
		}
		if s.String() != before {
			t.Fatalf("schedule %d changed by Candidates", i)
		}
	}
	if c := (faults.Schedule{Nodes: 3, Duration: time.Minute}).Candidates(); len(c) != 0 {
		t.Fatalf("empty schedule has candidates: %v", c)
	}
}

// shrink is the greedy delta debugging a shrinker does with Candidates.
func shrink(t *testing.T, s faults.Schedule, fails func(faults.Schedule) bool) faults.Schedule {
	for steps := 0; ; steps++ {
		if steps > 10000 {
			t.Fatal("shrinking did not end")
		}
		next := -1
		cands := s.Candidates()
		for i, c := range cands {
			if fails(c) {
				next = i
				break
			}
		}
		if next < 0 {
			return s
		}
		s = cands[next]
	}
}

func TestGreedyShrinkingFindsTheFaultsThatMatter(t *testing.T) {
	// The "bug": a crash while a loss fault is active.
	fails := func(s faults.Schedule) bool {
		for _, c := range s.Faults {
			for _, l := range s.Faults {
				if c.Kind == faults.KindCrash && l.Kind == faults.KindLoss && l.At < c.End() && c.At < l.End() {
					return true
				}
			}
		}
		return false
	}
	mix := faults.Mix{RatePerMinute: map[faults.Kind]float64{}}
	for _, k := range faults.Kinds() {
		mix.RatePerMinute[k] = 3
	}
	found := 0
	for seed := range sim.Seed(10) {
		s := faults.Generate(seed, 5, 3*time.Minute, mix)
		if !fails(s) {
			continue
		}
		found++
		min := shrink(t, s, fails)
		if len(min.Faults) != 2 || !fails(min) {
			t.Fatalf("seed %d shrank to:\n%v", seed, min)
		}
		for _, f := range min.Faults {
			if f.Probability > 0.002 {
				t.Errorf("seed %d: probability not lowered: %v", seed, f)
			}
		}
	}
	if found == 0 {
		t.Fatal("no seed had a crash during a loss fault; the test checks nothing")
	}
}

func TestWithoutDropsFaultsOnANodeThatIsNoLongerAdded(t *testing.T) {
	s := handSchedule()
	add := 3 // the add-learner of n3
	if s.Faults[add].Kind != faults.KindAddLearner {
		t.Fatalf("fault %d is %v", add, s.Faults[add])
	}
	w := s.Without(add)
	if len(w.Faults) != len(s.Faults)-2 {
		t.Fatalf("want the add and the snap-stall on n3 gone:\n%v", w)
	}
	for _, f := range w.Faults {
		if f.Target == node(3) {
			t.Fatalf("fault on n3 kept: %v", f)
		}
	}
	if err := w.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(s.Faults) != 13 {
		t.Fatal("Without modified its receiver")
	}
	if o := s.Without(99); !reflect.DeepEqual(o, s) {
		t.Fatal("Without an index out of range changed the schedule")
	}
}
