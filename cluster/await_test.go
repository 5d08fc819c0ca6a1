package cluster

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// fakeFuture has the shape of raft's futures (an embedded deferError with
// errCh and responded) and blocks in Error as they do.
type fakeFuture struct{ deferShape }

type deferShape struct {
	err       error
	errCh     chan error
	responded bool
}

func (f *fakeFuture) Error() error {
	if f.err == nil {
		f.err = <-f.errCh
	}
	return f.err
}

func newFakeFuture() *fakeFuture { return &fakeFuture{deferShape{errCh: make(chan error, 1)}} }

// A future raft never answers is answered at shutdown, so its waiter
// returns ErrFutureLeaked instead of blocking forever, and the node counts it.
func TestShutdownReleasesAFutureRaftLeftUnanswered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &Node{}
		f := newFakeFuture()
		got := make(chan error, 1)
		go func() { got <- n.Await(f) }()
		synctest.Wait() // the waiter is blocked in f.Error
		if released := n.futures.releaseAll(); released != 1 {
			t.Fatalf("released %d futures, want 1", released)
		}
		if err := <-got; !errors.Is(err, ErrFutureLeaked) {
			t.Fatalf("Await = %v, want ErrFutureLeaked", err)
		}
		if n.Leaked() != 1 {
			t.Fatalf("Leaked = %d, want 1", n.Leaked())
		}
		if err := n.Await(newFakeFuture()); !errors.Is(err, ErrFutureLeaked) {
			t.Fatalf("Await after shutdown = %v, want ErrFutureLeaked", err)
		}
	})
}

// A future raft answered keeps raft's answer, and is not counted as leaked.
func TestAwaitReturnsRaftsAnswer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &Node{}
		f := newFakeFuture()
		got := make(chan error, 1)
		go func() { got <- n.Await(f) }()
		synctest.Wait()
		f.errCh <- raft.ErrLeadershipLost // as raft's respond does
		close(f.errCh)
		f.responded = true
		if err := <-got; !errors.Is(err, raft.ErrLeadershipLost) {
			t.Fatalf("Await = %v, want raft's ErrLeadershipLost", err)
		}
		if released := n.futures.releaseAll(); released != 0 || n.Leaked() != 0 {
			t.Fatalf("released %d, leaked %d; want none", released, n.Leaked())
		}
	})
}

// The release reaches into raft's own future types: they must still have
// the shape it expects (a raft upgrade that changes it fails here).
func TestRaftFuturesHaveTheShapeReleaseExpects(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		conf := raft.DefaultConfig()
		conf.LocalID = "a"
		conf.Logger = hclog.NewNullLogger()
		store := raft.NewInmemStore()
		_, trans := raft.NewInmemTransport("a")
		r, err := raft.NewRaft(conf, &raft.MockFSM{}, store, store, raft.NewInmemSnapshotStore(), trans)
		if err != nil {
			t.Fatal(err)
		}
		// Not bootstrapped: a follower, which answers each with ErrNotLeader.
		for name, f := range map[string]raft.Future{
			"Apply":        r.Apply([]byte("x"), time.Second),
			"Barrier":      r.Barrier(time.Second),
			"VerifyLeader": r.VerifyLeader(),
			"AddVoter":     r.AddVoter("b", "b", 0, time.Second),
			"RemoveServer": r.RemoveServer("b", 0, time.Second),
			"AddNonvoter":  r.AddNonvoter("c", "c", 0, time.Second),
			"DemoteVoter":  r.DemoteVoter("b", 0, time.Second),
		} {
			if err := f.Error(); !errors.Is(err, raft.ErrNotLeader) {
				t.Errorf("%s: %v, want ErrNotLeader", name, err)
			}
			_, responded, ok := deferErrorFields(f)
			if !ok || !*responded {
				t.Errorf("%s (%T): errCh/responded not found (ok=%v)", name, f, ok)
			}
		}
		if err := r.Shutdown().Error(); err != nil {
			t.Fatal(err)
		}
	})
}
