package scenarios

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftsnap/testbed/faults"
	"github.com/raftsnap/testbed/sim"
)

// Every scenario's script must give a valid schedule for every seed, and
// keep all its scripted faults (generated faults that clash are dropped,
// scripted ones never are).
func TestScriptsValidateAcrossSeeds(t *testing.T) {
	for _, sc := range Scenarios() {
		for seed := uint64(1); seed <= 300; seed++ {
			sched := ScheduleFor(sc, seed, sc.Nodes, sc.Safety)
			if err := sched.Validate(); err != nil {
				t.Fatalf("%s seed %d: %v", sc.Name, seed, err)
			}
			if sc.Script == nil {
				continue
			}
			for _, f := range sc.Script(sim.Seed(seed), sc.Nodes, sc.Safety) {
				if !slices.Contains(sched.Faults, f) {
					t.Fatalf("%s seed %d: scripted fault %v missing from the schedule:\n%s", sc.Name, seed, f, sched)
				}
			}
		}
	}
}

// Each scenario says what its safety and its liveness phases are.
func TestScenariosDescribeBothPhases(t *testing.T) {
	want := []string{"snapshot-install", "snapshot-crash", "partition-heal", "leader-churn", "membership", "mixed-engines", "swarm", "snapshot-rot", "snapshot-disk"}
	for _, name := range want {
		sc, ok := Lookup(name)
		if !ok {
			t.Errorf("scenario %s is not registered", name)
			continue
		}
		if !strings.Contains(sc.Description, "safety:") || !strings.Contains(sc.Description, "liveness:") {
			t.Errorf("%s: description names no safety or liveness phase: %q", name, sc.Description)
		}
	}
}

// snapshot-crash covers every crash point, with both kinds of crash, over a
// few dozen seeds; taps stay inside the safety phase.
func TestSnapshotCrashCoversEveryPoint(t *testing.T) {
	sc, _ := Lookup("snapshot-crash")
	seen := map[string]bool{}
	for seed := uint64(1); seed <= 40; seed++ {
		for _, tap := range sc.Taps(sim.Seed(seed), sc.Nodes, sc.Safety) {
			if tap.At <= 0 || tap.At >= sc.Safety {
				t.Fatalf("seed %d: tap %v outside the safety phase", seed, tap)
			}
			seen[string(tap.Point)+"/"+map[bool]string{true: "power-loss", false: "process"}[tap.PowerLoss]] = true
		}
	}
	for _, p := range CrashPoints() {
		for _, kind := range []string{"process", "power-loss"} {
			if !seen[string(p)+"/"+kind] {
				t.Errorf("no seed in 1..40 plans a %s crash at %s", kind, p)
			}
		}
	}
}

// The swarm draws its kinds from every fault kind.
func TestSwarmOffersEveryKind(t *testing.T) {
	sc, _ := Lookup("swarm")
	on := map[faults.Kind]bool{}
	for seed := uint64(1); seed <= 60; seed++ {
		for k := range ScheduleFor(sc, seed, sc.Nodes, sc.Safety).Counts() {
			on[k] = true
		}
	}
	for _, k := range swarmKinds() {
		if !on[k] {
			t.Errorf("no swarm seed in 1..60 schedules a %s fault", k)
		}
	}
}

// hangWatchdog fails loudly, with every goroutine's stack, if a run does not
// end within a wall-clock bound: a bubble whose goroutines wait on each
// other outside virtual time (a mutex held across a virtual sleep) never
// ends on its own.
func hangWatchdog(t *testing.T, what string) (stop func() bool) {
	t.Helper()
	return time.AfterFunc(2*time.Minute, func() { panic(what + ": the run hung (virtual time stalled)") }).Stop
}

func traceHas(events []sim.Event, kind, substr string) int {
	n := 0
	for _, e := range events {
		if e.Kind == kind && strings.Contains(e.Detail, substr) {
			n++
		}
	}
	return n
}

