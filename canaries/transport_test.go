package canaries

import (
	"testing"

	"github.com/raftsnap/testbed/scenarios"
)

// The lost-append canary lives on the pipelined path only: seed 2 of its
// scenario catches it, and the same seed without pipelining passes.
func TestPipelineCanaryBitesOnlyWhenPipelining(t *testing.T) {
	b, ok := Lookup("pipeline-acks-lost-appends")
	if !ok {
		t.Fatal("canary missing from the catalog")
	}
	for _, pipelining := range []bool{true, false} {
		rep, err := scenarios.Run(t, scenarios.Options{Seed: 2, Scenario: b.Scenario, Engine: b.Engine, Mutation: b.Mutation(), NoPipelining: !pipelining})
		if err != nil {
			t.Fatal(err)
		}
		if caught := !rep.OK && rep.Known == ""; caught != pipelining {
			t.Errorf("pipelining %v: caught %v (violations %v)", pipelining, caught, rep.Violations)
		}
	}
}
