package sim_test

import (
	"errors"
	"testing"
	"testing/synctest"

	"github.com/hashicorp/raft"

	"github.com/raftsnap/testbed/sim"
)

// A node that crashes after a request reached it (its endpoint replaced by
// a fresh, closed one, as World.CrashNow does) may still answer from the
// old instance; that reply must never reach the caller, which sees a
// timeout as if the node had died before answering.
func TestReplyFromCrashedEndpointIsDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(1, sim.NetworkOptions{}, "a")
		defer w.close(t)
		b := w.net.Transport("b")
		done := make(chan struct{})
		go func() {
			defer close(done)
			rpc := <-b.Consumer()
			w.net.Transport("b").Close() // the crash: b's endpoint closes
			rpc.Respond(&raft.RequestVoteResponse{Term: 3, Granted: true}, nil)
		}()
		err, d := w.vote("a", "b")
		<-done
		if !errors.Is(err, sim.ErrTimeout) || !timedOutAfter(d, sim.DefaultRPCTimeout) {
			t.Fatalf("reply from a crashed endpoint: err %v after %v, want a timeout", err, d)
		}
		if k := w.net.Stats().Kinds["RequestVote"]; k.Unreachable != 1 {
			t.Errorf("stats: %+v", k)
		}
	})
}
