package scenarios

import (
	"time"

	"github.com/raftsnap/testbed/sim"
)

func init() {
	register(Scenario{
		Name: "operator",
		Description: "safety: no faults; an operator transfers leadership every 2-5s (to any node or a chosen one, " +
			"some while a snapshot streams), reloads TrailingLogs 10..1024, SnapshotThreshold and SnapshotInterval, " +
			"takes backups and restores the last one (Raft.Restore), under client load; liveness: every node reaches the leader's commit index within 30s",
		Nodes:    5,
		Safety:   40 * time.Second,
		Liveness: 30 * time.Second,
		Workload: installWorkload,
		Operator: operatorPlan,
		Link:     sim.LinkOptions{DelayMin: time.Millisecond, DelayMax: 5 * time.Millisecond, SnapshotBytesPerSecond: 16 << 20},
	})
}

// operatorPlan is a busy operator: an action every 2-5s, four in seven a
// leadership transfer, the others a reload, a backup or a restore of the
// last backup.
func operatorPlan(seed sim.Seed, safety time.Duration) []OperatorOp {
	r := seed.Rand("operator-plan")
	var out []OperatorOp
	for at := between(r, 2*time.Second, 5*time.Second); at < safety-3*time.Second; at += between(r, 2*time.Second, 5*time.Second) {
		op := OperatorOp{At: at}
		switch r.IntN(7) {
		case 0, 1, 2, 3:
			op.Kind = OpTransfer
			op.ToServer = r.IntN(2) == 0
			op.DuringSnapshot = r.IntN(3) == 0
		case 4:
			op.Kind = OpReload
			op.TrailingLogs = 10 + r.Uint64N(1024-10+1)
			op.SnapshotThreshold = 8 + r.Uint64N(256)
			op.SnapshotInterval = between(r, 200*time.Millisecond, 5*time.Second)
		case 5:
			op.Kind = OpBackup
		default:
			op.Kind = OpRestore
		}
		out = append(out, op)
	}
	return backupBeforeRestore(out)
}
