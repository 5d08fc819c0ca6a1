//go:debug randseednop=0

package timeline_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/raftsnap/testbed/canaries"
	"github.com/raftsnap/testbed/checkers"
	"github.com/raftsnap/testbed/cluster"
	"github.com/raftsnap/testbed/scenarios"
	"github.com/raftsnap/testbed/sim"
	"github.com/raftsnap/testbed/timeline"
)

const s = time.Second

func ev(at time.Duration, node, kind, detail string) sim.Event {
	return sim.Event{At: at, Node: node, Kind: kind, Detail: detail}
}

func spansOf(tl *timeline.Timeline, track, row string) []timeline.Span {
	var out []timeline.Span
	for _, sp := range tl.Spans {
		if sp.Track == track && sp.Row == row {
			out = append(out, sp)
		}
	}
	return out
}

func names(spans []timeline.Span) string {
	var n []string
	for _, sp := range spans {
		n = append(n, sp.Name)
	}
	return strings.Join(n, ", ")
}

func TestRolesAreReadOffTheWire(t *testing.T) {
	events := []sim.Event{
		ev(0, "n0", "start", ""), ev(0, "n1", "start", ""),
		ev(1*s, "n0", "send", "RequestVote n0->n1 #0"),
		ev(1*s+1, "n1", "recv", "RequestVote n0->n1 #0 term=2 last=1 lastterm=1 transfer=false"),
		ev(2*s, "n0", "send", "AppendEntries n0->n1 #0"),
		ev(2*s+1, "n1", "recv", "AppendEntries n0->n1 #0 term=2 prev=1 prevterm=1 n=0 commit=3"),
		ev(3*s, "n1", "crash", "process"),
		ev(4*s, "n1", "start", ""),
		// n1 runs for term 5; n0 hears of it in a reply and steps down.
		ev(5*s, "n1", "send", "RequestVote n1->n0 #0"),
		ev(5*s+1, "n0", "recv", "RequestVote n1->n0 #0 term=5 last=1 lastterm=1 transfer=false"),
		ev(6*s, "n1", "send", "Heartbeat n1->n0 #0"),
		ev(6*s+1, "n0", "recv", "Heartbeat n1->n0 #0 term=5 prev=0 prevterm=0 n=0 commit=0"),
		ev(7*s, "", "phase", "liveness"),
	}
	tl := timeline.Build("roles", events, checkers.RunLog{}, nil)
	if got, want := names(spansOf(tl, "n0", "role")), "follower t0, candidate t2, leader t2, follower t5"; got != want {
		t.Errorf("n0 roles: %s, want %s", got, want)
	}
	if got, want := names(spansOf(tl, "n1", "role")), "follower t0, follower t2, down, follower t2, candidate t5, leader t5"; got != want {
		t.Errorf("n1 roles: %s, want %s", got, want)
	}
	for _, sp := range spansOf(tl, "n1", "role") {
		if sp.Kind == "down" && (sp.Start != 3*s || sp.End != 4*s) {
			t.Errorf("n1 down %v..%v, want 3s..4s (crash to restart)", sp.Start, sp.End)
		}
	}
}

func TestASnapshotSendAndReceiveAreSpansOnBothSides(t *testing.T) {
	events := []sim.Event{
		ev(1*s, "n0", "send", "InstallSnapshot n0->n1 #0"),
		ev(1*s+5, "n1", "recv", "InstallSnapshot n0->n1 #0 term=2 last=40 lastterm=2 size=100"),
		ev(1*s+6, "n0", "stream-fault", "cut InstallSnapshot n0->n1 #0 at=50"),
		ev(2*s, "n0", "fail", "InstallSnapshot n0->n1 #0 timeout"),
		ev(3*s, "n0", "send", "InstallSnapshot n0->n1 #1"),
		ev(3*s+5, "n1", "recv", "InstallSnapshot n0->n1 #1 term=2 last=40 lastterm=2 size=100"),
		ev(3*s+9, "n1", "snapshot-restore", "index=40 term=2 kept=false err=<nil>"),
		ev(3*s+10, "n0", "reply", "InstallSnapshot n0->n1 #1 term=2 ok=true"),
	}
	tl := timeline.Build("snap", events, checkers.RunLog{}, nil)
	sends := spansOf(tl, "n0", "snapshot → n1")
	if len(sends) != 2 || sends[0].Kind != "fail" || sends[1].Kind != "snapshot" || sends[0].End != 2*s {
		t.Fatalf("sends %+v: want a failed one ending at its timeout, then an acknowledged one", sends)
	}
	recvs := spansOf(tl, "n1", "snapshot ←")
	if len(recvs) != 2 || recvs[0].Kind != "fail" || recvs[1].Kind != "snapshot" || recvs[1].End != 3*s+9 {
		t.Fatalf("receives %+v: want one that restored nothing, then one ending at its restore", recvs)
	}
}

