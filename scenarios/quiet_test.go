package scenarios

import (
	"syscall"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/raftsnap/testbed/cluster"
	"github.com/raftsnap/testbed/engines"
	"github.com/raftsnap/testbed/sim"
)

// A slow disk in wall time must not change a run: virtual time cannot see
// a system call, and while one lasts longer than a sysmon tick the Go
// runtime lets the bubble's other runnable goroutines go first. Seed 1 of
// snapshot-install diverged that way in CI (a leader's replicators ran
// before its first log write returned). Here the first log writes and
// engine writes of every bbolt node each sit 20 ms in a real system call;
// the run must be the one an unhindered disk gives. Without the
// Quiescer's wait before each write the traces part at the first
// election.
func TestWallClockSlowDiskDoesNotChangeTheRun(t *testing.T) {
	opts := Options{Seed: 1, Scenario: "snapshot-install", Engine: EngineBbolt}
	fast, err := Run(t, opts)
	if err != nil {
		t.Fatal(err)
	}
	opts.Mutation = &Mutation{Name: "slow-syscalls", Stores: func(_ raft.ServerID, st *cluster.Stores) {
		st.Logs = &slowLogs{LogStore: st.Logs, left: 3}
		st.Engine = &slowEngine{Engine: st.Engine, left: 2}
	}}
	slow, err := Run(t, opts)
	if err != nil {
		t.Fatal(err)
	}
	if fast.TraceHash != slow.TraceHash {
		i := sim.FirstDivergence(fast.Events, slow.Events)
		at := func(ev []sim.Event) string {
			if i >= 0 && i < len(ev) {
				return ev[i].At.String() + " " + ev[i].Node + " " + ev[i].Kind + " " + ev[i].Detail
			}
			return "end of trace"
		}
		t.Fatalf("slow disk changed the run from event #%d: %q, slow %q", i, at(fast.Events), at(slow.Events))
	}
}

// sleepInSyscall blocks the calling thread in a real system call for
// 20 ms of wall time, longer than any sysmon tick.
func sleepInSyscall() {
	ts := syscall.NsecToTimespec(20e6)
	for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
	}
}

// slowLogs makes the first left log writes of one node slow.
type slowLogs struct {
	raft.LogStore
	left int
}

func (l *slowLogs) StoreLogs(logs []*raft.Log) error {
	if l.left > 0 {
		l.left--
		sleepInSyscall()
	}
	return l.LogStore.StoreLogs(logs)
}

func (l *slowLogs) IsMonotonic() bool { return isMonotonic(l.LogStore) }

// slowEngine makes the first left engine writes of one node slow.
type slowEngine struct {
	engines.Engine
	left int
}

func (e *slowEngine) Write(b engines.Batch) error {
	if e.left > 0 {
		e.left--
		sleepInSyscall()
	}
	return e.Engine.Write(b)
}

func (e *slowEngine) Sync() error { return engines.Sync(e.Engine) }
