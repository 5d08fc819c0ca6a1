package checkers

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
	"pgregory.net/rapid"

	"github.com/raftsnap/testbed/cluster"
	"github.com/raftsnap/testbed/engines/pebble"
)

// TestSnapshotIntegrityReplayAgreesWithTheStateMachine runs random command
// logs through the real cluster.FSM, in random batches (a later command in
// a batch reads what an earlier one wrote), and checks that the replay
// SnapshotIntegrity uses ends in the same state at every batch boundary:
// an install of the FSM's real state there must pass.
func TestSnapshotIntegrityReplayAgreesWithTheStateMachine(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		e, err := pebble.Open("engine", pebble.Options{FS: vfs.NewMem()})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		fsm, err := cluster.NewFSM(e, cluster.FSMHooks{})
		if err != nil {
			t.Fatal(err)
		}
		keys := []string{"a", "b", "c"}
		values := []string{"", "1", "2"}
		genCommand := rapid.Custom(func(t *rapid.T) cluster.Command {
			c := cluster.Command{
				Op:    cluster.Op(rapid.IntRange(int(cluster.OpSet), int(cluster.OpCAS)).Draw(t, "op")),
				Key:   []byte(rapid.SampledFrom(keys).Draw(t, "key")),
				Value: []byte(rapid.SampledFrom(values).Draw(t, "value")),
			}
			if c.Op == cluster.OpCAS {
				c.ExpectAbsent = rapid.Bool().Draw(t, "absent")
				if !c.ExpectAbsent {
					c.Expected = []byte(rapid.SampledFrom(values).Draw(t, "expected"))
				}
			}
			return c
		})
		var log RunLog
		index := uint64(0)
		for range rapid.IntRange(1, 12).Draw(t, "batches") {
			var batch []*raft.Log
			for range rapid.IntRange(1, 6).Draw(t, "batch size") {
				index += uint64(rapid.IntRange(1, 2).Draw(t, "index step")) // gaps are raft's no-ops
				l := &raft.Log{Index: index, Term: 1, Type: raft.LogCommand}
				if rapid.IntRange(0, 9).Draw(t, "config") == 0 {
					l.Type, l.Data = raft.LogConfiguration, []byte("servers")
				} else {
					l.Data = genCommand.Draw(t, "command").Encode()
				}
				batch = append(batch, l)
				log.Applies = append(log.Applies, Apply{Node: "n0", Index: l.Index, Term: l.Term, Config: l.Type == raft.LogConfiguration, Data: l.Data})
			}
			for i, r := range fsm.ApplyBatch(batch) {
				if err, ok := r.(error); ok {
					t.Fatalf("entry %d: %v", batch[i].Index, err)
				}
			}
			st, err := ReadState("n1", e)
			if err != nil {
				t.Fatal(err)
			}
			log.Installs = append(log.Installs, Install{Node: "n1", Index: st.Applied.Index, Term: st.Applied.Term, Digest: st.Digest()})
		}
		if v := SnapshotIntegrity(log); v != nil {
			t.Fatalf("replay disagrees with the state machine: %v", fmt.Sprint(v))
		}
	})
}
