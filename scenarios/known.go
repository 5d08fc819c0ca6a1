package scenarios

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/raftsnap/testbed/cluster"
	"github.com/raftsnap/testbed/sim"
)

// Known upstream bugs are recognised by what a failing run leaves behind,
// never by its seed: a change that moves one instant re-numbers every
// failing seed, while a bug's fingerprint (its trace, its violations, its
// panic) stays. Classify names the bug a run hit; Fingerprints lists them.
// A run is labelled only when the bug explains every violation it
// reported, so a new failure in the same run still stands out.

// Names of the known upstream bugs, as they appear in a report's "known".
const (
	// RaftSnapshotLivelock is hashicorp/raft issue #697, livelock face.
	RaftSnapshotLivelock = "hashicorp/raft#697"
	// RaftLogNotFoundPanic is hashicorp/raft issue #697, panic face.
	RaftLogNotFoundPanic = "hashicorp/raft#697/panic"
	// RaftFutureLeak is hashicorp/raft issue #498.
	RaftFutureLeak = "hashicorp/raft#498"
	// RaftRestoreBeforeCommit is hashicorp/raft's documented hazard of
	// Raft.Restore (no issue number: its doc comment warns of it).
	RaftRestoreBeforeCommit = "hashicorp/raft/Restore-before-commit"
	// RaftRestoreShutdownPanic is a hashicorp/raft bug found here: a
	// Shutdown while Raft.Restore waits for the state machine panics.
	RaftRestoreShutdownPanic = "hashicorp/raft/Restore-shutdown-panic"
)

// Evidence is what a failing run left behind for triage.
type Evidence struct {
	// Violations are the run's violations, as reported.
	Violations []string
	// Events is the run's trace; nil when the process running it died.
	Events []sim.Event
	// Panic is the panic message and stack of a process that died running
	// the run ("panic: ..." and the lines after it); empty otherwise.
	Panic string
}

// Fingerprint recognises one known upstream bug.
type Fingerprint struct {
	// Name is the bug's name, e.g. "hashicorp/raft#697".
	Name string
	// Description says what the bug is and what a run shows.
	Description string
	// Match reports whether the evidence shows the bug and the bug
	// explains every violation in it.
	Match func(Evidence) bool
	// Standalone names the test in repro/ that reproduces the bug against
	// upstream raft, for a bug no simulator run shows on every run (its
	// regression case is that test instead of a KnownIssues entry).
	Standalone string
}

