package scenarios

import (
	"strconv"
	"strings"

	"github.com/raftsnap/testbed/sim"
)

// KnownIssue is a seed that fails because of a bug in a dependency, not in
// the testbed. Each stays a named regression case (see known_test.go): the
// checkers must keep catching it. Clean sweeps leave these seeds out by
// name (simrun --exclude-known); no checker is weakened for them.
type KnownIssue struct {
	Scenario string
	Seed     uint64
	// Engine is the engine the failure was seen on.
	Engine string
	// Issue names the upstream bug and says what the run shows.
	Issue string
}

// raftSnapshotIndex and raftSnapshotPanic are the two faces of the one
// upstream bug the sweeps hit: hashicorp/raft v1.8.0 does not implement
// rules 6-7 of the paper's Figure 13 for InstallSnapshot (issue #697, open;
// PR #704 only covers an entry present at the snapshot's index with another
// term). RaftSnapshotHole checks the livelock's fingerprint.
const (
	raftSnapshotIndex = "hashicorp/raft v1.8.0, issue #697 (livelock): after an InstallSnapshot whose last index S " +
		"lies beyond the follower's log, the first AppendEntries is accepted (S is the follower's last index then) " +
		"but its reply is lost or late; the retry, with PrevLogEntry = S, is rejected because appendEntries looks S " +
		"up in the log, where it never was, instead of taking the snapshot's term (the code path of issue #205, " +
		"closed unfixed), and InstallSnapshot keeps the entries past S. The leader walks nextIndex back and sends " +
		"the same snapshot forever: a livelock until it takes a newer snapshot, which an idle cluster never does"
	raftSnapshotPanic = "hashicorp/raft v1.8.0, issue #697 (panic, the MonotonicLogStore face described in its " +
		"comments): the same follower, sent the snapshot again, has its whole log deleted by removeOldLogs, " +
		"entries past S included, while raft's cached last index stays where it was and lastApplied goes back to " +
		"S; a new leader's AppendEntries matches the stale last index, and the next commit makes processLogs read " +
		"entry S+1: panic \"log not found\" on raft's goroutine, which ends the whole simulator process"
)

// raftFutureLeak: raft hands committed entries with their futures to the
// state machine goroutine through a buffered channel (raft.go:1306, 128
// deep) and that goroutine returns on shutdown without answering what is
// still buffered (fsm.go:260); Apply, Barrier and configuration-change
// futures have no shutdown channel, so a caller waiting on one waits
// forever. cluster.Node.Await answers them when the node shuts down and the
// run reports them.
const raftFutureLeak = "hashicorp/raft v1.8.0: a future whose entry is still queued for the state machine " +
	"when the node shuts down is never answered, so its caller would wait forever (the run reports " +
	"\"raft left N futures unanswered\")"

