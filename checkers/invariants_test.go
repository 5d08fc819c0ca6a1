package checkers

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/raftsnap/testbed/cluster"
	"github.com/raftsnap/testbed/sim"
)

// applyOf is node applying cmd as log entry index of term at virtual time at.
func applyOf(node string, at time.Duration, index, term uint64, cmd cluster.Command) Apply {
	return Apply{Node: node, At: at, Index: index, Term: term, Data: cmd.Encode()}
}

func setCmd(key, value string) cluster.Command {
	return cluster.Command{Op: cluster.OpSet, Key: []byte(key), Value: []byte(value)}
}

// appliesRange is node applying "set k<i>=v<i>" at indexes from..to, one
// millisecond apart starting at at.
func appliesRange(node string, at time.Duration, from, to, term uint64) []Apply {
	var out []Apply
	for i := from; i <= to; i++ {
		out = append(out, applyOf(node, at+time.Duration(i-from)*ms, i, term, setCmd(fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i))))
	}
	return out
}

// recv is the trace event of dst receiving a request from src, written as
// the simulated transport writes it.
func recv(at time.Duration, kind, src, dst string, seq int, term uint64) sim.Event {
	detail := fmt.Sprintf("%s %s->%s #%d term=%d", kind, src, dst, seq, term)
	switch kind {
	case "AppendEntries":
		detail += " prev=4 prevterm=1 n=1 commit=4"
	case "RequestVote":
		detail += " last=4 lastterm=1 transfer=false"
	}
	return sim.Event{At: at, Node: dst, Kind: "recv", Detail: detail}
}

func crashEvent(at time.Duration, node string) sim.Event {
	return sim.Event{At: at, Node: node, Kind: "crash", Detail: "process"}
}

func expectViolation(t *testing.T, got []string, fragments ...string) {
	t.Helper()
	if len(got) != 1 {
		t.Fatalf("want exactly one violation containing %q, got %d: %q", fragments, len(got), got)
	}
	for _, f := range fragments {
		if !strings.Contains(got[0], f) {
			t.Fatalf("violation %q does not mention %q", got[0], f)
		}
	}
}

func expectNone(t *testing.T, got []string) {
	t.Helper()
	if len(got) != 0 {
		t.Fatalf("good history judged bad: %q", got)
	}
}

func TestRaftInvariantsCatchTwoLeadersInOneTerm(t *testing.T) {
	events := []sim.Event{
		recv(100*ms, "AppendEntries", "n0", "n1", 1, 2),
		recv(150*ms, "Heartbeat", "n2", "n3", 7, 2), // n2 also leads term 2
		recv(160*ms, "Heartbeat", "n2", "n4", 8, 2), // same pair: reported once
	}
	expectViolation(t, RaftInvariants(events, RunLog{}), "two leaders in term 2", "n0", "n2", "Heartbeat n2->n3 #7")

	// A leader found through InstallSnapshot and through a duplicate
	// delivery counts the same.
	events = []sim.Event{
		recv(100*ms, "InstallSnapshot", "n0", "n1", 1, 4),
		{At: 120 * ms, Node: "n3", Kind: "recv-dup", Detail: "AppendEntries n1->n3 #2 term=4 prev=0 prevterm=0 n=0 commit=3"},
	}
	expectViolation(t, RaftInvariants(events, RunLog{}), "two leaders in term 4", "n0", "n1")
}

func TestRaftInvariantsAcceptOneLeaderPerTermAndIgnoreRepliesAndVotes(t *testing.T) {
	events := []sim.Event{
		recv(100*ms, "AppendEntries", "n0", "n1", 1, 2),
		recv(110*ms, "Heartbeat", "n0", "n2", 1, 2),
		// n1 has moved to term 3 and says so in its reply to n0's term-2
		// request: the reply's term is the responder's, not n0's.
		{At: 120 * ms, Node: "n0", Kind: "reply", Detail: "AppendEntries n0->n1 #2 term=3 last=4 ok=false"},
		// n2 campaigns in term 3: a vote request is not leadership.
		recv(130*ms, "RequestVote", "n2", "n0", 1, 3),
		recv(140*ms, "AppendEntries", "n1", "n2", 1, 3),
		// The same node may lead again in a later term, and a deposed
		// leader's late message for its own old term is still its own.
		recv(200*ms, "AppendEntries", "n0", "n2", 3, 4),
		recv(210*ms, "Heartbeat", "n0", "n1", 9, 2),
		{At: 220 * ms, Node: "n0", Kind: "drop", Detail: "AppendEntries n2->n0 #5 partition"},
	}
	expectNone(t, RaftInvariants(events, RunLog{}))
}

