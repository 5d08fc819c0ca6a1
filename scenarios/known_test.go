package scenarios

import (
	"strings"
	"testing"
)

// The livelock of hashicorp/raft#697 must keep being caught: if a raft
// upgrade fixes it these runs pass and this test says so, and the seeds can
// leave KnownIssues. Scheduling differs from run to run (see README on
// determinism), so one of two seeds that reproduce it reliably must show
// it.
func TestKnownUpstreamLivelockIsCaught(t *testing.T) {
	var caught []string
	for _, seed := range []uint64{59, 120} {
		rep, err := Run(t, Options{Seed: seed, Scenario: "snapshot-install", Engine: EnginePebble})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range rep.Violations {
			if strings.Contains(v, "livelock") {
				caught = append(caught, v)
			}
		}
	}
	if len(caught) == 0 {
		t.Fatal("neither seed 59 nor 120 showed the raft#697 livelock; if raft was upgraded and fixed it, remove them from KnownIssues")
	}
	t.Logf("caught: %s", strings.Join(caught, "; "))
}