// Fingerprints are the known upstream bugs, the ones found by this testbed
// (README, Known upstream bugs).
var Fingerprints = []Fingerprint{
	{
		Name: RaftSnapshotLivelock,
		Description: "hashicorp/raft v1.8.0, issue #697 (livelock): after an InstallSnapshot whose last index S " +
			"lies beyond the follower's log, the first AppendEntries is accepted (S is the follower's last index then) " +
			"but its reply is lost or late; the retry, with PrevLogEntry = S, is rejected because appendEntries looks S " +
			"up in the log, where it never was, instead of taking the snapshot's term (the code path of issue #205, " +
			"closed unfixed), and InstallSnapshot keeps the entries past S. The leader walks nextIndex back and sends " +
			"the same snapshot forever: a livelock until it takes a newer snapshot, which an idle cluster never does. " +
			"Fingerprint: the trace shows the hole (RaftSnapshotHole) on a node that a liveness violation names, and " +
			"every violation is a liveness, convergence or durability one about such a node",
		Match: matchSnapshotLivelock,
	},
	{
		Name: RaftLogNotFoundPanic,
		Description: "hashicorp/raft v1.8.0, issue #697 (panic, the MonotonicLogStore face described in its " +
			"comments): the same follower, sent the snapshot again, has its whole log deleted by removeOldLogs, " +
			"entries past S included, while raft's cached last index stays where it was and lastApplied goes back to " +
			"S; a new leader's AppendEntries matches the stale last index, and the next commit makes processLogs read " +
			"entry S+1: panic \"log not found\" on raft's goroutine, which ends the whole simulator process. " +
			"Fingerprint: the process died of \"panic: log not found\" raised in raft's processLogs",
		Match: matchLogNotFoundPanic,
	},
	{
		Name: RaftFutureLeak,
		Description: "hashicorp/raft v1.8.0, issue #498: committed entries go to the state machine goroutine with " +
			"their futures through a buffered channel (raft.go:1306), which returns on shutdown without answering " +
			"what is still queued (fsm.go:260); Apply, Barrier and configuration-change futures carry no shutdown " +
			"channel, so a caller waiting on one waits forever. cluster.Node.Await answers them when the node shuts " +
			"down. Fingerprint: the trace counts leaked futures (futures-leaked) and the run's only violation is " +
			"\"raft left N futures unanswered\" with that count",
		Match: matchFutureLeak,
	},
	{
		Name: RaftRestoreBeforeCommit,
		Description: "hashicorp/raft v1.8.0, Raft.Restore (restoreUserSnapshot, as designed in PR #159 and warned of in its doc " +
			"comment: \"a potentially dangerous period where the leader commits ahead of its followers ... should only be " +
			"used for disaster recovery into a fresh cluster\"): the leader keeps the backup in its snapshot store under a " +
			"new index above its log and restores its state machine from it before anything is replicated; if it crashes " +
			"or loses leadership before its followers install it, the others elect a leader without the restore and " +
			"commit other entries at those indexes, which the old leader never applies (its last applied index is the " +
			"restore's, also after a restart, where raft lists the kept snapshot and the node installs it): it diverges " +
			"for good. Fingerprint: the trace shows a restore that raft did not report done (an error other than its " +
			"refusal during a configuration change, which keeps nothing), a convergence or snapshot-integrity violation " +
			"names the node that made it (it holds, or restarted with, a state no committed log explains), and every " +
			"violation is a convergence, durability, snapshot-integrity or linearizability one",
		Match: matchRestoreBeforeCommit,
	},
	{
		Name: RaftRestoreShutdownPanic,
		Description: "hashicorp/raft v1.8.0 (found here, no upstream issue found): restoreUserSnapshot hands the state " +
			"machine a restoreFuture carrying raft's shutdown channel, so a Shutdown while the restore is queued or " +
			"running makes its Error() return ErrRaftShutdown, and restoreUserSnapshot panics on any error of it " +
			"(raft.go:1225, \"If this fails we are in a bad state so we panic\"): a graceful Shutdown during a user " +
			"restore ends the whole process. Here every crash of a node is a Shutdown, so the simulator process dies. " +
			"Fingerprint: the process died of \"panic: failed to restore snapshot: raft is already shutdown\" raised in " +
			"raft's restoreUserSnapshot. In the simulator it shows when a crash tap fires while the restoring leader's " +
			"state machine reads the backup, and on bbolt only on some runs of a seed (swarm/bbolt 18: whether the " +
			"crashed instance's restore or its shutdown reaches raft first depends on wall-clock timing of its disk " +
			"I/O; see README, Determinism)",
		Match:      matchRestoreShutdownPanic,
		Standalone: "repro/restore_shutdown_test.go TestShutdownDuringARestoreDoesNotPanic",
	},
}

// matchRestoreShutdownPanic: the process died of ErrRaftShutdown turned
// into a panic by restoreUserSnapshot.
func matchRestoreShutdownPanic(ev Evidence) bool {
	lines := strings.Split(strings.TrimSpace(ev.Panic), "\n")
	if len(lines) == 0 || strings.TrimSpace(lines[0]) != "panic: failed to restore snapshot: raft is already shutdown" {
		return false
	}
	for i, l := range lines {
		if strings.HasPrefix(l, "goroutine ") && i+1 < len(lines) {
			return strings.HasPrefix(lines[i+1], "github.com/hashicorp/raft.(*Raft).restoreUserSnapshot(")
		}
	}
	return false
}

// matchRestoreBeforeCommit: a restore cut short after its leader took it,
// and a divergence of that leader explaining the run.
func matchRestoreBeforeCommit(ev Evidence) bool {
	cut := map[string]bool{}
	for _, e := range ev.Events {
		if e.Kind != string(OpRestore) || strings.Contains(e.Detail, " err=<nil> ") {
			continue
		}
		if strings.Contains(e.Detail, " err=cannot restore snapshot now") {
			continue // refused before anything was kept
		}
		if node, ok := strings.CutPrefix(strings.Fields(e.Detail)[0], "node="); ok {
			cut[node] = true
		}
	}
	if len(cut) == 0 || len(ev.Violations) == 0 {
		return false
	}
	diverged := false
	for _, v := range ev.Violations {
		checker, _, _ := strings.Cut(v, ":")
		switch checker {
		case "convergence", "snapshot-integrity":
			for _, n := range nodeName.FindAllString(v, 2) {
				diverged = diverged || cut[n]
			}
		case "durability", "linearizability":
		default:
			return false
		}
	}
	return diverged
}

