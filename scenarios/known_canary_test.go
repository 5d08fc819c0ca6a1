package scenarios_test

import (
	"testing"

	"github.com/raftsnap/testbed/canaries"
	"github.com/raftsnap/testbed/scenarios"
)

// A planted bug's failure is no known upstream bug: a lost fsync (caught by
// liveness, like the raft livelock) and a state machine that re-applies
// entries (caught by the raft invariants) fail at their first seed and no
// fingerprint matches them, so a sweep reports them as new failures.
func TestCanaryFailuresMatchNoFingerprint(t *testing.T) {
	for _, name := range []string{"lost-fsync", "reapply-after-restart"} {
		b, ok := canaries.Lookup(name)
		if !ok {
			t.Fatalf("no canary %s", name)
		}
		rep, err := scenarios.Run(t, scenarios.Options{Seed: 1, Scenario: b.Scenario, Engine: b.Engine, Mutation: b.Mutation()})
		if err != nil {
			t.Fatal(err)
		}
		if rep.OK {
			t.Fatalf("%s: seed 1 passed; the test needs a failing run", name)
		}
		if rep.Known != "" {
			t.Errorf("%s: labelled as the known upstream bug %s: %v", name, rep.Known, rep.Violations)
		}
		for _, f := range scenarios.Fingerprints {
			if f.Match(scenarios.Evidence{Violations: rep.Violations, Events: rep.Events}) {
				t.Errorf("%s matches the fingerprint of %s: %v", name, f.Name, rep.Violations)
			}
		}
		if rep.Signature == "" {
			t.Errorf("%s: a failing run without a signature", name)
		}
		t.Logf("%s: %s", name, rep.Signature)
	}
}
