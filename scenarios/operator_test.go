package scenarios

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftsnap/testbed/checkers"
	"github.com/raftsnap/testbed/cluster"
	"github.com/raftsnap/testbed/faults"
	"github.com/raftsnap/testbed/sim"
)

func TestTransferCheckFailsAFalseSuccess(t *testing.T) {
	if v := judgeTransfer("n0", 3, nil, raft.Leader, 3); v == "" {
		t.Error("a transfer reported done while the old leader still leads its term passed")
	}
	for _, ok := range []struct {
		err   error
		state raft.RaftState
		term  uint64
	}{{nil, raft.Follower, 4}, {nil, raft.Leader, 5}, {errors.New("timed out"), raft.Leader, 3}} {
		if v := judgeTransfer("n0", 3, ok.err, ok.state, ok.term); v != "" {
			t.Errorf("%+v: %s", ok, v)
		}
	}
}

func TestReloadCheckFailsARefusalOrAnotherValue(t *testing.T) {
	set := raft.ReloadableConfig{TrailingLogs: 10, SnapshotThreshold: 8, SnapshotInterval: time.Second, HeartbeatTimeout: time.Second, ElectionTimeout: time.Second}
	other := set
	other.TrailingLogs = 10240
	if judgeReload("n1", set, errors.New("bad"), set) == "" || judgeReload("n1", set, nil, other) == "" {
		t.Error("a refused or ignored reload passed")
	}
	if v := judgeReload("n1", set, nil, set); v != "" {
		t.Error(v)
	}
}

func TestSwarmOperatorPlansReplayAndStayInTheSafetyPhase(t *testing.T) {
	kinds := map[OperatorKind]int{}
	for seed := sim.Seed(1); seed <= 100; seed++ {
		a, b := swarmOperator(seed, 40*time.Second), swarmOperator(seed, 40*time.Second)
		if len(a) != len(b) {
			t.Fatalf("seed %d: plans differ", seed)
		}
		for i, op := range a {
			if op != b[i] {
				t.Fatalf("seed %d: plans differ at %d: %v vs %v", seed, i, op, b[i])
			}
			if op.At < 2*time.Second || op.At > 37*time.Second || i > 0 && op.At < a[i-1].At {
				t.Fatalf("seed %d: %v out of order or out of the safety phase", seed, op)
			}
			if op.Kind == OpReload && (op.TrailingLogs < 10 || op.TrailingLogs > 1024) {
				t.Fatalf("seed %d: TrailingLogs %d outside 10..1024", seed, op.TrailingLogs)
			}
			kinds[op.Kind]++
		}
	}
	for _, k := range []OperatorKind{OpTransfer, OpReload, OpBackup} {
		if kinds[k] < 20 {
			t.Errorf("%s planned %d times in 100 seeds", k, kinds[k])
		}
	}
}

// A fault-free run with one of each operator action: each takes effect and
// is judged, and the run passes.
func TestOperatorActionsTakeEffect(t *testing.T) {
	plan := []OperatorOp{
		{At: 4 * time.Second, Kind: OpTransfer, ToServer: true},
		{At: 7 * time.Second, Kind: OpReload, TrailingLogs: 10, SnapshotThreshold: 16, SnapshotInterval: 500 * time.Millisecond},
		{At: 12 * time.Second, Kind: OpBackup},
		{At: 14 * time.Second, Kind: OpTransfer},
	}
	rep, err := Run(t, Options{Seed: 3, Scenario: "swarm", Schedule: &faults.Schedule{Nodes: 5, Duration: 20 * time.Second}, Operator: plan})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		t.Fatalf("violations: %v", rep.Violations)
	}
	var transfers, reloads int
	leaders := map[string]bool{}
	for _, e := range rep.Events {
		switch e.Kind {
		case string(OpTransfer):
			if strings.HasSuffix(e.Detail, "err=<nil>") {
				transfers++
				leaders[strings.Fields(e.Detail)[0]] = true
			}
		case string(OpReload):
			if strings.HasSuffix(e.Detail, "err=<nil>") {
				reloads++
			}
		}
	}
	if transfers != 2 || len(leaders) != 2 {
		t.Errorf("%d transfers done from %v, want 2 from two leaders", transfers, leaders)
	}
	if reloads != 5 {
		t.Errorf("%d nodes reloaded, want 5", reloads)
	}
	backups := 0
	for _, in := range rep.Log.Installs {
		if strings.HasPrefix(in.Node, "backup@") {
			backups++
			// The check it goes through: a backup whose contents are not
			// the committed state at its index is reported.
			bad := rep.Log
			bad.Installs = []checkers.Install{in}
			bad.Installs[0].Digest = "0000000000000000"
			if len(checkers.SnapshotIntegrity(bad)) == 0 {
				t.Error("a backup with other contents passed the snapshot integrity check")
			}
		}
	}
	if backups != 1 {
		t.Errorf("%d backups recorded, want 1", backups)
	}
}

// A finding, kept as a test until it is fixed: Raft.Restore of a backup
// reports success, but every node's state machine keeps its state, because
// the backup's stream carries its own older position and FSM.Restore keeps
// a newer state over an older snapshot (README, Coverage). When this test
// fails because the restore took effect, put OpRestore in the swarm mix
// and judge the history across it as a reset.
func TestUserRestoreIsIgnoredByOurStateMachine(t *testing.T) {
	// Seed 2 on the copying store: a seed whose restore is not cut by a
	// crash of the node.
	rep, err := Run(t, Options{Seed: 2, Scenario: "swarm", SnapshotStore: cluster.StoreCopy, Schedule: &faults.Schedule{Nodes: 5, Duration: 20 * time.Second},
		Operator: []OperatorOp{{At: 5 * time.Second, Kind: OpBackup}, {At: 12 * time.Second, Kind: OpRestore}}})
	if err != nil {
		t.Fatal(err)
	}
	restored := false
	for _, e := range rep.Events {
		restored = restored || e.Kind == string(OpRestore) && strings.Contains(e.Detail, "err=<nil>")
	}
	if !restored {
		t.Fatal("test premise: the restore was made and raft reported it done")
	}
	ignored := false
	for _, v := range rep.Violations {
		ignored = ignored || strings.HasPrefix(v, "restore: n") && strings.Contains(v, "not the backup's")
	}
	if !ignored {
		t.Errorf("the restore took effect (violations %v): our state machine handles user restores now", rep.Violations)
	}
}