// KnownIssues lists the failing seeds of one sweep of seeds 1..500 of every
// scenario on each engine (runs replay, so one sweep finds them all; on
// bbolt and Pebble the same seeds fail, except in swarm, whose disk faults
// only Pebble nodes take), taken after store calls began to wait for the
// rest of the bubble before touching the disk (sim.Quiescer), which moved
// some same-instant orderings and so some of the seeds. Each was re-run and
// its trace showed the fingerprint (RaftSnapshotHole), or the process died
// of raft's "log not found" panic, or the run reported raft's future leak.
// Engine is where it failed; "both" means on bbolt and Pebble.
var KnownIssues = []KnownIssue{
	{Scenario: "snapshot-install", Seed: 74, Engine: "both", Issue: raftSnapshotIndex},
	{Scenario: "snapshot-install", Seed: 120, Engine: "both", Issue: raftSnapshotIndex},
	{Scenario: "snapshot-install", Seed: 429, Engine: "both", Issue: raftSnapshotIndex},
	{Scenario: "snapshot-crash", Seed: 109, Engine: "both", Issue: raftSnapshotIndex},
	{Scenario: "snapshot-crash", Seed: 164, Engine: "both", Issue: raftSnapshotIndex},
	{Scenario: "snapshot-crash", Seed: 242, Engine: "both", Issue: raftSnapshotIndex},
	{Scenario: "snapshot-crash", Seed: 274, Engine: "both", Issue: raftSnapshotIndex},
	{Scenario: "snapshot-crash", Seed: 471, Engine: "both", Issue: raftSnapshotIndex},
	{Scenario: "partition-heal", Seed: 8, Engine: "both", Issue: raftSnapshotIndex},
	{Scenario: "partition-heal", Seed: 100, Engine: "both", Issue: raftSnapshotPanic},
	{Scenario: "partition-heal", Seed: 106, Engine: "both", Issue: raftSnapshotPanic},
	{Scenario: "partition-heal", Seed: 119, Engine: "both", Issue: raftSnapshotIndex},
	{Scenario: "partition-heal", Seed: 321, Engine: "both", Issue: raftSnapshotIndex},
	{Scenario: "partition-heal", Seed: 325, Engine: "both", Issue: raftSnapshotPanic},
	{Scenario: "partition-heal", Seed: 500, Engine: "both", Issue: raftSnapshotIndex},
	{Scenario: "membership", Seed: 1, Engine: "both", Issue: raftSnapshotIndex},
	{Scenario: "membership", Seed: 4, Engine: "both", Issue: raftSnapshotIndex},
	{Scenario: "membership", Seed: 143, Engine: "both", Issue: raftSnapshotPanic},
	{Scenario: "membership", Seed: 168, Engine: "both", Issue: raftSnapshotPanic},
	{Scenario: "membership", Seed: 351, Engine: "both", Issue: raftSnapshotIndex},
	{Scenario: "mixed-engines", Seed: 363, Engine: EngineMixed, Issue: raftSnapshotIndex},
	{Scenario: "mixed-engines", Seed: 492, Engine: EngineMixed, Issue: raftSnapshotIndex},
	{Scenario: "swarm", Seed: 100, Engine: "both", Issue: raftSnapshotIndex},
	{Scenario: "swarm", Seed: 202, Engine: EngineBbolt, Issue: raftSnapshotIndex},
	{Scenario: "swarm", Seed: 353, Engine: EngineBbolt, Issue: raftSnapshotIndex},
	{Scenario: "swarm", Seed: 355, Engine: EnginePebble, Issue: raftFutureLeak},
	{Scenario: "swarm", Seed: 374, Engine: EnginePebble, Issue: raftSnapshotIndex},
	{Scenario: "swarm", Seed: 442, Engine: EnginePebble, Issue: raftFutureLeak},
}

// Known returns the known issue of a scenario's seed, if any. A seed is
// excluded on every engine: --differential runs a seed on both.
func Known(scenario string, seed uint64) (KnownIssue, bool) {
	for _, k := range KnownIssues {
		if k.Scenario == scenario && k.Seed == seed {
			return k, true
		}
	}
	return KnownIssue{}, false
}

// RaftSnapshotHole reports whether a run's trace shows the fingerprint of
// the hashicorp/raft snapshot-index livelock (KnownIssues): a node received
// an InstallSnapshot whose last raft index is S, and later rejected an
// AppendEntries whose PrevLogEntry is S while its log already reached past
// S. hashicorp/raft checks PrevLogEntry against its last entry or its log,
// never against its snapshot, and InstallSnapshot keeps the follower's log;
// so once such a follower has appended past S without holding entry S, it
// rejects every AppendEntries that starts at S, and the leader sends it the
// same snapshot again and again. It returns the node and S.
func RaftSnapshotHole(events []sim.Event) (node string, index uint64, ok bool) {
	installed := map[string]map[uint64]bool{} // node -> raft indexes sent to it in InstallSnapshot
	prev := map[string]struct {
		node string
		prev uint64
	}{} // AppendEntries label -> receiver and PrevLogEntry
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
				prev[label(d)] = struct {
					node string
					prev uint64
				}{e.Node, p}
			}
		case e.Kind == "reply" && strings.HasPrefix(d, "AppendEntries ") && strings.HasSuffix(d, " ok=false"):
			r, found := prev[label(d)]
			last, ok := field(d, "last=")
			if found && ok && installed[r.node][r.prev] && last > r.prev {
				return r.node, r.prev, true
			}
		}
	}
	return "", 0, false
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