// Classify returns the name of the known upstream bug whose fingerprint
// explains a failing run, or "" when none does (and for a run that
// passed). events is the run's trace (nil if the process running it died)
// and panicText what the process printed when it died of a panic. It only
// reads what the run produced, so it cannot change a run.
func Classify(rep Report, events []sim.Event, panicText string) string {
	if len(rep.Violations) == 0 && panicText == "" {
		return ""
	}
	ev := Evidence{Violations: rep.Violations, Events: events, Panic: panicText}
	for _, f := range Fingerprints {
		if f.Match(ev) {
			return f.Name
		}
	}
	// Two known bugs in one run. The future leak's violation stands on its
	// own (the trace counts exactly the futures it names), so a run whose
	// other violations one fingerprint explains is labelled with both
	// (swarm/Pebble 10 once snap-rot joined the mix: a restore before
	// commit, and a future left unanswered).
	if rest, ok := withoutFutureLeak(ev); ok {
		for _, f := range Fingerprints {
			if f.Name != RaftFutureLeak && f.Match(rest) {
				return f.Name + "+" + RaftFutureLeak
			}
		}
	}
	return ""
}

// withoutFutureLeak returns ev without its future-leak violation, if it has
// exactly one whose count the trace shows, beside other violations.
func withoutFutureLeak(ev Evidence) (Evidence, bool) {
	var leaks, others []string
	for _, v := range ev.Violations {
		if leakViolation.MatchString(v) {
			leaks = append(leaks, v)
		} else {
			others = append(others, v)
		}
	}
	if len(leaks) != 1 || len(others) == 0 || !matchFutureLeak(Evidence{Violations: leaks, Events: ev.Events}) {
		return Evidence{}, false
	}
	ev.Violations = others
	return ev, true
}

// LookupFingerprint returns the fingerprint of the named bug.
func LookupFingerprint(name string) (Fingerprint, bool) {
	for _, f := range Fingerprints {
		if f.Name == name {
			return f, true
		}
	}
	return Fingerprint{}, false
}

// matchSnapshotLivelock: a node shows the snapshot hole, a liveness
// violation names it, and every violation is about such a node (it lags,
// it reinstalls, its state differs, its stale keys fail durability).
func matchSnapshotLivelock(ev Evidence) bool {
	holes := raftSnapshotHoles(ev.Events)
	if len(holes) == 0 || len(ev.Violations) == 0 {
		return false
	}
	stuck := false
	for _, v := range ev.Violations {
		checker, _, _ := strings.Cut(v, ":")
		if checker != "liveness" && checker != "convergence" && checker != "durability" {
			return false
		}
		named := false
		for _, n := range nodeName.FindAllString(v, -1) {
			if _, ok := holes[n]; ok {
				named = true
			}
		}
		if !named {
			return false
		}
		stuck = stuck || checker == "liveness"
	}
	return stuck
}

// nodeName matches a node's name in a violation.
var nodeName = regexp.MustCompile(`\bn\d+\b`)

// matchLogNotFoundPanic: the process died of raft's ErrLogNotFound,
// panicked in processLogs (raft.go, "panic(err)" after GetLog fails).
func matchLogNotFoundPanic(ev Evidence) bool {
	lines := strings.Split(strings.TrimSpace(ev.Panic), "\n")
	if len(lines) == 0 || strings.TrimSpace(lines[0]) != "panic: log not found" {
		return false
	}
	// The panicking goroutine's stack follows its "goroutine N [...]:"
	// line; its first frame is the function that panicked.
	for i, l := range lines {
		if strings.HasPrefix(l, "goroutine ") && i+1 < len(lines) {
			return strings.HasPrefix(lines[i+1], "github.com/hashicorp/raft.(*Raft).processLogs(")
		}
	}
	return false
}

