package checkers

import (
	"strings"
	"testing"
	"time"

	"github.com/raftsnap/testbed/cluster"
	"github.com/raftsnap/testbed/engines"
)

func set(client int, key, value string, invoke, ret time.Duration, outcome cluster.Outcome) cluster.Call {
	return cluster.Call{Client: client, Command: cluster.Command{Op: cluster.OpSet, Key: []byte(key), Value: []byte(value)},
		Invoke: invoke, Return: ret, Outcome: outcome}
}

func del(client int, key string, invoke, ret time.Duration, outcome cluster.Outcome) cluster.Call {
	return cluster.Call{Client: client, Command: cluster.Command{Op: cluster.OpDelete, Key: []byte(key)},
		Invoke: invoke, Return: ret, Outcome: outcome}
}

func state(id string, index uint64, pairs ...string) NodeState {
	s := NodeState{ID: id, Applied: engines.Applied{Index: index}, Pairs: map[string][]byte{}}
	for i := 0; i+1 < len(pairs); i += 2 {
		s.Pairs[pairs[i]] = []byte(pairs[i+1])
	}
	return s
}

const ms = time.Millisecond

func TestDurabilityAcceptsTheLastAcknowledgedWrite(t *testing.T) {
	h := []cluster.Call{
		set(0, "k", "a", 0, 10*ms, cluster.OutcomeOK),
		set(1, "k", "b", 20*ms, 30*ms, cluster.OutcomeOK),
	}
	if v := Durability(h, state("n1", 5, "k", "b")); v != nil {
		t.Fatalf("good history judged bad: %v", v)
	}
}

func TestDurabilityAcceptsEitherOfTwoConcurrentWrites(t *testing.T) {
	h := []cluster.Call{
		set(0, "k", "a", 0, 30*ms, cluster.OutcomeOK),
		set(1, "k", "b", 10*ms, 20*ms, cluster.OutcomeOK),
	}
	for _, final := range []string{"a", "b"} {
		if v := Durability(h, state("n1", 5, "k", final)); v != nil {
			t.Fatalf("final %q judged bad: %v", final, v)
		}
	}
}

func TestDurabilityAcceptsAWriteOfUnknownOutcomeAppliedLate(t *testing.T) {
	h := []cluster.Call{
		set(0, "k", "late", 0, 3000*ms, cluster.OutcomeUnknown),
		set(1, "k", "b", 4000*ms, 4010*ms, cluster.OutcomeOK),
	}
	if v := Durability(h, state("n1", 5, "k", "late")); v != nil {
		t.Fatalf("unknown write applied late judged bad: %v", v)
	}
}

func TestDurabilityCatchesALostAcknowledgedWrite(t *testing.T) {
	h := []cluster.Call{
		set(0, "k", "a", 0, 10*ms, cluster.OutcomeOK),
		set(1, "k", "b", 20*ms, 30*ms, cluster.OutcomeOK),
	}
	v := Durability(h, state("n1", 5, "k", "a"))
	if len(v) != 1 || !strings.Contains(v[0], `"k"`) {
		t.Fatalf("lost write not reported: %v", v)
	}
	if v := Durability(h, state("n1", 5)); len(v) != 1 {
		t.Fatalf("key lost entirely not reported: %v", v)
	}
}

func TestDurabilityCatchesAFailedWriteThatTookEffectAndAPhantomValue(t *testing.T) {
	h := []cluster.Call{
		set(0, "k", "a", 0, 10*ms, cluster.OutcomeOK),
		set(1, "k", "never", 20*ms, 30*ms, cluster.OutcomeFail),
	}
	if v := Durability(h, state("n1", 5, "k", "never")); len(v) != 1 {
		t.Fatalf("failed write taking effect not reported: %v", v)
	}
	if v := Durability(h, state("n1", 5, "k", "a", "other", "x")); len(v) != 1 {
		t.Fatalf("phantom key not reported: %v", v)
	}
}

func TestDurabilityTreatsDeletesAsWritesOfAbsence(t *testing.T) {
	h := []cluster.Call{
		set(0, "k", "a", 0, 10*ms, cluster.OutcomeOK),
		del(1, "k", 20*ms, 30*ms, cluster.OutcomeOK),
	}
	if v := Durability(h, state("n1", 5)); v != nil {
		t.Fatalf("deleted key judged bad: %v", v)
	}
	if v := Durability(h, state("n1", 5, "k", "a")); len(v) != 1 {
		t.Fatalf("resurrected key not reported: %v", v)
	}
}

func TestConvergenceCatchesDifferentIndexesAndContents(t *testing.T) {
	good := []NodeState{state("n1", 9, "a", "1"), state("n2", 9, "a", "1")}
	if v := Convergence(good); v != nil {
		t.Fatalf("converged nodes judged bad: %v", v)
	}
	if v := Convergence([]NodeState{state("n1", 9, "a", "1"), state("n2", 8, "a", "1")}); len(v) != 1 {
		t.Fatalf("lagging node not reported: %v", v)
	}
	v := Convergence([]NodeState{state("n1", 9, "a", "1"), state("n2", 9, "a", "2")})
	if len(v) != 1 || !strings.Contains(v[0], `key "a"`) {
		t.Fatalf("diverged contents not reported with the key: %v", v)
	}
}