func TestRaftInvariantsCatchDivergentAppliesAtOneIndex(t *testing.T) {
	good := RunLog{Applies: []Apply{
		applyOf("n0", 10*ms, 5, 2, setCmd("k", "a")),
		applyOf("n1", 12*ms, 5, 2, setCmd("k", "a")),
		{Node: "n1", At: 13 * ms, Index: 6, Term: 2, Config: true, Data: []byte("conf")},
		{Node: "n0", At: 13 * ms, Index: 6, Term: 2, Config: true, Data: []byte("conf")},
	}}
	expectNone(t, RaftInvariants(nil, good))

	bad := RunLog{Applies: []Apply{
		applyOf("n0", 10*ms, 5, 2, setCmd("k", "a")),
		applyOf("n1", 12*ms, 5, 2, setCmd("k", "b")),
	}}
	expectViolation(t, RaftInvariants(nil, bad), "n0 and n1 applied different entries at index 5", `set "k"="a"`, `set "k"="b"`)

	// Same data under another term is another entry, and one node
	// disagreeing with itself across a restart is caught too.
	bad = RunLog{
		Applies: []Apply{
			applyOf("n0", 10*ms, 5, 2, setCmd("k", "a")),
			applyOf("n0", 300*ms, 5, 3, setCmd("k", "a")),
		},
		Starts: []Start{{Node: "n0", At: 0}, {Node: "n0", At: 200 * ms, Applied: 4}},
	}
	got := RaftInvariants([]sim.Event{crashEvent(100*ms, "n0")}, bad)
	if len(got) == 0 || !strings.Contains(got[0], "n0 and n0 applied different entries at index 5") {
		t.Fatalf("divergent apply across a restart not caught: %q", got)
	}
}

func TestRaftInvariantsCatchAnInstallBelowTheAppliedIndex(t *testing.T) {
	log := RunLog{
		Starts:   []Start{{Node: "n1", At: 0}},
		Applies:  appliesRange("n1", 10*ms, 1, 10, 1),
		Installs: []Install{{Node: "n1", At: 500 * ms, Index: 6, Term: 1}},
	}
	expectViolation(t, RaftInvariants(nil, log), "n1 installed a snapshot at index 6 at 500ms", "below applied index 10 (reached at 19ms)")

	// An install above the applied index moves the node forward; applies
	// then continue above it.
	log.Installs = []Install{{Node: "n1", At: 500 * ms, Index: 40, Term: 2}}
	log.Applies = append(log.Applies, applyOf("n1", 600*ms, 41, 2, setCmd("k", "x")))
	expectNone(t, RaftInvariants(nil, log))
}

func TestRaftInvariantsCatchASnapshotIndexGoingBackwards(t *testing.T) {
	log := RunLog{
		Starts: []Start{{Node: "n1", At: 0}},
		Installs: []Install{
			{Node: "n1", At: 100 * ms, Index: 20, Term: 1},
			{Node: "n1", At: 200 * ms, Index: 15, Term: 1},
		},
	}
	expectViolation(t, RaftInvariants(nil, log), "index 15 at 200ms", "below applied index 20", "below snapshot index 20 installed at 100ms")

	// The same snapshot installed twice is not a regression.
	log.Installs[1].Index = 20
	expectNone(t, RaftInvariants(nil, log))
}

func TestRaftInvariantsCatchAnIndexAppliedTwiceInOneProcess(t *testing.T) {
	log := RunLog{
		Starts: []Start{{Node: "n0", At: 0}},
		Applies: append(appliesRange("n0", 10*ms, 1, 5, 1),
			applyOf("n0", 100*ms, 4, 1, setCmd("k4", "v4"))), // re-applied
	}
	expectViolation(t, RaftInvariants(nil, log), "n0 applied index 4 at 100ms after reaching index 5 at 14ms in the same process")
}