func TestFaultsClientsAndCountersAreLaidOut(t *testing.T) {
	events := []sim.Event{
		ev(1*s, "", "fault", "t=1s +2s partition target=n0|n1,n2"),
		ev(3*s, "", "heal", "t=1s +2s partition target=n0|n1,n2"),
		ev(2*s, "", "fault", "t=2s +1s loss target=all p=0.1"),
		ev(3*s, "", "heal", "t=2s +1s loss target=all p=0.1"),
	}
	log := checkers.RunLog{Applies: []checkers.Apply{{Node: "n1", At: s, Index: 1}, {Node: "n1", At: 2 * s, Index: 2}}}
	hist := []cluster.Call{
		{Client: 0, Command: cluster.Command{Op: cluster.OpSet, Key: []byte("k"), Value: []byte("v")}, Invoke: s, Return: 2 * s, Outcome: cluster.OutcomeOK},
		{Client: 0, Command: cluster.Command{Op: cluster.OpGet, Key: []byte("k")}, Invoke: 2 * s, Return: 4 * s, Outcome: cluster.OutcomeUnknown},
	}
	tl := timeline.Build("layout", events, log, hist)
	if got := names(spansOf(tl, "faults", "partition")); got != "partition target=n0|n1,n2" {
		t.Errorf("partition spans: %q", got)
	}
	ops := spansOf(tl, "clients", "client 0")
	if len(ops) != 2 || ops[0].Kind != "ok" || ops[1].Kind != "unknown" || ops[1].End != 4*s {
		t.Errorf("client spans %+v", ops)
	}
	var applied []uint64
	for _, sm := range tl.Samples {
		if sm.Track == "n1" && sm.Name == "applied index" {
			applied = append(applied, sm.Value)
		}
	}
	if len(applied) != 2 || applied[1] != 2 {
		t.Errorf("n1 applied samples %v, want [1 2]", applied)
	}
}

// chromeTrace is the part of the trace-event format the viewers need.
type chromeTrace struct {
	TraceEvents []struct {
		Name string         `json:"name"`
		Ph   string         `json:"ph"`
		Ts   float64        `json:"ts"`
		Dur  float64        `json:"dur"`
		Pid  int            `json:"pid"`
		Tid  int            `json:"tid"`
		Args map[string]any `json:"args"`
	} `json:"traceEvents"`
}

// A real failing run: the canary that keeps stale keys on install, seed 1
// on the copying snapshot store (a crash of n1 from 3s until about 20s,
// then a snapshot install to it).
func TestTimelineOfACanaryRun(t *testing.T) {
	bug, ok := canaries.Lookup("install-keeps-stale-keys")
	if !ok {
		t.Fatal("canary install-keeps-stale-keys is gone")
	}
	rep, err := scenarios.Run(t, scenarios.Options{Seed: 1, Scenario: bug.Scenario, Engine: bug.Engine, SnapshotStore: cluster.StoreCopy, Mutation: bug.Mutation()})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK {
		t.Fatal("test premise: the canary fails seed 1")
	}
	tl := timeline.Build("canary", rep.Events, rep.Log, rep.History)

	leaders := 0
	for _, sp := range tl.Spans {
		if sp.Row == "role" && sp.Kind == "leader" {
			leaders++
		}
	}
	if leaders == 0 {
		t.Error("no leader span in a run that elected one")
	}
	var down []timeline.Span
	for _, sp := range spansOf(tl, "n1", "role") {
		if sp.Kind == "down" {
			down = append(down, sp)
		}
	}
	if len(down) != 1 || down[0].Start != 3*s {
		t.Errorf("n1 down spans %+v, want one from its crash at 3s", down)
	}
	installed := false
	for _, sp := range spansOf(tl, "n1", "snapshot ←") {
		installed = installed || sp.Kind == "snapshot"
	}
	if !installed {
		t.Error("no successful snapshot receive on n1, which installed one")
	}
	if len(tl.Spans) < rep.Ops {
		t.Errorf("%d spans for %d client operations", len(tl.Spans), rep.Ops)
	}

	var buf bytes.Buffer
	if err := tl.WriteChrome(&buf); err != nil {
		t.Fatal(err)
	}
	var ct chromeTrace
	if err := json.Unmarshal(buf.Bytes(), &ct); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	procs := map[string]bool{}
	counters := 0
	// Spans on one thread must nest or follow each other for the viewers
	// to draw them; the layout keeps them apart.
	type thread struct{ pid, tid int }
	lastEnd := map[thread]float64{}
	for _, e := range ct.TraceEvents {
		switch e.Ph {
		case "M":
			if e.Name == "process_name" {
				procs[e.Args["name"].(string)] = true
			}
		case "C":
			counters++
		case "X":
			th := thread{e.Pid, e.Tid}
			if e.Ts < lastEnd[th] {
				t.Fatalf("span %q at %vµs overlaps the previous one on its thread (ends %vµs)", e.Name, e.Ts, lastEnd[th])
			}
			lastEnd[th] = e.Ts + e.Dur
		}
	}
	for _, want := range []string{"n0", "n1", "n2", "n3", "n4", "clients", "faults"} {
		if !procs[want] {
			t.Errorf("no track %q in %v", want, procs)
		}
	}
	if counters == 0 {
		t.Error("no counter samples")
	}

	buf.Reset()
	if err := tl.WriteSVG(&buf, 1200); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(buf.String(), "<svg") || !strings.Contains(buf.String(), `class="span leader"`) {
		t.Errorf("SVG lacks its leader spans: %.200s", buf.String())
	}
}
