package scenarios

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raftsnap/testbed/faults"
	"github.com/raftsnap/testbed/sim"
)

// caseEnv names the KnownIssues case a child test process runs
// (TestKnownIssueChild): a case may end its process with raft's panic, so
// every case runs in a child, the way simrun runs seeds in workers.
const caseEnv = "RAFTSNAP_KNOWN_ISSUE_CASE"

// caseResultPrefix marks the child's result line on its standard output.
const caseResultPrefix = "known-issue-case-result: "

type caseResult struct {
	Violations []string    `json:"violations"`
	Events     []sim.Event `json:"events"`
}

// TestKnownIssueChild runs one case when a parent test asks for it, and
// prints its violations and trace; otherwise it does nothing.
func TestKnownIssueChild(t *testing.T) {
	name := os.Getenv(caseEnv)
	if name == "" {
		t.Skip("runs only as the child of TestKnownIssuesMatchTheirFingerprints")
	}
	for _, k := range KnownIssues {
		if k.Name != name {
			continue
		}
		opts := k.Options
		if k.Schedule != "" {
			sched, err := faults.Load(filepath.Join("..", k.Schedule))
			if err != nil {
				t.Fatal(err)
			}
			opts.Schedule = &sched
		}
		rep, err := Run(t, opts)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(caseResult{Violations: rep.Violations, Events: rep.Events})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("%s%s\n", caseResultPrefix, b)
		return
	}
	t.Fatalf("no case %q", name)
}

// runCase runs a case in a child process and returns what it left behind:
// its violations and trace, or, if the process died, the panic.
func runCase(t *testing.T, k KnownIssue) Evidence {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKnownIssueChild$", "-test.timeout=10m")
	cmd.Env = append(os.Environ(), caseEnv+"="+k.Name)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	for _, line := range strings.Split(stdout.String(), "\n") {
		if js, ok := strings.CutPrefix(line, caseResultPrefix); ok {
			var r caseResult
			if err := json.Unmarshal([]byte(js), &r); err != nil {
				t.Fatalf("%s: child's result: %v", k, err)
			}
			return Evidence{Violations: r.Violations, Events: r.Events}
		}
	}
	out := "\n" + stderr.String()
	at := strings.Index(out, "\npanic: ")
	if at < 0 {
		t.Fatalf("%s: the child neither reported nor panicked (%v): %s", k, runErr, stderr.String())
	}
	return Evidence{Violations: []string{"the process died"}, Panic: out[at+1:]}
}

// Every regression case still fails with its bug's fingerprint, and with no
// other bug's: if an upgrade fixes a bug, its cases pass and this test says
// so. Runs replay, so each case fails the same way every time.
func TestKnownIssuesMatchTheirFingerprints(t *testing.T) {
	for _, k := range KnownIssues {
		t.Run(k.Name, func(t *testing.T) {
			ev := runCase(t, k)
			if len(ev.Violations) == 0 {
				t.Fatalf("%s passed: has the bug been fixed upstream? then remove its case", k)
			}
			if got := Classify(Report{Violations: ev.Violations}, ev.Events, ev.Panic); got != k.Bug {
				t.Fatalf("%s classified as %q, want %q; violations: %v", k, got, k.Bug, ev.Violations)
			}
			for _, f := range Fingerprints {
				if f.Name != k.Bug && f.Match(ev) {
					t.Errorf("%s also matches %s's fingerprint", k, f.Name)
				}
			}
			t.Logf("%s: %s", k, Signature(ev.Violations))
		})
	}
}

// Every case names a registered scenario, an engine, a seed and a known
// bug, and no two cases are the same run.
func TestKnownIssuesAreWellFormed(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range KnownIssues {
		if _, _, err := Resolve(k.Options); err != nil || k.Options.Seed == 0 || k.Options.Engine == "" || k.Name == "" {
			t.Errorf("malformed case %s: %v", k, err)
		}
		if _, ok := LookupFingerprint(k.Bug); !ok {
			t.Errorf("case %s names no known bug", k)
		}
		key := fmt.Sprintf("%s/%s/%d", k.Options.Scenario, k.Options.Engine, k.Options.Seed)
		if seen[key] || seen[k.Name] {
			t.Errorf("%s listed twice", k)
		}
		seen[key], seen[k.Name] = true, true
	}
	for _, f := range Fingerprints {
		cases := 0
		for _, k := range KnownIssues {
			if k.Bug == f.Name {
				cases++
			}
		}
		if cases == 0 && f.Standalone == "" {
			t.Errorf("%s has no regression case", f.Name)
		}
	}
}

