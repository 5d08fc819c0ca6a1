package checkers

import (
	"maps"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftsnap/testbed/cluster"
)

// UserRestore is an operator's Raft.Restore of a backup as a client sees
// it: a call from Invoke to Return that, if it took effect, set every key
// to its value in the backup (Pairs) and removed every key the backup
// lacks.
type UserRestore struct {
	Node           string
	Invoke, Return time.Duration
	// Outcome is OK when raft reported the restore done, Fail when it
	// refused it before touching anything, Unknown otherwise (raft keeps
	// the backup in its snapshot store before it restores the state
	// machine, so a restore cut short may still take effect, even at the
	// node's next start).
	Outcome cluster.Outcome
	Pairs   map[string][]byte
}

// WithRestores returns history with each restore judged as a reset: one
// write per key (every key of the history and of the backup), a set to the
// backup's value or a delete, each spanning the restore's call and marked
// Reset (it reports no previous value). The linearizability and durability
// checkers then judge the history across a restore as they judge any
// write: reads after it must see the backup's values, then what was
// written after.
//
// A restore is atomic across keys, and these writes are linearized one key
// at a time (the model is partitioned by key), so a history in which a
// reader saw one key restored and another not yet, both inside the
// restore's span, would pass: the check is per key, as it is for every
// other operation of this key-value history.
func WithRestores(history []cluster.Call, restores []UserRestore) []cluster.Call {
	if len(restores) == 0 {
		return history
	}
	keys := map[string]bool{}
	for _, c := range history {
		keys[string(c.Command.Key)] = true
	}
	for _, r := range restores {
		for k := range r.Pairs {
			keys[k] = true
		}
	}
	out := slices.Clone(history)
	for _, r := range restores {
		if r.Outcome == cluster.OutcomeFail {
			continue
		}
		for _, k := range slices.Sorted(maps.Keys(keys)) {
			cmd := cluster.Command{Op: cluster.OpDelete, Key: []byte(k)}
			if v, ok := r.Pairs[k]; ok {
				cmd = cluster.Command{Op: cluster.OpSet, Key: []byte(k), Value: v}
			}
			out = append(out, cluster.Call{Client: -2, Command: cmd, Invoke: r.Invoke, Return: r.Return, Outcome: r.Outcome,
				Node: raft.ServerID(r.Node), Err: "user restore", Reset: true})
		}
	}
	return out
}
