package scenarios

import (
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/raftsnap/testbed/cluster"
	"github.com/raftsnap/testbed/faults"
)

// The snapshot store of a bbolt node is under the same disk faults as a
// Pebble node's whole disk: write and sync errors, a full disk (ENOSPC)
// while a snapshot is persisted or received, failed reads of a stored
// snapshot. The node refuses what failed, comes back, and the run
// converges.
func TestBboltSnapshotStoreTakesDiskErrors(t *testing.T) {
	defer hangWatchdog(t, "bbolt disk-error")()
	var injected, full, reads, persistFull int
	for seed := uint64(1); seed <= 3; seed++ {
		// n1 is down while the log is compacted past it, and catches up
		// through a snapshot that it receives and the leader reads under
		// disk errors; then the same with n2.
		s := faults.Schedule{Nodes: 5, Duration: 40 * time.Second, Faults: []faults.Fault{
			{At: 2 * time.Second, Duration: 8 * time.Second, Kind: faults.KindCrash, Target: faults.Target{Role: faults.RoleNode, Node: 1}},
			{At: 10 * time.Second, Duration: 8 * time.Second, Kind: faults.KindDiskError, Target: faults.Target{Role: faults.RoleNode, Node: 1}, Probability: 0.2},
			{At: 18 * time.Second, Duration: 8 * time.Second, Kind: faults.KindCrash, Target: faults.Target{Role: faults.RoleNode, Node: 2}},
			{At: 26 * time.Second, Duration: 12 * time.Second, Kind: faults.KindDiskError, Target: leaderTarget, Probability: 0.2},
		}}
		// The copying store, whose local snapshots write files for a full
		// disk to fail (a zero-copy one writes a 28-byte reference).
		rep, err := Run(t, Options{Seed: seed, Scenario: "snapshot-install", Engine: EngineBbolt, SnapshotStore: cluster.StoreCopy, Schedule: &s})
		if err != nil {
			t.Fatal(err)
		}
		requirePass(t, seed, rep)
		for _, e := range rep.Events {
			if e.Kind == "disk-errors" {
				var i, f, r int
				if _, err := fmt.Sscanf(e.Detail, "injected=%d enospc=%d reads=%d", &i, &f, &r); err != nil {
					t.Fatalf("seed %d: %q: %v", seed, e.Detail, err)
				}
				injected, full, reads = injected+i, full+f, reads+r
			}
		}
		persistFull += traceHas(rep.Events, "snapshot-persist", "no space left on device")
	}
	if injected == full+reads || full == 0 || reads == 0 || persistFull == 0 {
		t.Fatalf("over seeds 1..3: %d errors injected, %d of them ENOSPC (%d reached Persist), %d failed reads; want some of each",
			injected, full, persistFull, reads)
	}
}

// A power loss on a bbolt node strikes at its next sync, inside a commit,
// and loses or tears the pages written since the last one (here every
// unsynced page is lost or torn); bbolt falls back to its previous commit,
// the node restarts from that and the run converges.
func TestBboltPowerLossLosesUnsyncedPages(t *testing.T) {
	defer hangWatchdog(t, "bbolt power loss")()
	pages := regexp.MustCompile(`pages kept=(\d+) lost=(\d+) torn=(\d+)`)
	var strikes, lost int
	for seed := uint64(1); seed <= 3; seed++ {
		s := faults.Schedule{Nodes: 5, Duration: 30 * time.Second, Faults: []faults.Fault{
			{At: 4 * time.Second, Duration: 3 * time.Second, Kind: faults.KindPowerLoss, Target: leaderTarget, UnsyncedDataPercent: 100},
			{At: 12 * time.Second, Duration: 3 * time.Second, Kind: faults.KindPowerLoss, Target: followerTarget, UnsyncedDataPercent: 100},
			{At: 20 * time.Second, Duration: 3 * time.Second, Kind: faults.KindPowerLoss, Target: leaderTarget, UnsyncedDataPercent: 100},
		}}
		rep, err := Run(t, Options{Seed: seed, Scenario: "partition-heal", Engine: EngineBbolt, Schedule: &s})
		if err != nil {
			t.Fatal(err)
		}
		requirePass(t, seed, rep)
		strikes += traceHas(rep.Events, "power-loss-strikes", "")
		for _, e := range rep.Events {
			if m := pages.FindStringSubmatch(e.Detail); e.Kind == "crash" && m != nil {
				if m[1] != "0" {
					t.Fatalf("seed %d: pages kept at 0%% kept: %q", seed, e.Detail)
				}
				l, _ := strconv.Atoi(m[2])
				tn, _ := strconv.Atoi(m[3])
				lost += l + tn
			}
		}
	}
	if strikes == 0 || lost == 0 {
		t.Fatalf("over seeds 1..3: %d power losses struck, %d pages lost or torn; want some of each", strikes, lost)
	}
}

// Stored snapshots rot on disk (snapshot-rot): each one opened while the
// fault is on has a byte flipped after its store accepted it. The node
// refuses it before sending or restoring a byte, takes a fresh snapshot,
// and the run converges with every install intact (snapshot-integrity).
func TestRottenSnapshotsAreRefusedAndReplaced(t *testing.T) {
	defer hangWatchdog(t, "snap-rot")()
	rotted := 0
	for seed := uint64(1); seed <= 3; seed++ {
		// The copying store keeps every snapshot in a file for rot to reach;
		// a zero-copy store keeps only received ones.
		rep, err := Run(t, Options{Seed: seed, Scenario: "snapshot-rot", Engine: EnginePebble, SnapshotStore: cluster.StoreCopy})
		if err != nil {
			t.Fatal(err)
		}
		requirePass(t, seed, rep)
		for _, e := range rep.Events {
			var n int
			if e.Kind == "snapshots-rotted" {
				if _, err := fmt.Sscanf(e.Detail, "count=%d", &n); err != nil {
					t.Fatal(err)
				}
				rotted += n
			}
		}
	}
	if rotted == 0 {
		t.Fatal("no stored snapshot rotted in seeds 1..3 of snapshot-rot")
	}
}