var leakViolation = regexp.MustCompile(`^liveness: raft left (\d+) futures unanswered`)

// matchFutureLeak: the trace counts leaked futures, and the only
// violation reports exactly that many.
func matchFutureLeak(ev Evidence) bool {
	leaked := 0
	for _, e := range ev.Events {
		if e.Kind == "futures-leaked" {
			if n, ok := field(e.Detail, "count="); ok {
				leaked += int(n)
			}
		}
	}
	if leaked == 0 || len(ev.Violations) != 1 {
		return false
	}
	m := leakViolation.FindStringSubmatch(ev.Violations[0])
	return m != nil && m[1] == strconv.Itoa(leaked)
}

// KnownIssue is a regression case: a run that hits a known upstream bug,
// kept so that the checkers and the bug's fingerprint must keep catching it
// (known_test.go runs each and requires Classify to name its bug). If an
// upgrade fixes the bug, its cases pass and the test says so.
type KnownIssue struct {
	// Name names the case.
	Name string
	// Bug is the name of the fingerprint the run must match.
	Bug string
	// Options are every option the run needs. A change of a default
	// (a new option, a new default store) must not move a case: when one
	// is added, set it here to the value that keeps the case's behaviour.
	Options Options
	// Schedule, if set, is a saved fault schedule (a path from the
	// repository's root) the case replays instead of its seed's: a case
	// whose seed a change of a scenario's fault mix moved.
	Schedule string
}

// KnownIssues are the regression cases, one or two per known bug, each
// re-run to its fingerprint. The #697 cases run on the copying snapshot
// store, where they were found: on the zero-copy store every re-send
// streams a fresh view at the leader's newest index, and these runs get out
// of the livelock. Sweeps no longer skip seeds by number: every
// failing run is classified by fingerprint (Classify), so a seed that moves
// stays recognised and a new failure stands out.
var KnownIssues = []KnownIssue{
	{Name: "livelock/snapshot-install-74", Bug: RaftSnapshotLivelock,
		Options: Options{Scenario: "snapshot-install", Engine: EnginePebble, Seed: 74, SnapshotStore: cluster.StoreCopy, NoPipelining: true}},
	{Name: "livelock/partition-heal-8-bbolt", Bug: RaftSnapshotLivelock,
		Options: Options{Scenario: "partition-heal", Engine: EngineBbolt, Seed: 8, SnapshotStore: cluster.StoreCopy, NoPipelining: true}},
	{Name: "panic/partition-heal-100", Bug: RaftLogNotFoundPanic,
		Options: Options{Scenario: "partition-heal", Engine: EnginePebble, Seed: 100, SnapshotStore: cluster.StoreCopy, NoPipelining: true}},
	{Name: "panic/membership-143-bbolt", Bug: RaftLogNotFoundPanic,
		Options: Options{Scenario: "membership", Engine: EngineBbolt, Seed: 143, SnapshotStore: cluster.StoreCopy, NoPipelining: true}},
	// Its earlier case, swarm 355 on Pebble, passes since Pebble engines
	// run unsynced under the zero-copy store. Swarm 4 leaked there until
	// snap-rot joined the swarm's mix, which moved the seed: the case
	// replays swarm 4's saved, shrunk schedule (make repro-raft-498).
	{Name: "future-leak/swarm-4", Bug: RaftFutureLeak,
		Options:  Options{Scenario: "swarm", Engine: EnginePebble, Seed: 4, SnapshotStore: cluster.StoreZeroCopy},
		Schedule: "testdata/repro/raft-498.json"},
	// A crash tap armed for the leader's next install fires right after
	// its state machine took the user restore, before any follower has it.
	// Found as swarm 17 before snap-rot joined the swarm's mix (which
	// moved the seed); the case replays that run's saved schedule.
	{Name: "restore-before-commit/swarm-17", Bug: RaftRestoreBeforeCommit,
		Options:  Options{Scenario: "swarm", Engine: EnginePebble, Seed: 17, SnapshotStore: cluster.StoreZeroCopy},
		Schedule: "testdata/repro/raft-restore-before-commit.json"},
}

