package checkers

import (
	"strings"
	"testing"

	"github.com/raftsnap/testbed/cluster"
)

func delCmd(key string) cluster.Command {
	return cluster.Command{Op: cluster.OpDelete, Key: []byte(key)}
}

func casCmd(key, expected, value string) cluster.Command {
	return cluster.Command{Op: cluster.OpCAS, Key: []byte(key), Expected: []byte(expected), Value: []byte(value)}
}

func casAbsentCmd(key, value string) cluster.Command {
	return cluster.Command{Op: cluster.OpCAS, Key: []byte(key), ExpectAbsent: true, Value: []byte(value)}
}

// digestOf is the digest of a node holding exactly pairs (key, value, ...),
// written out by hand so the tests do not trust the replay they check.
func digestOf(pairs ...string) string { return state("", 0, pairs...).Digest() }

// committed is a log applied by n0 (the leader) and partly by n1:
//
//	1 set a=1   2 set b=2   3 (no-op, never applied)   4 delete a
//	5 set c=3   6 configuration   7 set b=4
func committed() []Apply {
	return []Apply{
		applyOf("n0", 10*ms, 1, 1, setCmd("a", "1")),
		applyOf("n0", 11*ms, 2, 1, setCmd("b", "2")),
		applyOf("n1", 12*ms, 1, 1, setCmd("a", "1")),
		applyOf("n0", 30*ms, 4, 2, delCmd("a")),
		applyOf("n0", 31*ms, 5, 2, setCmd("c", "3")),
		{Node: "n0", At: 32 * ms, Index: 6, Term: 2, Config: true, Data: []byte("servers")},
		applyOf("n0", 40*ms, 7, 2, setCmd("b", "4")),
	}
}

func TestSnapshotIntegrityAcceptsFaithfulInstalls(t *testing.T) {
	log := RunLog{Applies: committed(), Installs: []Install{
		// Index 3 is a gap (a no-op): the state is that of index 2.
		{Node: "n1", At: 50 * ms, Index: 3, Term: 1, Digest: digestOf("a", "1", "b", "2")},
		{Node: "n2", At: 60 * ms, Index: 5, Term: 2, Digest: digestOf("b", "2", "c", "3")},
		{Node: "n2", At: 70 * ms, Index: 6, Term: 2, Digest: digestOf("b", "2", "c", "3")},
		{Node: "n1", At: 80 * ms, Index: 7, Term: 2, Digest: digestOf("b", "4", "c", "3")},
	}}
	expectNone(t, SnapshotIntegrity(log))
	if got := SnapshotIntegrity(RunLog{Applies: committed()}); got != nil {
		t.Fatalf("no installs, yet violations: %q", got)
	}
}

func TestSnapshotIntegrityCatchesAStaleKeyKept(t *testing.T) {
	// The install at 5 kept "a", which index 4 deleted: the snapshot was
	// installed over the old contents without clearing them.
	log := RunLog{Applies: committed(), Installs: []Install{
		{Node: "n2", At: 60 * ms, Index: 5, Term: 2, Digest: digestOf("a", "1", "b", "2", "c", "3")},
	}}
	expectViolation(t, SnapshotIntegrity(log), "n2 installed a snapshot at index 5 at 60ms", "replaying the committed log up to 5 gives "+digestOf("b", "2", "c", "3"), "matches the replay at no index")
}

func TestSnapshotIntegrityCatchesAMissingKey(t *testing.T) {
	// A truncated stream that still got installed: "c" never arrived.
	log := RunLog{Applies: committed(), Installs: []Install{
		{Node: "n2", At: 80 * ms, Index: 7, Term: 2, Digest: digestOf("b", "4")},
	}}
	expectViolation(t, SnapshotIntegrity(log), "n2 installed a snapshot at index 7", "matches the replay at no index")
}

func TestSnapshotIntegrityNamesTheIndexAStaleSnapshotReflects(t *testing.T) {
	// The state is that of index 2 but the snapshot claims index 7: a
	// snapshot whose contents lag behind its header.
	log := RunLog{Applies: committed(), Installs: []Install{
		{Node: "n2", At: 80 * ms, Index: 7, Term: 2, Digest: digestOf("a", "1", "b", "2")},
	}}
	expectViolation(t, SnapshotIntegrity(log), "equals the replay up to index 2")
}

