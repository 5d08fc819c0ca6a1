package checkers

import (
	"strings"
	"testing"
	"time"

	"github.com/raftsnap/testbed/cluster"
)

// A restore to a backup holding a=old at [10s, 20s]: a=new was written
// before it, b only before it (the backup lacks b).
func restoredHistory(readA, readB string) []cluster.Call {
	h := []cluster.Call{
		linPut(1, "a", "old", linAbsent, 1*time.Second, 2*time.Second, callOK),
		linPut(1, "a", "new", "old", 3*time.Second, 4*time.Second, callOK),
		linPut(1, "b", "x", linAbsent, 5*time.Second, 6*time.Second, callOK),
		linRead(2, "a", linLog, readA, 30*time.Second, 31*time.Second),
		linRead(2, "b", linLog, readB, 32*time.Second, 33*time.Second),
	}
	return WithRestores(h, []UserRestore{{Node: "n0", Invoke: 10 * time.Second, Return: 20 * time.Second, Outcome: callOK,
		Pairs: map[string][]byte{"a": []byte("old")}}})
}

// Reads after a restore must see the backup: its value for a key it holds,
// and no value for a key it lacks.
func TestARestoreIsJudgedAsAResetOfEveryKey(t *testing.T) {
	if v := Linearizability(restoredHistory("old", linAbsent), LinearizabilityOptions{}).Violations(); len(v) != 0 {
		t.Fatalf("reads of the backup after the restore: %v", v)
	}
	for _, bad := range [][2]string{{"new", linAbsent}, {"old", "x"}} {
		v := Linearizability(restoredHistory(bad[0], bad[1]), LinearizabilityOptions{}).Violations()
		if len(v) == 0 {
			t.Errorf("reads a=%q b=%q after a restore to a=old passed", bad[0], bad[1])
		}
	}
	// A restore of unknown outcome may or may not have happened.
	h := []cluster.Call{
		linPut(1, "a", "new", linAbsent, 3*time.Second, 4*time.Second, callOK),
		linRead(2, "a", linLog, "new", 30*time.Second, 31*time.Second),
		linRead(2, "a", linLog, "old", 32*time.Second, 33*time.Second),
	}
	h = WithRestores(h, []UserRestore{{Invoke: 10 * time.Second, Return: 20 * time.Second, Outcome: callUnknown, Pairs: map[string][]byte{"a": []byte("old")}}})
	if v := Linearizability(h, LinearizabilityOptions{}).Violations(); len(v) != 0 {
		t.Errorf("a restore of unknown outcome taking effect late: %v", v)
	}
	// A restore raft refused did nothing.
	h = WithRestores(h[:2], []UserRestore{{Invoke: 10 * time.Second, Return: 20 * time.Second, Outcome: callFail, Pairs: map[string][]byte{}}})
	if len(h) != 2 {
		t.Errorf("a refused restore added %d writes", len(h)-2)
	}
}

// Durability across a restore: a key the backup lacks may end absent, but
// not with a value written before the restore.
func TestDurabilityAcrossARestore(t *testing.T) {
	h := restoredHistory("old", linAbsent)
	if v := Durability(h, state("n1", 9, "a", "old")); len(v) != 0 {
		t.Errorf("the backup's state after a restore: %v", v)
	}
	if v := Durability(h, state("n1", 9, "a", "old", "b", "x")); len(v) == 0 {
		t.Error("a key the restore removed survived it, and passed")
	}
}

// The committed state at a restore's index is the backup's, and the log
// above it applies on top: installs are held to that.
func TestSnapshotIntegrityReplaysARestoreAsAReset(t *testing.T) {
	log := RunLog{
		Applies: append(committed(), applyOf("n0", 90*ms, 9, 2, setCmd("d", "5"))),
		Resets:  []Reset{{Node: "n0", Index: 8, Pairs: map[string][]byte{"a": []byte("9")}}},
		Installs: []Install{
			{Node: "n0", At: 80 * ms, Index: 8, Term: 2, Digest: digestOf("a", "9")},
			{Node: "n1", At: 95 * ms, Index: 9, Term: 2, Digest: digestOf("a", "9", "d", "5")},
		},
	}
	expectNone(t, SnapshotIntegrity(log))
	// A restore that kept keys the backup lacks (b, c) is caught.
	log.Installs[0].Digest = digestOf("a", "9", "b", "4", "c", "3")
	v := SnapshotIntegrity(log)
	if len(v) != 1 || !strings.Contains(v[0], "n0 installed a snapshot at index 8") {
		t.Errorf("violations %v, want the stale restore at 8", v)
	}
	// Without the reset, the backup's state is not the committed one.
	log.Installs[0].Digest = digestOf("a", "9")
	log.Resets = nil
	if len(SnapshotIntegrity(log)) != 2 {
		t.Errorf("installs of a restore no reset explains passed")
	}
}