// A fingerprint needs the run's own evidence: the livelock's violations
// over a clean run's trace, or a future-leak violation whose count the
// trace does not show, match nothing; a clean run matches nothing.
func TestFingerprintsNeedTheirEvidence(t *testing.T) {
	clean, err := Run(t, Options{Seed: 1, Scenario: "snapshot-install", Engine: EnginePebble})
	if err != nil {
		t.Fatal(err)
	}
	requirePass(t, 1, clean)
	if clean.Known != "" || clean.Signature != "" {
		t.Fatalf("a clean run is labelled known=%q signature=%q", clean.Known, clean.Signature)
	}
	livelock := []string{
		"liveness: n4 applied 497, leader committed 507, 30s after healing",
		"liveness: n4 installed the snapshot at index 472 150 times after healing (livelock)",
		"convergence: n4 applied index 497, n0 applied index 507",
	}
	leak := []string{"liveness: raft left 1 futures unanswered when nodes shut down; their callers would wait forever (hashicorp/raft v1.8.0 future leak)"}
	for name, violations := range map[string][]string{"no violations": nil, "livelock": livelock, "future leak": leak} {
		for _, f := range Fingerprints {
			if f.Match(Evidence{Violations: violations, Events: clean.Events}) {
				t.Errorf("%s matches %s over a clean run's trace", f.Name, name)
			}
		}
	}
}

func ev(node, kind, detail string) sim.Event {
	return sim.Event{Node: node, Kind: kind, Detail: detail}
}

// The livelock's trace: an install at raft index 581, then an
// AppendEntries with prev=581 rejected by a follower whose log reaches 608.
var holeTrace = []sim.Event{
	ev("n3", "recv", "InstallSnapshot n2->n3 #3 term=6 last=581 lastterm=3 size=7492"),
	ev("n2", "reply", "InstallSnapshot n2->n3 #3 term=6 ok=true"),
	ev("n3", "recv", "AppendEntries n2->n3 #40 term=6 prev=581 prevterm=3 n=31 commit=612"),
	ev("n2", "reply", "AppendEntries n2->n3 #40 term=6 last=608 ok=false"),
}

