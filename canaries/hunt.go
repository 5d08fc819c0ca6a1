package canaries

import (
	"strings"
	"testing"

	"github.com/raftsnap/testbed/scenarios"
)

// CheckerOf names the checker that wrote a violation: the prefix before its
// first colon ("convergence", "durability", ...). A sentence without one,
// such as a node whose state machine stopped, is named by its first word.
func CheckerOf(violation string) string {
	prefix, _, found := strings.Cut(violation, ":")
	if !found || strings.ContainsRune(prefix, ' ') {
		word, _, _ := strings.Cut(violation, " ")
		return word
	}
	return prefix
}

// Hunt runs b on seeds 1..seeds of its scenario and engine until a run
// reports a violation that is not a known upstream bug's (a run whose
// failure a fingerprint explains, scenarios.Classify, is passed over). It returns that seed and the checker of the
// run's first violation; ok is false if no seed caught the bug. The
// binary running it needs the //go:debug randseednop=0 directive (see
// scenarios.Run).
func Hunt(t *testing.T, b Bug, seeds int) (firstSeed uint64, checker string, ok bool) {
	t.Helper()
	for s := uint64(1); s <= uint64(seeds); s++ {
		rep, err := scenarios.Run(t, scenarios.Options{Seed: s, Scenario: b.Scenario, Engine: b.Engine, SnapshotStore: b.SnapshotStore, Mutation: b.Mutation()})
		if err != nil {
			t.Fatalf("%s: seed %d: %v", b.Name, s, err)
		}
		if !rep.OK && rep.Known != "" {
			t.Logf("%s: seed %d fails with the known upstream bug %s; passed over", b.Name, s, rep.Known)
			continue
		}
		if !rep.OK {
			t.Logf("%s: caught at seed %d: %s", b.Name, s, rep.Violations[0])
			return s, CheckerOf(rep.Violations[0]), true
		}
	}
	return 0, "", false
}