func TestSnapshotIntegrityCatchesAnInstallFromADivergentHistory(t *testing.T) {
	// The install claims index 5 in term 3, but index 5 was committed in
	// term 2: the snapshot comes from a divergent history.
	log := RunLog{Applies: committed(), Installs: []Install{
		{Node: "n2", At: 60 * ms, Index: 5, Term: 3, Digest: digestOf("b", "2", "c", "3")},
	}}
	expectViolation(t, SnapshotIntegrity(log), "n2 installed a snapshot at index 5 term 3", "n0 applied index 5 with term 2")
}

func TestSnapshotIntegrityReportsAnUnreadableState(t *testing.T) {
	log := RunLog{Applies: committed(), Installs: []Install{{Node: "n2", At: 60 * ms, Index: 5, Term: 2}}}
	expectViolation(t, SnapshotIntegrity(log), "could not be read back")
}

func TestSnapshotIntegrityReplaysCASDeleteAndGetLikeTheStateMachine(t *testing.T) {
	applies := []Apply{
		applyOf("n0", 1*ms, 1, 1, casAbsentCmd("x", "1")), // x absent: swaps, x=1
		applyOf("n0", 2*ms, 2, 1, casAbsentCmd("x", "2")), // x present: fails
		applyOf("n0", 3*ms, 3, 1, casCmd("x", "9", "3")),  // x is 1, not 9: fails
		applyOf("n0", 4*ms, 4, 1, casCmd("x", "1", "4")),  // x is 1: swaps, x=4
		applyOf("n0", 5*ms, 5, 1, casCmd("y", "", "5")),   // y absent, not expected absent: fails
		applyOf("n0", 6*ms, 6, 1, setCmd("z", "")),        // z present with an empty value
		applyOf("n0", 7*ms, 7, 1, casCmd("z", "", "7")),   // z is "": swaps, z=7
		applyOf("n0", 8*ms, 8, 1, cluster.Command{Op: cluster.OpGet, Key: []byte("x")}),
		applyOf("n0", 9*ms, 9, 1, delCmd("z")),             // z gone
		applyOf("n0", 10*ms, 10, 1, delCmd("never-there")), // deleting an absent key changes nothing
		applyOf("n0", 11*ms, 11, 1, casAbsentCmd("z", "11")),
		{Node: "n0", At: 12 * ms, Index: 12, Term: 1, Data: []byte{0xff, 1, 2}}, // malformed: a no-op
	}
	want := digestOf("x", "4", "z", "11")
	log := RunLog{Applies: applies, Installs: []Install{{Node: "n1", At: 20 * ms, Index: 12, Term: 1, Digest: want}}}
	expectNone(t, SnapshotIntegrity(log))

	// A replay that let the failed CAS at 3 through would end with x=3
	// (and then fail the CAS at 4): that state is judged wrong.
	log.Installs[0].Digest = digestOf("x", "3", "z", "11")
	got := SnapshotIntegrity(log)
	if len(got) != 1 || !strings.Contains(got[0], "replaying the committed log up to 12 gives "+want) {
		t.Fatalf("state with a failed CAS applied not caught: %q", got)
	}
}

func TestSnapshotIntegrityTakesTheFirstApplyOfAConflictingIndex(t *testing.T) {
	// n1 diverged at index 2 (RaftInvariants reports that); the reference
	// is what was applied first.
	applies := []Apply{
		applyOf("n0", 10*ms, 1, 1, setCmd("a", "1")),
		applyOf("n0", 11*ms, 2, 1, setCmd("a", "2")),
		applyOf("n1", 12*ms, 2, 1, setCmd("a", "bad")),
	}
	log := RunLog{Applies: applies, Installs: []Install{{Node: "n2", At: 20 * ms, Index: 2, Term: 1, Digest: digestOf("a", "2")}}}
	expectNone(t, SnapshotIntegrity(log))
	log.Installs[0].Digest = digestOf("a", "bad")
	if got := SnapshotIntegrity(log); len(got) != 1 {
		t.Fatalf("install of the divergent value not caught: %q", got)
	}
}