// Signature is the shape of a failing run: its first violation with node
// names, numbers, hashes and quoted values blanked, e.g. "liveness: _
// applied _, leader committed _, _s after healing". Failures that no
// fingerprint explains are grouped by it. It is "" for no violations.
func Signature(violations []string) string {
	if len(violations) == 0 {
		return ""
	}
	s := violations[0]
	s = quoted.ReplaceAllString(s, `"_"`)
	s = hexHash.ReplaceAllString(s, "_")
	s = nodeName.ReplaceAllString(s, "_")
	s = number.ReplaceAllString(s, "_")
	if r := []rune(s); len(r) > maxSignature {
		s = string(r[:maxSignature]) + "..."
	}
	return s
}

const maxSignature = 160

var (
	quoted  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	hexHash = regexp.MustCompile(`\b[0-9a-f]{8,}\b`)
	number  = regexp.MustCompile(`\d+(?:\.\d+)?`)
)

// RaftSnapshotHole reports whether a run's trace shows the fingerprint of
// the hashicorp/raft snapshot-index livelock: a node received an
// InstallSnapshot whose last raft index is S, and later rejected an
// AppendEntries whose PrevLogEntry is S while its log already reached past
// S. hashicorp/raft checks PrevLogEntry against its last entry or its log,
// never against its snapshot, and InstallSnapshot keeps the follower's log;
// so once such a follower has appended past S without holding entry S, it
// rejects every AppendEntries that starts at S, and the leader sends it the
// same snapshot again and again. It returns the first such node and S.
func RaftSnapshotHole(events []sim.Event) (node string, index uint64, ok bool) {
	var first struct {
		node  string
		index uint64
	}
	scanSnapshotHoles(events, func(n string, s uint64) bool {
		first.node, first.index, ok = n, s, true
		return false
	})
	return first.node, first.index, ok
}

// raftSnapshotHoles returns every node that shows the hole, with the
// first index it shows it at.
func raftSnapshotHoles(events []sim.Event) map[string]uint64 {
	holes := map[string]uint64{}
	scanSnapshotHoles(events, func(n string, s uint64) bool {
		if _, seen := holes[n]; !seen {
			holes[n] = s
		}
		return true
	})
	return holes
}

// scanSnapshotHoles calls found for each rejected AppendEntries that shows
// the hole, in trace order, until found returns false.
func scanSnapshotHoles(events []sim.Event, found func(node string, index uint64) bool) {
	installed := map[string]map[uint64]bool{} // node -> raft indexes sent to it in InstallSnapshot
	type call struct {
		node string
		prev uint64
	}
	prev := map[string]call{} // AppendEntries label -> receiver and PrevLogEntry
	for _, e := range events {
		d := e.Detail
		switch {
		case e.Kind == "recv" && strings.HasPrefix(d, "InstallSnapshot "):
			if s, ok := field(d, "last="); ok {
				if installed[e.Node] == nil {
					installed[e.Node] = map[uint64]bool{}
				}
				installed[e.Node][s] = true
			}
		case e.Kind == "recv" && strings.HasPrefix(d, "AppendEntries "):
			if p, ok := field(d, "prev="); ok {
				prev[label(d)] = call{e.Node, p}
			}
		case e.Kind == "reply" && strings.HasPrefix(d, "AppendEntries ") && strings.HasSuffix(d, " ok=false"):
			r, seen := prev[label(d)]
			last, ok := field(d, "last=")
			if seen && ok && installed[r.node][r.prev] && last > r.prev {
				if !found(r.node, r.prev) {
					return
				}
			}
		}
	}
}

// label is the "AppendEntries a->b #n" prefix naming one call in the trace.
func label(detail string) string {
	f := strings.Fields(detail)
	if len(f) < 3 {
		return detail
	}
	return strings.Join(f[:3], " ")
}

// field returns the number after key (e.g. "last=") in a trace detail.
func field(detail, key string) (uint64, bool) {
	for _, f := range strings.Fields(detail) {
		if v, ok := strings.CutPrefix(f, key); ok {
			n, err := strconv.ParseUint(v, 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// String names a case and its options, for test output.
func (k KnownIssue) String() string {
	return fmt.Sprintf("%s (%s, %s/%s seed %d)", k.Name, k.Bug, k.Options.Scenario, k.Options.Engine, k.Options.Seed)
}
