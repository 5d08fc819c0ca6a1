package canaries

import (
	"testing"

	"github.com/raftsnap/testbed/scenarios"
	"github.com/raftsnap/testbed/sim"
)

// The operator canaries bite only through their operation: at the seed that
// catches each, the same run with that operation left out of the plan
// passes, bug and all.
func TestOperatorCanariesBiteOnlyThroughTheirOperation(t *testing.T) {
	for _, c := range []struct {
		bug  string
		seed uint64
		kind scenarios.OperatorKind
	}{
		{"delta-install-when-nearly-current", 1, scenarios.OpRestore},
		{"reload-drops-trailing-logs", 1, scenarios.OpReload},
		{"transfer-reports-before-handover", 1, scenarios.OpTransfer},
	} {
		b, ok := Lookup(c.bug)
		if !ok {
			t.Fatalf("%s: missing from the catalog", c.bug)
		}
		sc, _ := scenarios.Lookup(b.Scenario)
		full := sc.Operator(sim.Seed(c.seed), sc.Safety)
		var without []scenarios.OperatorOp
		for _, op := range full {
			if op.Kind != c.kind {
				without = append(without, op)
			}
		}
		if len(without) == len(full) {
			t.Fatalf("%s: seed %d of %s plans no %s", c.bug, c.seed, b.Scenario, c.kind)
		}
		for _, plan := range [][]scenarios.OperatorOp{full, without} {
			rep, err := scenarios.Run(t, scenarios.Options{Seed: c.seed, Scenario: b.Scenario, Engine: b.Engine,
				SnapshotStore: b.SnapshotStore, Mutation: b.Mutation(), Operator: plan})
			if err != nil {
				t.Fatal(err)
			}
			withOp := len(plan) == len(full)
			if caught := !rep.OK && rep.Known == ""; caught != withOp {
				t.Errorf("%s, seed %d, with its %s operations %v: caught %v (violations %v)", c.bug, c.seed, c.kind, withOp, caught, rep.Violations)
			}
		}
	}
}
