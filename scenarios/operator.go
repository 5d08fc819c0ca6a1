package scenarios

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftsnap/testbed/checkers"
	"github.com/raftsnap/testbed/cluster"
	"github.com/raftsnap/testbed/sim"
	"github.com/raftsnap/testbed/snapshot"
)

// OperatorKind names something an operator does to a running cluster
// through raft's API, as opposed to a fault the world does to it.
type OperatorKind string

const (
	// OpTransfer asks the leader to hand leadership over
	// (Raft.LeadershipTransfer, or LeadershipTransferToServer with a
	// follower chosen by the seed), optionally once the leader is
	// streaming a snapshot to a follower.
	OpTransfer OperatorKind = "leadership-transfer"
	// OpReload changes SnapshotThreshold, SnapshotInterval and
	// TrailingLogs on every live node (Raft.ReloadConfig).
	OpReload OperatorKind = "reload-config"
	// OpBackup takes a user snapshot on the leader (Raft.Snapshot) and
	// streams it out (Open), as an operator's backup does.
	OpBackup OperatorKind = "backup"
	// OpRestore restores the last backup into the running cluster
	// (Raft.Restore); with no backup yet it is skipped.
	OpRestore OperatorKind = "restore"
)

// OperatorOp is one planned operator action.
type OperatorOp struct {
	At   time.Duration
	Kind OperatorKind
	// ToServer picks the transfer's target (OpTransfer).
	ToServer bool
	// DuringSnapshot waits (up to 5s) for the leader to be sending an
	// InstallSnapshot before transferring (OpTransfer).
	DuringSnapshot bool
	// The reloaded values (OpReload).
	TrailingLogs      uint64
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
}

func (o OperatorOp) String() string {
	s := fmt.Sprintf("t=%v %s", o.At, o.Kind)
	switch o.Kind {
	case OpTransfer:
		s += fmt.Sprintf(" to-server=%v during-snapshot=%v", o.ToServer, o.DuringSnapshot)
	case OpReload:
		s += fmt.Sprintf(" trailing=%d threshold=%d interval=%v", o.TrailingLogs, o.SnapshotThreshold, o.SnapshotInterval)
	}
	return s
}

// swarmOperator plans zero to four operator actions over the safety phase,
// each kind, time and value drawn from the seed, and on half the seeds a
// restore of the last backup.
func swarmOperator(seed sim.Seed, safety time.Duration) []OperatorOp {
	r := seed.Rand("swarm-operator")
	var out []OperatorOp
	for range r.IntN(5) {
		op := OperatorOp{At: between(r, 2*time.Second, safety-3*time.Second)}
		switch r.IntN(3) {
		case 0:
			op.Kind = OpTransfer
			op.ToServer = r.IntN(2) == 0
			op.DuringSnapshot = r.IntN(3) == 0
		case 1:
			op.Kind = OpReload
			op.TrailingLogs = 10 + r.Uint64N(1024-10+1)
			op.SnapshotThreshold = 8 + r.Uint64N(256)
			op.SnapshotInterval = between(r, 200*time.Millisecond, 5*time.Second)
		default:
			op.Kind = OpBackup
		}
		out = append(out, op)
	}
	// Half the seeds also restore the last backup (Raft.Restore), drawn
	// from a stream of its own so that the actions above stay those each
	// seed had before restores joined the mix.
	if rr := seed.Rand("swarm-restore"); rr.IntN(2) == 0 {
		out = append(out, OperatorOp{At: between(rr, 2*time.Second, safety-3*time.Second), Kind: OpRestore})
	}
	// In time order, so that one goroutine runs them in program order.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].At < out[j-1].At; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return backupBeforeRestore(out)
}

// backupBeforeRestore turns a restore planned before any backup into a
// backup: there is nothing to restore yet.
func backupBeforeRestore(plan []OperatorOp) []OperatorOp {
	backedUp := false
	for i := range plan {
		if plan[i].Kind == OpRestore && !backedUp {
			plan[i].Kind = OpBackup
		}
		backedUp = backedUp || plan[i].Kind == OpBackup
	}
	return plan
}

// operator runs a plan of operator actions against a world and judges
// each one's outcome.
type operator struct {
	// The last backup, its metadata and the digest of its contents, for
	// OpRestore.
	lastBackup []byte
	lastMeta   *raft.SnapshotMeta
	lastPairs  map[string][]byte
	lastDigest string

	w          *World
	rng        *rand.Rand
	violations []string
}

// run executes plan from start (the run's start instant); it returns when
// the last action is done.
func (o *operator) run(plan []OperatorOp, start time.Time) {
	for _, op := range plan {
		if d := time.Until(start.Add(op.At)); d > 0 {
			time.Sleep(d)
		}
		o.w.CountFault(string(op.Kind))
		switch op.Kind {
		case OpTransfer:
			o.transfer(op)
		case OpReload:
			o.reload(op)
		case OpBackup:
			o.backup()
		case OpRestore:
			o.restore()
		}
	}
}

