package canaries

import (
	"slices"
	"testing"

	"github.com/raftsnap/testbed/faults"
	"github.com/raftsnap/testbed/scenarios"
)

// The store-fault canaries are caught because their fault reaches the
// store: at the seed that catches each, the same run with that fault taken
// out of the schedule passes, bug and all. If the fault stopped reaching
// the store (or stopped being applied), the canary would stop being caught
// and this test would show which fault lost its teeth.
func TestStoreFaultCanariesBiteOnlyUnderTheirFault(t *testing.T) {
	for _, c := range []struct {
		bug  string
		seed uint64
		kind faults.Kind
	}{
		{"trusts-stored-snapshots", 1, faults.KindSnapRot},
		{"dropped-snapshot-write-errors", 3, faults.KindDiskError},
	} {
		b, ok := Lookup(c.bug)
		if !ok {
			t.Fatalf("%s: missing from the catalog", c.bug)
		}
		sc, _ := scenarios.Lookup(b.Scenario)
		full := scenarios.ScheduleFor(sc, c.seed, 5, sc.Safety)
		without := full
		without.Faults = slices.DeleteFunc(slices.Clone(full.Faults), func(f faults.Fault) bool { return f.Kind == c.kind })
		if len(without.Faults) == len(full.Faults) {
			t.Fatalf("%s: seed %d of %s has no %s fault", c.bug, c.seed, b.Scenario, c.kind)
		}
		for _, s := range []*faults.Schedule{&full, &without} {
			rep, err := scenarios.Run(t, scenarios.Options{Seed: c.seed, Scenario: b.Scenario, Engine: b.Engine,
				SnapshotStore: b.SnapshotStore, Mutation: b.Mutation(), Schedule: s})
			if err != nil {
				t.Fatal(err)
			}
			withFault := s == &full
			if caught := !rep.OK && rep.Known == ""; caught != withFault {
				t.Errorf("%s, seed %d, with its %s faults %v: caught %v (violations %v)", c.bug, c.seed, c.kind, withFault, caught, rep.Violations)
			}
		}
	}
}
