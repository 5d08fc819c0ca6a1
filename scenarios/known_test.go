package scenarios

import (
	"fmt"
	"strings"
	"testing"

	"github.com/raftsnap/testbed/sim"
)

// regressionSeeds are known issues kept as regression cases: runs replay,
// so each must fail the same way every time.
var regressionSeeds = []KnownIssue{
	{Scenario: "snapshot-install", Seed: 74, Engine: EnginePebble},
	{Scenario: "partition-heal", Seed: 8, Engine: EngineBbolt},
	{Scenario: "snapshot-crash", Seed: 109, Engine: EnginePebble},
}

// The hashicorp/raft snapshot-index livelock must keep being caught, with
// its fingerprint in the trace: if a raft upgrade fixes it these runs pass
// and this test says so, and the seeds can leave KnownIssues.
func TestKnownUpstreamLivelockIsCaught(t *testing.T) {
	for _, k := range regressionSeeds {
		rep, err := Run(t, Options{Seed: k.Seed, Scenario: k.Scenario, Engine: k.Engine})
		if err != nil {
			t.Fatal(err)
		}
		if rep.OK {
			t.Errorf("%s/%s seed %d passed: has raft fixed the snapshot-index livelock? then remove its seeds from KnownIssues", k.Scenario, k.Engine, k.Seed)
			continue
		}
		node, index, ok := RaftSnapshotHole(rep.Events)
		if !ok || !strings.Contains(strings.Join(rep.Violations, "\n"), node) {
			t.Errorf("%s/%s seed %d failed without the known fingerprint on the stuck node: %v", k.Scenario, k.Engine, k.Seed, rep.Violations)
			continue
		}
		t.Logf("%s seed %d: %s rejects AppendEntries at its snapshot's index %d: %s", k.Scenario, k.Seed, node, index, rep.Violations[0])
	}
}

// raft's future leak is reported as a violation, and the run ends: before
// Node.Await answered leaked futures at shutdown, this seed ended the whole
// process with synctest's deadlock panic.
func TestKnownUpstreamFutureLeakIsReported(t *testing.T) {
	rep, err := Run(t, Options{Seed: 355, Scenario: "swarm", Engine: EnginePebble})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || len(rep.Violations) != 1 || !strings.Contains(rep.Violations[0], "futures unanswered") {
		t.Fatalf("swarm 355 should fail with the future leak alone; violations: %v", rep.Violations)
	}
}

// Every known issue names a registered scenario, an engine and an issue.
func TestKnownIssuesAreWellFormed(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range KnownIssues {
		if _, ok := Lookup(k.Scenario); !ok || k.Seed == 0 || k.Issue == "" || k.Engine == "" {
			t.Errorf("malformed known issue %+v", k)
		}
		key := fmt.Sprintf("%s/%d", k.Scenario, k.Seed)
		if seen[key] {
			t.Errorf("%s listed twice", key)
		}
		seen[key] = true
	}
}

func ev(node, kind, detail string) sim.Event {
	return sim.Event{Node: node, Kind: kind, Detail: detail}
}

// The fingerprint: an install at raft index 581, then an AppendEntries
// with prev=581 rejected by a follower whose log reaches 608.
func TestRaftSnapshotHoleFingerprint(t *testing.T) {
	hole := []sim.Event{
		ev("n3", "recv", "InstallSnapshot n2->n3 #3 term=6 last=581 lastterm=3 size=7492"),
		ev("n2", "reply", "InstallSnapshot n2->n3 #3 term=6 ok=true"),
		ev("n3", "recv", "AppendEntries n2->n3 #40 term=6 prev=581 prevterm=3 n=31 commit=612"),
		ev("n2", "reply", "AppendEntries n2->n3 #40 term=6 last=608 ok=false"),
	}
	if node, index, ok := RaftSnapshotHole(hole); !ok || node != "n3" || index != 581 {
		t.Fatalf("got %s %d %v, want n3 581 true", node, index, ok)
	}
	for name, events := range map[string][]sim.Event{
		"accepted": {hole[0], hole[1], hole[2], ev("n2", "reply", "AppendEntries n2->n3 #40 term=6 last=612 ok=true")},
		// Rejected, but the follower's log ends below the snapshot: an
		// ordinary back-off, not the hole.
		"log behind": {hole[0], hole[1], hole[2], ev("n2", "reply", "AppendEntries n2->n3 #40 term=6 last=548 ok=false")},
		// Rejected at another index than the installed snapshot's.
		"other index": {hole[0], hole[1], ev("n3", "recv", "AppendEntries n2->n3 #40 term=6 prev=590 prevterm=3 n=1 commit=612"), hole[3]},
		// No install on that node at all.
		"no install": {hole[2], hole[3]},
	} {
		if node, index, ok := RaftSnapshotHole(events); ok {
			t.Errorf("%s: fingerprint found (%s %d) where there is none", name, node, index)
		}
	}
}