func (o *operator) record(kind OperatorKind, detail string) {
	o.w.Trace.Record("", string(kind), detail)
}

func (o *operator) fail(format string, args ...any) {
	o.violations = append(o.violations, fmt.Sprintf(format, args...))
}

// snapshotInFlight reports whether an InstallSnapshot is on the wire.
func (o *operator) snapshotInFlight() bool {
	st := o.w.Net.Stats().Kinds["InstallSnapshot"]
	return st.Sent > st.Replied+st.Failed
}

// transfer asks the leader to hand over leadership (see judgeTransfer).
func (o *operator) transfer(op OperatorOp) {
	if op.DuringSnapshot {
		for deadline := time.Now().Add(5 * time.Second); !o.snapshotInFlight() && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
	}
	leader := o.w.Leader()
	if leader == nil {
		o.record(op.Kind, "skipped: no leader")
		return
	}
	term := leader.Raft.CurrentTerm()
	streaming := o.snapshotInFlight()
	var f raft.Future
	target := "any"
	if op.ToServer {
		var followers []*cluster.Node
		for _, n := range o.w.Live() {
			if n.ID != leader.ID && o.w.isVoter(n.ID) {
				followers = append(followers, n)
			}
		}
		if len(followers) == 0 {
			o.record(op.Kind, "skipped: no live voter to transfer to")
			return
		}
		to := followers[o.rng.IntN(len(followers))]
		target = string(to.ID)
		f = leader.Raft.LeadershipTransferToServer(to.ID, raft.ServerAddress(to.ID))
	} else if m := o.w.mutation; m != nil && m.LeadershipTransfer != nil {
		f = m.LeadershipTransfer(leader.Raft)
	} else {
		f = leader.Raft.LeadershipTransfer()
	}
	err := f.Error()
	o.record(op.Kind, fmt.Sprintf("from=%s term=%d to=%s snapshot-streaming=%v err=%v", leader.ID, term, target, streaming, err))
	if v := judgeTransfer(leader.ID, term, err, leader.Raft.State(), leader.Raft.CurrentTerm()); v != "" {
		o.fail("%s", v)
	}
}

// judgeTransfer is the check of a leadership transfer: one that reports
// success has ended the old leader's leadership of its term (raft answers
// the future only once the target won an election, or with an error).
func judgeTransfer(from raft.ServerID, term uint64, err error, stateAfter raft.RaftState, termAfter uint64) string {
	if err == nil && stateAfter == raft.Leader && termAfter == term {
		return fmt.Sprintf("leadership-transfer: %s reported the transfer done but still leads term %d", from, term)
	}
	return ""
}

// judgeReload is the check of a ReloadConfig of valid values: the node
// takes them and reports them back.
func judgeReload(node raft.ServerID, set raft.ReloadableConfig, err error, got raft.ReloadableConfig) string {
	switch {
	case err != nil:
		return fmt.Sprintf("reload-config: %s refused valid values: %v", node, err)
	case got != set:
		return fmt.Sprintf("reload-config: %s reports %+v after reloading %+v", node, got, set)
	}
	return ""
}

// reload changes the snapshot settings of every live node. Its check: the
// values are valid, so every live node must take them and report them
// back; a node that shut down meanwhile is not judged.
func (o *operator) reload(op OperatorOp) {
	for _, n := range o.w.Live() {
		rc := n.Raft.ReloadableConfig()
		rc.TrailingLogs, rc.SnapshotThreshold, rc.SnapshotInterval = op.TrailingLogs, op.SnapshotThreshold, op.SnapshotInterval
		var err error
		if m := o.w.mutation; m != nil && m.ReloadConfig != nil {
			err = m.ReloadConfig(n.Raft, rc)
		} else {
			err = n.Raft.ReloadConfig(rc)
		}
		o.record(op.Kind, fmt.Sprintf("node=%s trailing=%d threshold=%d interval=%v err=%v", n.ID, op.TrailingLogs, op.SnapshotThreshold, op.SnapshotInterval, err))
		if v := judgeReload(n.ID, rc, err, n.Raft.ReloadableConfig()); v != "" && n.Raft.State() != raft.Shutdown {
			o.fail("%s", v)
		}
	}
}