// A slow disk delays Pebble's syncs (the WAL's SyncData included) in
// virtual time while other goroutines read the state machine: the run must
// neither hang nor fail, and the syncs must really have been delayed.
func TestSlowDiskDoesNotStallVirtualTime(t *testing.T) {
	defer hangWatchdog(t, "slow-disk")()
	for seed := uint64(1); seed <= 3; seed++ {
		s := faults.Schedule{Nodes: 5, Duration: 30 * time.Second, Faults: []faults.Fault{
			{At: 2 * time.Second, Duration: 12 * time.Second, Kind: faults.KindSlowDisk, Target: leaderTarget, DelayMin: 20 * time.Millisecond, DelayMax: 100 * time.Millisecond},
			{At: 15 * time.Second, Duration: 12 * time.Second, Kind: faults.KindSlowDisk, Target: followerTarget, DelayMin: 50 * time.Millisecond, DelayMax: 200 * time.Millisecond},
		}}
		rep, err := Run(t, Options{Seed: seed, Scenario: "snapshot-install", Engine: EnginePebble, Schedule: &s})
		if err != nil {
			t.Fatal(err)
		}
		requirePass(t, seed, rep)
		if traceHas(rep.Events, "slow-disk-syncs", "delayed=") == 0 || traceHas(rep.Events, "slow-disk-syncs", "delayed=0") == 2 {
			t.Fatalf("seed %d: no sync was delayed", seed)
		}
	}
}

// Write errors on a Pebble node's disk fail-stop the node (in files Pebble
// owns) or fail the snapshot-store operation; either way the node comes
// back and the run converges.
func TestDiskErrorsFailStopAndRecover(t *testing.T) {
	defer hangWatchdog(t, "disk-error")()
	stops := 0
	for seed := uint64(1); seed <= 3; seed++ {
		s := faults.Schedule{Nodes: 5, Duration: 30 * time.Second, Faults: []faults.Fault{
			{At: 3 * time.Second, Duration: 8 * time.Second, Kind: faults.KindDiskError, Target: leaderTarget, Probability: 0.05},
			{At: 14 * time.Second, Duration: 8 * time.Second, Kind: faults.KindDiskError, Target: followerTarget, Probability: 0.05},
		}}
		rep, err := Run(t, Options{Seed: seed, Scenario: "snapshot-install", Engine: EnginePebble, Schedule: &s})
		if err != nil {
			t.Fatal(err)
		}
		requirePass(t, seed, rep)
		stops += traceHas(rep.Events, "fail-stop", "")
	}
	if stops == 0 {
		t.Fatal("no node fail-stopped in three seeds of 5% write errors")
	}
}

// Each crash point fires in some seed of snapshot-crash, exactly at its
// count (or at the end of a shorter step), and the runs pass.
func TestCrashTapsFireAtEveryPoint(t *testing.T) {
	armed := regexp.MustCompile(`after=(\d+)`)
	got := regexp.MustCompile(`(\d+) (bytes|pairs) in$`)
	fired := map[string]int{}
	for seed := uint64(1); seed <= 6; seed++ {
		rep, err := Run(t, Options{Seed: seed, Scenario: "snapshot-crash", Engine: EnginePebble})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Known == "" { // a known upstream bug may fail the seed
			requirePass(t, seed, rep)
		}
		counted := 0
		for k, n := range rep.Faults {
			if p, ok := strings.CutPrefix(k, "crash-point/"); ok {
				fired[p] += n
				counted += n
			}
		}
		if n := traceHas(rep.Events, "crash-point", ""); n != counted {
			t.Fatalf("seed %d: %d crash-point events traced, %d counted", seed, n, counted)
		}
		for _, e := range rep.Events {
			if e.Kind != "crash-point" || strings.Contains(e.Detail, " at ") || countless(e.Detail) {
				continue
			}
			a, g := armed.FindStringSubmatch(e.Detail), got.FindStringSubmatch(e.Detail)
			if a == nil || g == nil || a[1] != g[1] {
				t.Fatalf("seed %d: tap did not fire at its count: %q", seed, e.Detail)
			}
		}
	}
	for _, p := range CrashPoints() {
		if fired[string(p)] == 0 {
			t.Errorf("crash point %s never fired in seeds 1..6 (fired: %v)", p, fired)
		}
	}
}

// countless reports a crash-point event of a point that has no count:
// it fires at a step, not after so many bytes or pairs.
func countless(detail string) bool {
	for _, p := range []CrashPoint{CrashInstalled, CrashBarrier, CrashReferenced} {
		if strings.Contains(detail, "crash-point="+string(p)+" ") {
			return true
		}
	}
	return false
}

// requirePass fails the test unless the run passed. Runs replay, so a
// seed here that starts hitting the known hashicorp/raft snapshot livelock
// did so because a change altered the run: the failure says so, and the
// test needs another seed, not a looser check.
func requirePass(t *testing.T, seed uint64, rep Report) {
	t.Helper()
	if rep.OK {
		return
	}
	if node, index, ok := RaftSnapshotHole(rep.Events); ok {
		t.Fatalf("seed %d now hits the known hashicorp/raft snapshot livelock (%s, index %d); pick another seed: %v", seed, node, index, rep.Violations)
	}
	t.Fatalf("seed %d: %v", seed, rep.Violations)
}
