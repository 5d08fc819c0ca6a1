package scenarios

import (
	"strings"
	"testing"
	"time"

	"github.com/raftsnap/testbed/sim"
)

// One seed on bbolt and on Pebble lives the same raft history and ends in
// the same state: engine work takes no virtual time. snapshot-crash adds
// crashes at every snapshot step (as process crashes on both engines).
func TestDifferentialEnginesAgree(t *testing.T) {
	for _, c := range []struct {
		scenario string
		seed     uint64
	}{{"snapshot-install", 1}, {"snapshot-install", 2}, {"snapshot-crash", 3}} {
		b, p, diffs, err := Differential(t, Options{Seed: c.seed, Scenario: c.scenario})
		if err != nil {
			t.Fatal(err)
		}
		if len(diffs) > 0 {
			t.Errorf("%s seed %d: %v", c.scenario, c.seed, diffs)
		}
		if !b.OK || !p.OK || b.SnapshotsInstalled == 0 {
			t.Errorf("%s seed %d: runs should pass and install snapshots: bbolt %v, pebble %v, %d installs",
				c.scenario, c.seed, b.Violations, p.Violations, b.SnapshotsInstalled)
		}
	}
}

func engineReport(engine string, events []sim.Event, digest string) Report {
	return Report{Engine: engine, Events: events, FinalDigest: digest, FinalIndex: 42}
}

// Engine names and engines' error prefixes are the only differences the
// comparison forgives; a different event, or a different final state, is
// reported with where it happened.
func TestCompareEngines(t *testing.T) {
	common := []sim.Event{
		{At: time.Second, Node: "", Kind: "run", Detail: "seed=1 engine=bbolt"},
		{At: 2 * time.Second, Node: "n1", Kind: "snapshot-restore", Detail: "index=9 err=bbolt: install source: cut"},
	}
	pebbleSame := []sim.Event{
		{At: time.Second, Node: "", Kind: "run", Detail: "seed=1 engine=pebble"},
		{At: 2 * time.Second, Node: "n1", Kind: "snapshot-restore", Detail: "index=9 err=pebble engine: install source: cut"},
	}
	if d := compareEngines(engineReport("bbolt", common, "d1"), engineReport("pebble", pebbleSame, "d1")); len(d) != 0 {
		t.Fatalf("equal runs reported as different: %v", d)
	}

	otherCause := append([]sim.Event{}, pebbleSame...)
	otherCause[1].Detail = "index=9 err=pebble engine: install source: corrupt"
	d := compareEngines(engineReport("bbolt", common, "d1"), engineReport("pebble", otherCause, "d1"))
	if len(d) != 1 || !strings.Contains(d[0], "event #1") {
		t.Fatalf("a different error cause: got %v, want the divergence at event #1", d)
	}

	extra := append(append([]sim.Event{}, pebbleSame...), sim.Event{At: 3 * time.Second, Node: "n2", Kind: "send", Detail: "Heartbeat n2->n1 #1"})
	d = compareEngines(engineReport("bbolt", common, "d1"), engineReport("pebble", extra, "d2"))
	if len(d) != 2 || !strings.Contains(d[0], "event #2") || !strings.Contains(d[1], "final state differs") {
		t.Fatalf("an extra event and another final state: got %v", d)
	}
}