// backup takes a user snapshot on the leader and reads it out through our
// stream decoder. Its check goes with the installs' (SnapshotIntegrity):
// the backup's contents must be the replay of the committed log up to the
// backup's index, recorded as an install by "backup@<node>".
func (o *operator) backup() {
	leader := o.w.Leader()
	if leader == nil {
		o.record(OpBackup, "skipped: no leader")
		return
	}
	inc := o.w.incarnationOf(leader.ID)
	f := leader.Raft.Snapshot()
	if err := f.Error(); err != nil {
		// Nothing new to snapshot, or a snapshot already running: an
		// operator tries again later.
		o.record(OpBackup, fmt.Sprintf("node=%s err=%v", leader.ID, err))
		return
	}
	meta, rc, err := f.Open()
	if err != nil {
		o.record(OpBackup, fmt.Sprintf("node=%s open err=%v", leader.ID, err))
		return
	}
	defer rc.Close()
	raw, _ := io.ReadAll(io.LimitReader(rc, meta.Size))
	pairs, h, err := decodeBackup(bytes.NewReader(raw))
	o.record(OpBackup, fmt.Sprintf("node=%s index=%d term=%d size=%d pairs=%d err=%v", leader.ID, meta.Index, meta.Term, meta.Size, len(pairs), err))
	if err != nil {
		// A node may be crashed under the reader (a crash tap on its
		// snapshot store, or the nemesis); a damaged backup that decodes
		// is what the check below catches.
		crashed := errors.Is(err, errCrashed) || errors.Is(err, raft.ErrRaftShutdown) ||
			leader.Raft.State() == raft.Shutdown || o.w.incarnationOf(leader.ID) != inc
		if !crashed {
			o.fail("backup: the user snapshot of %s at index %d does not decode: %v", leader.ID, meta.Index, err)
		}
		return
	}
	// The stream carries the state machine's own position, which lags
	// raft's by the entries that never reach it (no-ops, barriers), so it
	// may be below the snapshot's index but never above.
	if h.Index > meta.Index || h.Term > meta.Term {
		o.fail("backup: the user snapshot of %s says index %d term %d, its stream %d/%d, beyond it", leader.ID, meta.Index, meta.Term, h.Index, h.Term)
	}
	o.lastBackup, o.lastMeta, o.lastPairs = raw, meta, pairs
	o.lastDigest = checkers.NodeState{Pairs: pairs}.Digest()
	o.w.mu.Lock()
	o.w.log.Installs = append(o.w.log.Installs, checkers.Install{Node: "backup@" + string(leader.ID), At: time.Since(o.w.start),
		Index: h.Index, Term: h.Term, Digest: checkers.NodeState{Pairs: pairs}.Digest()})
	o.w.mu.Unlock()
}

// decodeBackup reads a whole snapshot stream.
func decodeBackup(r io.Reader) (map[string][]byte, snapshot.Header, error) {
	d, err := snapshot.NewDecoder(r)
	if err != nil {
		return nil, snapshot.Header{}, err
	}
	pairs := map[string][]byte{}
	for d.Next() {
		pairs[string(d.Key())] = append([]byte(nil), d.Value()...)
	}
	return pairs, d.Header(), d.Err()
}

// restore restores the last backup through the leader (Raft.Restore).
// Its checks: a restore that raft reports done has the leader's state
// machine install exactly the backup's contents (recorded as a reset of
// the committed state at raft's new index, so SnapshotIntegrity holds
// that install, every follower's install of it and every later state to
// the backup plus what was applied after); and the client history across
// it is judged as a reset of every key (checkers.WithRestores), so reads
// after it must see the backup's values, then what was written after.
func (o *operator) restore() {
	leader := o.w.Leader()
	if leader == nil || o.lastBackup == nil {
		o.record(OpRestore, "skipped: no leader or no backup")
		return
	}
	r := &checkers.Reset{Node: string(leader.ID), Pairs: o.lastPairs}
	o.w.mu.Lock()
	o.w.restoring = append(o.w.restoring, pendingRestore{Reset: r, digest: o.lastDigest})
	o.w.mu.Unlock()
	invoke := o.w.History.Since()
	err := leader.Raft.Restore(o.lastMeta, bytes.NewReader(o.lastBackup), 10*time.Second)
	ret := o.w.History.Since()
	outcome := cluster.OutcomeOK
	switch {
	case err == nil:
	case strings.HasPrefix(err.Error(), "cannot restore snapshot now"):
		// Refused before anything was written (a configuration change
		// is outstanding).
		outcome = cluster.OutcomeFail
	default:
		// raft keeps the backup in its snapshot store before it restores
		// the state machine: a restore cut short may still take effect,
		// even at the node's next start.
		outcome = cluster.OutcomeUnknown
	}
	o.w.mu.Lock()
	index := r.Index
	o.w.restores = append(o.w.restores, checkers.UserRestore{Node: string(leader.ID), Invoke: invoke, Return: ret, Outcome: outcome, Pairs: o.lastPairs})
	o.w.mu.Unlock()
	o.record(OpRestore, fmt.Sprintf("node=%s backup-index=%d pairs=%d err=%v installed-at=%d", leader.ID, o.lastMeta.Index, len(o.lastPairs), err, index))
	if err == nil && index == 0 {
		o.fail("restore: %s reported the restore of the backup at index %d done, but its state machine never held the backup's contents (%s)",
			leader.ID, o.lastMeta.Index, o.lastDigest)
	}
}

// pendingRestore is a user restore whose install on its node has not been
// seen yet: the first install on that node holding the backup's contents
// is the restore (during the call, or at the node's next start if a crash
// cut it short), recorded as a reset.
type pendingRestore struct {
	*checkers.Reset
	digest string
}
