package repro

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// monotonicStore is an InmemStore that declares itself a
// raft.MonotonicLogStore, as raft-wal and raft-boltdb/v2 do. (raft's own
// MockMonotonicLogStore cannot wrap a store from outside the package: its
// field is unexported.)
type monotonicStore struct{ *raft.InmemStore }

func (monotonicStore) IsMonotonic() bool { return true }

// hashicorp/raft#697, panic face: with a monotonic log store, a follower
// that is sent the same snapshot again (the livelock of raft697_test.go)
// and then serves a new leader panics with "log not found" on raft's own
// goroutine.
//
// The follower installs the snapshot at S, appends S+1..L from the next
// AppendEntries, and that reply is lost; the leader, rejected at
// PrevLogEntry S, sends the snapshot again. installSnapshot restores it
// and, since the store is monotonic, removeOldLogs deletes the whole log
// (raft.go:1965, snapshot.go:265), but the cached last log index and term
// stay at L (only AppendEntries and restoreUserSnapshot call setLastLog).
// A new leader starts its nextIndex at its own last index + 1; rejected,
// it steps back to the follower's reported last index L + 1, and the
// follower accepts PrevLogEntry L by comparing it with the cached last
// entry (raft.go:1498) instead of its log, where L no longer is. The next
// commit index makes processLogs fetch S+1 from the empty log: panic
// (raft.go:1333).
//
// A panic on raft's goroutine cannot be recovered by the test and ends
// the test binary, so the test runs the scenario in a child process (this
// binary, running only this test) and fails if the child dies of it.
func TestFollowerSurvivesASecondSnapshotWithAMonotonicLogStore(t *testing.T) {
	const childEnv = "REPRO_RAFT697_PANIC_CHILD"
	if os.Getenv(childEnv) == "1" {
		secondSnapshotThenNewLeader(t, true)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFollowerSurvivesASecondSnapshotWithAMonotonicLogStore$", "-test.count=1", "-test.v", "-test.timeout=1m")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		return
	}
	if panicked, frame := raftPanic(string(out)); panicked != "" {
		t.Fatalf("the follower's raft panicked: %s, in %s (hashicorp/raft#697, panic face: installSnapshot's removeOldLogs "+
			"emptied the monotonic log store but left the cached last log index; the new leader's AppendEntries matched that "+
			"cached index and processLogs then looked for entries the store no longer has); the child's log:\n%s",
			panicked, frame, childLog(string(out)))
	}
	t.Fatalf("the scenario's child process failed (%v) without raft's panic:\n%s", err, out)
}

// The control: the same run with a log store that does not declare itself
// monotonic passes against v1.8.0. installSnapshot then compacts only up
// to the snapshot's index (compactLogs), the entries past it stay, and
// the new leader's AppendEntries finds them; so the panic above is the
// monotonic path, not the harness or the livelock alone.
func TestFollowerSurvivesASecondSnapshotWhenTheLogStoreIsNotMonotonic(t *testing.T) {
	secondSnapshotThenNewLeader(t, false)
}

// secondSnapshotThenNewLeader: three nodes; one (the follower) is cut off
// while the leader commits 100 entries, snapshots (TrailingLogs 0) and
// commits 10 more. The follower rejoins, installs the snapshot, and the
// reply to the first AppendEntries after it is lost, once, so the leader
// installs the same snapshot again. Then leadership goes to the third
// node, which commits 10 entries; the follower must catch up.
func secondSnapshotThenNewLeader(t *testing.T, monotonic bool) {
	c := newCluster(t, 3, monotonic)
	leader := c.waitLeader(t)
	var others []int
	for i := range c.nodes {
		if i != leader {
			others = append(others, i)
		}
	}
	follower, successor := others[0], others[1]
	c.ctl.victim.Store(string(c.addrs[follower]))
	c.isolate(follower)

	c.apply(t, leader, 100)
	if err := c.nodes[leader].Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	c.apply(t, leader, 10)

	c.ctl.armed.Store(true)
	c.rejoin(follower)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && c.ctl.resent.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	if !c.ctl.dropped.Load() || c.ctl.resent.Load() == 0 {
		t.Fatalf("test premise: a reply lost after the snapshot (%v) and the snapshot installed again (%d times)",
			c.ctl.dropped.Load(), c.ctl.resent.Load())
	}
	stored, err := c.stores[follower].LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the follower installed the snapshot again: raft's cached last log index %s, its log store's last index %d",
		c.nodes[follower].Stats()["last_log_index"], stored)

	// A new leader: its replication state for the follower starts afresh.
	if err := c.nodes[leader].LeadershipTransferToServer(raft.ServerID(c.addrs[successor]), c.addrs[successor]).Error(); err != nil {
		t.Fatalf("test premise: leadership transfer to %s: %v", c.addrs[successor], err)
	}
	if got := c.waitLeader(t); got != successor {
		t.Fatalf("test premise: leadership went to %s, want %s", c.addrs[got], c.addrs[successor])
	}
	t.Logf("leadership moved from %s to %s", c.addrs[leader], c.addrs[successor])
	c.apply(t, successor, 10)
	want := c.nodes[successor].LastIndex()

	deadline = time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && c.fsms[follower].applied() < want {
		time.Sleep(20 * time.Millisecond)
	}
	if got := c.fsms[follower].applied(); got < want {
		t.Fatalf("the follower is at applied index %d, the new leader's last index %d, 5s after the leader change", got, want)
	}
}

// raftPanic finds a "log not found" panic in a child's output and the
// function it was raised in (the panicking goroutine's first frame);
// panicked is "" if there is none.
func raftPanic(out string) (panicked, frame string) {
	m := regexp.MustCompile(`(?m)^panic: (log not found)\n\ngoroutine \d+ \[[^\]]*\]:\n(\S+)\(`).FindStringSubmatch(out)
	if m == nil {
		return "", ""
	}
	return m[1], m[2]
}

// childLog is a child's output up to its panic: its test log, without the
// goroutine dump.
func childLog(out string) string {
	if i := strings.Index(out, "\npanic: "); i >= 0 {
		return out[:i+1]
	}
	return out
}