func TestRaftInvariantsOrderSameInstantInstallsAndAppliesFavourably(t *testing.T) {
	// The run log lists applies and installs separately: at one instant an
	// install at 10 followed by the apply of 11 is a legal history, so it
	// passes whatever order the two lists suggest.
	log := RunLog{
		Starts:   []Start{{Node: "n1", At: 0}},
		Applies:  append(appliesRange("n1", 10*ms, 1, 3, 1), applyOf("n1", 300*ms, 11, 2, setCmd("k", "x"))),
		Installs: []Install{{Node: "n1", At: 300 * ms, Index: 10, Term: 2}},
	}
	expectNone(t, RaftInvariants(nil, log))

	// But an install below an index applied at the same instant leaves a
	// trace: the entry is applied again.
	log.Applies = append(appliesRange("n1", 10*ms, 1, 3, 1),
		applyOf("n1", 300*ms, 11, 2, setCmd("k", "x")), applyOf("n1", 300*ms, 11, 2, setCmd("k", "x")))
	if got := RaftInvariants(nil, log); len(got) == 0 {
		t.Fatal("install below an index applied at the same instant, then that index applied again, not caught")
	}
}

func TestRaftInvariantsCatchAppliedIndexRegressingAfterARestart(t *testing.T) {
	// n2 applied 1..8 before it crashed at 100ms, but restarted at 5.
	log := RunLog{
		Starts:  []Start{{Node: "n2", At: 0}, {Node: "n2", At: 200 * ms, Applied: 5}},
		Applies: appliesRange("n2", 10*ms, 1, 8, 1),
	}
	events := []sim.Event{crashEvent(100*ms, "n2")}
	expectViolation(t, RaftInvariants(events, log), "n2 restarted at 200ms with applied index 5, below index 8 it had applied at 17ms before crashing")

	// Restarting where it was is fine, and so is a later crash of the new
	// process.
	log.Starts[1].Applied = 8
	log.Applies = append(log.Applies, appliesRange("n2", 300*ms, 9, 12, 2)...)
	log.Starts = append(log.Starts, Start{Node: "n2", At: 600 * ms, Applied: 12})
	events = append(events, crashEvent(500*ms, "n2"))
	expectNone(t, RaftInvariants(events, log))
}

func TestRaftInvariantsIgnoreAppliesAtOrAfterTheCrashInstant(t *testing.T) {
	// n2 was killed at 13ms. It applied 1..4 before; 5 is recorded at the
	// crash instant itself (same-instant events have no order, so it may
	// have come after the kill), and the old process went on applying
	// 6..8 after it (its writes land on state nobody reads). Restarting
	// at 4 loses nothing durable.
	log := RunLog{
		Starts: []Start{{Node: "n2", At: 0}, {Node: "n2", At: 200 * ms, Applied: 4}},
		Applies: append(appliesRange("n2", 9*ms, 1, 5, 1), // 9..13ms
			applyOf("n2", 14*ms, 6, 1, setCmd("k6", "v6")),
			applyOf("n2", 20*ms, 7, 1, setCmd("k7", "v7")),
			applyOf("n2", 20*ms, 8, 1, setCmd("k8", "v8"))),
	}
	expectNone(t, RaftInvariants([]sim.Event{crashEvent(13*ms, "n2")}, log))

	// Had the kill come one millisecond later, 5 was durable and the
	// restart at 4 lost it.
	expectViolation(t, RaftInvariants([]sim.Event{crashEvent(14*ms, "n2")}, log),
		"n2 restarted at 200ms with applied index 4, below index 5 it had applied at 13ms")
}

func TestRaftInvariantsAcceptARecoveryInstallDuringRestart(t *testing.T) {
	// n1 crashed mid-install; on restart it installs the snapshot its store
	// kept (during StartNode, before the Start record) and starts at it.
	log := RunLog{
		Starts:   []Start{{Node: "n1", At: 0}, {Node: "n1", At: 300 * ms, Applied: 50}},
		Applies:  append(appliesRange("n1", 10*ms, 1, 5, 1), applyOf("n1", 400*ms, 51, 3, setCmd("k", "x"))),
		Installs: []Install{{Node: "n1", At: 300 * ms, Index: 50, Term: 3}},
	}
	events := []sim.Event{crashEvent(100*ms, "n1")}
	expectNone(t, RaftInvariants(events, log))
}
