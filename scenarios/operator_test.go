package scenarios

import (
	"errors"
	"fmt"
	"slices"
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

// Raft.Restore of a backup into a running cluster takes effect: raft
// reports it done, the leader's state machine installs exactly the
// backup's contents at raft's new index (above its whole log), every
// follower installs the same state from it, and the run passes its checks
// with the history across the restore judged as a reset. It was a finding
// before: the backup's stream carries its own older position, and the
// state machine kept its newer state over it (README, Coverage).
func TestUserRestoreResetsTheClusterToTheBackup(t *testing.T) {
	for _, store := range cluster.StoreKinds() {
		t.Run(store, func(t *testing.T) {
			rep, err := Run(t, Options{Seed: 2, Scenario: "operator", SnapshotStore: store, Duration: 20 * time.Second,
				Operator: []OperatorOp{{At: 5 * time.Second, Kind: OpBackup}, {At: 12 * time.Second, Kind: OpRestore}}})
			if err != nil {
				t.Fatal(err)
			}
			if !rep.OK {
				t.Fatalf("violations: %v", rep.Violations)
			}
			var backup *checkers.Install
			for i, in := range rep.Log.Installs {
				if strings.HasPrefix(in.Node, "backup@") {
					backup = &rep.Log.Installs[i]
				}
			}
			if backup == nil || len(rep.Log.Resets) != 1 {
				t.Fatalf("test premise: one backup and one restore, got backup %v and resets %d", backup, len(rep.Log.Resets))
			}
			reset := rep.Log.Resets[0]
			if reset.Index <= backup.Index {
				t.Errorf("the restore installed at index %d, not above the backup's %d", reset.Index, backup.Index)
			}
			if got := (checkers.NodeState{Pairs: reset.Pairs}).Digest(); got != backup.Digest {
				t.Errorf("the reset holds %s, the backup %s", got, backup.Digest)
			}
			installed := map[string]string{}
			for _, in := range rep.Log.Installs {
				if in.Index == reset.Index {
					installed[in.Node] = in.Digest
				}
			}
			if len(installed) != 5 {
				t.Errorf("%d nodes installed the restore at index %d, want all 5: %v", len(installed), reset.Index, installed)
			}
			for node, d := range installed {
				if d != backup.Digest {
					t.Errorf("%s holds %s after installing the restore, the backup is %s", node, d, backup.Digest)
				}
			}
			resets := 0
			for _, c := range rep.History {
				if c.Reset {
					resets++
				}
			}
			if resets < len(reset.Pairs) {
				t.Errorf("the history holds %d reset writes for a backup of %d keys", resets, len(reset.Pairs))
			}
		})
	}
}

// A user restore counts as committed only when its leader, in the
// restore's term, sent a commit index at or past it.
func TestOnlyCommittedRestoresResetTheReplay(t *testing.T) {
	resets := []checkers.Reset{{Node: "n2", Index: 351, Term: 4}}
	append := func(from string, term, commit int) sim.Event {
		return sim.Event{Node: "n3", Kind: "recv", Detail: fmt.Sprintf("AppendEntries %s->n3 #9 term=%d prev=350 prevterm=4 n=1 commit=%d", from, term, commit)}
	}
	for name, c := range map[string]struct {
		events []sim.Event
		kept   bool
	}{
		"committed by its leader":    {[]sim.Event{append("n2", 4, 350), append("n2", 4, 352)}, true},
		"never committed":            {[]sim.Event{append("n2", 4, 350)}, false},
		"another leader's commit":    {[]sim.Event{append("n1", 5, 400)}, false},
		"its leader in a later term": {[]sim.Event{append("n2", 6, 400)}, false},
	} {
		got := committedResets(c.events, slices.Clone(resets))
		if (len(got) == 1) != c.kept {
			t.Errorf("%s: kept %v, want %v", name, len(got) == 1, c.kept)
		}
	}
}