func TestRaftSnapshotHoleFingerprint(t *testing.T) {
	hole := holeTrace
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

// The livelock explains a run only if every violation is about a node
// with the hole and one of them says it did not catch up.
func TestSnapshotLivelockMustExplainEveryViolation(t *testing.T) {
	stuck := "liveness: n3 applied 590, leader committed 612, 30s after healing"
	for name, c := range map[string]struct {
		violations []string
		want       bool
	}{
		"the stuck node lags":               {[]string{stuck, "convergence: n0 applied index 612, n3 applied index 590"}, true},
		"stale keys on the stuck node":      {[]string{stuck, `durability: n3 ends with absent for key "key-04", which no write that may be last produced`}, true},
		"another node lags":                 {[]string{"liveness: n1 applied 590, leader committed 612, 30s after healing"}, false},
		"only convergence, no liveness":     {[]string{"convergence: n0 applied index 612, n3 applied index 590"}, false},
		"and a linearizability violation":   {[]string{stuck, `linearizability: mode "log": history is not linearizable`}, false},
		"and a raft invariant on that node": {[]string{stuck, "raft: n3 applied index went backwards from 600 to 590"}, false},
	} {
		if got := matchSnapshotLivelock(Evidence{Violations: c.violations, Events: holeTrace}); got != c.want {
			t.Errorf("%s: match %v, want %v", name, got, c.want)
		}
	}
}

// The panic face is raft's "log not found" raised in processLogs, not any
// panic with that message.
func TestLogNotFoundPanicFingerprint(t *testing.T) {
	stack := func(msg, frame string) string {
		return msg + "\n\ngoroutine 76 [running, synctest bubble 1]:\n" + frame + "(0x272c3949cb08, 0x85, 0x0)\n\t/src/raft/raft.go:1365 +0x8a7\n"
	}
	for name, c := range map[string]struct {
		panic string
		want  bool
	}{
		"raft's processLogs": {stack("panic: log not found", "github.com/hashicorp/raft.(*Raft).processLogs"), true},
		"another message":    {stack("panic: runtime error: index out of range [3] with length 3", "github.com/hashicorp/raft.(*Raft).processLogs"), false},
		"another function":   {stack("panic: log not found", "github.com/raftsnap/testbed/cluster.(*FSM).Apply"), false},
		"no stack":           {"panic: log not found", false},
		"no panic":           {"", false},
	} {
		if got := matchLogNotFoundPanic(Evidence{Violations: []string{"the process died"}, Panic: c.panic}); got != c.want {
			t.Errorf("%s: match %v, want %v", name, got, c.want)
		}
	}
}

// The future leak: the trace's count must be the one reported, and it must
// be the run's only violation.
func TestFutureLeakFingerprint(t *testing.T) {
	leaked := []sim.Event{ev("n2", "futures-leaked", "count=1"), ev("n4", "futures-leaked", "count=2")}
	report := "liveness: raft left 3 futures unanswered when nodes shut down; their callers would wait forever (hashicorp/raft v1.8.0 future leak)"
	for name, c := range map[string]struct {
		violations []string
		events     []sim.Event
		want       bool
	}{
		"reported as traced":     {[]string{report}, leaked, true},
		"another count":          {[]string{strings.Replace(report, "3", "2", 1)}, leaked, false},
		"nothing traced":         {[]string{report}, nil, false},
		"and another violation":  {[]string{report, "liveness: n1 applied 590, leader committed 612, 30s after healing"}, leaked, false},
		"traced but not the one": {[]string{"liveness: n1 applied 590, leader committed 612, 30s after healing"}, leaked, false},
	} {
		if got := matchFutureLeak(Evidence{Violations: c.violations, Events: c.events}); got != c.want {
			t.Errorf("%s: match %v, want %v", name, got, c.want)
		}
	}
}

// A signature keeps the checker and the sentence and blanks what differs
// from run to run.
func TestSignatureBlanksNodesAndNumbers(t *testing.T) {
	for v, want := range map[string]string{
		"liveness: n4 applied 497, leader committed 507, 30s after healing":                                "liveness: _ applied _, leader committed _, _s after healing",
		"liveness: n12 applied 1, leader committed 2, 1m0.5s after healing":                                "liveness: _ applied _, leader committed _, _m_s after healing",
		`durability: n4 ends with "c0-188/..." for key "key-03", which no write that may be last produced`: `durability: _ ends with "_" for key "_", which no write that may be last produced`,
		"determinism: trace hash 3fa9c2d1e0b7 then 77aa01bc23de (first divergent event #12)":               "determinism: trace hash _ then _ (first divergent event #_)",
		"the simulation process crashed running this seed: panic: log not found":                           "the simulation process crashed running this seed: panic: log not found",
	} {
		if got := Signature([]string{v, "a second violation"}); got != want {
			t.Errorf("Signature(%q) = %q, want %q", v, got, want)
		}
	}
	if Signature(nil) != "" {
		t.Error("a passing run has a signature")
	}
	if long := Signature([]string{strings.Repeat("x", 500)}); len(long) > maxSignature+3 {
		t.Errorf("signature of %d bytes", len(long))
	}
}

// The restore hazard needs a restore cut short after its leader took it,
// and a divergence of that leader; a restore raft reported done, or a
// violation of another kind, is not it.
func TestRestoreBeforeCommitFingerprint(t *testing.T) {
	cut := []sim.Event{ev("", "restore", "node=n3 backup-index=533 pairs=25 err=raft is already shutdown installed-at=585")}
	done := []sim.Event{ev("", "restore", "node=n3 backup-index=533 pairs=25 err=<nil> installed-at=585")}
	notTaken := []sim.Event{ev("", "restore", "node=n3 backup-index=533 pairs=25 err=cannot restore snapshot now, wait until the configuration entry at 7 has been applied (have applied 6) installed-at=0")}
	diverged := []string{`convergence: n3 and n0 differ at index 602 (23 vs 20 keys; digests e869b9d042df3484 vs 45a6c2a4e1a82d18)`}
	if !matchRestoreBeforeCommit(Evidence{Violations: diverged, Events: cut}) {
		t.Error("a leader that diverged after a restore cut short is not recognised")
	}
	other := []string{`convergence: n1 and n0 differ at index 602 (23 vs 20 keys; digests e869b9d042df3484 vs 45a6c2a4e1a82d18)`}
	for name, e := range map[string]Evidence{
		"restore done":          {Violations: diverged, Events: done},
		"restore not taken":     {Violations: diverged, Events: notTaken},
		"another node diverged": {Violations: other, Events: cut},
		"a liveness violation":  {Violations: append(diverged, "liveness: n4 applied 497, leader committed 507, 30s after healing"), Events: cut},
	} {
		if matchRestoreBeforeCommit(e) {
			t.Errorf("%s: matched", name)
		}
	}
}

func TestRestoreShutdownPanicFingerprint(t *testing.T) {
	stack := func(msg, frame string) string {
		return msg + "\n\ngoroutine 52 [running, synctest bubble 1]:\n" + frame + "(0x60d01dc4b08, 0x60d09621650)\n\t/src/raft/raft.go:1226 +0xe93\n"
	}
	const msg = "panic: failed to restore snapshot: raft is already shutdown"
	for name, c := range map[string]struct {
		panic string
		want  bool
	}{
		"raft's restoreUserSnapshot": {stack(msg, "github.com/hashicorp/raft.(*Raft).restoreUserSnapshot"), true},
		"another restore error":      {stack("panic: failed to restore snapshot: checksum mismatch", "github.com/hashicorp/raft.(*Raft).restoreUserSnapshot"), false},
		"another function":           {stack(msg, "github.com/hashicorp/raft.(*Raft).processLogs"), false},
		"no stack":                   {msg, false},
	} {
		if got := matchRestoreShutdownPanic(Evidence{Violations: []string{"the process died"}, Panic: c.panic}); got != c.want {
			t.Errorf("%s: match %v, want %v", name, got, c.want)
		}
	}
}

// A run that hits two known bugs is labelled with both, as long as each
// violation is one of theirs: the future leak's violation (its count in the
// trace) beside violations the restore-before-commit fingerprint explains
// (swarm/Pebble 10's shape). One more violation that neither explains, or a
// leak count the trace does not show, and the run is no known bug's.
func TestClassifyNamesTwoKnownBugsInOneRun(t *testing.T) {
	events := []sim.Event{
		{Kind: string(OpRestore), Detail: "node=n2 backup-index=135 pairs=26 err=raft is already shutdown installed-at=256"},
		{Node: "n2", Kind: "futures-leaked", Detail: "count=1"},
	}
	diverged := "convergence: n2 and n0 differ at index 381 (25 vs 25 keys; digests 4efd82f0d558cc52 vs 1adfefd0f7641a90)"
	leak := "liveness: raft left 1 futures unanswered when nodes shut down; their callers would wait forever (hashicorp/raft v1.8.0 future leak)"
	for _, c := range []struct {
		violations []string
		events     []sim.Event
		want       string
	}{
		{[]string{diverged, leak}, events, RaftRestoreBeforeCommit + "+" + RaftFutureLeak},
		{[]string{diverged}, events, RaftRestoreBeforeCommit},
		{[]string{leak}, events, RaftFutureLeak},
		{[]string{diverged, leak, "raft: n3 applied index went backwards"}, events, ""},
		{[]string{diverged, strings.Replace(leak, "left 1", "left 2", 1)}, events, ""},
		{[]string{diverged, leak}, events[:1], ""},
	} {
		if got := Classify(Report{Violations: c.violations}, c.events, ""); got != c.want {
			t.Errorf("violations %q, %d events: got %q, want %q", c.violations, len(c.events), got, c.want)
		}
	}
}
