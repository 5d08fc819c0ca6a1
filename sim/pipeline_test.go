package sim_test

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftsnap/testbed/sim"
)

// pipelineSend sends n pipelined AppendEntries from a to b, the i-th with
// PrevLogEntry i, and returns the futures in the order raft's decoder gets
// them.
func pipelineSend(t *testing.T, w *world, n int) []raft.AppendFuture {
	t.Helper()
	p, err := w.servers["a"].tr.AppendEntriesPipeline("b", "b")
	if err != nil {
		t.Fatalf("AppendEntriesPipeline: %v", err)
	}
	defer p.Close()
	for i := range n {
		req := &raft.AppendEntriesRequest{Term: 2, PrevLogEntry: uint64(i + 1), PrevLogTerm: 2, LeaderCommitIndex: 1, Entries: []*raft.Log{{Index: uint64(i + 2)}}}
		if _, err := p.AppendEntries(req, new(raft.AppendEntriesResponse)); err != nil {
			t.Fatalf("AppendEntries %d: %v", i, err)
		}
	}
	var got []raft.AppendFuture
	for range n {
		got = append(got, <-p.Consumer())
	}
	return got
}

// arrivalOrder is the PrevLogEntry of each AppendEntries b got, in order.
func arrivalOrder(s *server) []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []uint64
	for _, m := range s.got {
		if ae, ok := m.(*raft.AppendEntriesRequest); ok {
			out = append(out, ae.PrevLogEntry)
		}
	}
	return out
}

func inOrder(xs []uint64) bool {
	for i := 1; i < len(xs); i++ {
		if xs[i] < xs[i-1] {
			return false
		}
	}
	return true
}

func TestPipelineDeliversInSendOrderWithoutWaitingForReplies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Random one-way delays of 1..10ms: separate calls would overtake
		// each other; a pipeline keeps its requests in order.
		w := newWorld(1, sim.NetworkOptions{Link: sim.LinkOptions{DelayMin: time.Millisecond, DelayMax: 10 * time.Millisecond}}, "a", "b")
		defer w.close(t)
		start := time.Now()
		futures := pipelineSend(t, w, 30)
		for i, f := range futures {
			if f.Request().PrevLogEntry != uint64(i+1) || !f.Response().Success || f.Error() != nil {
				t.Fatalf("future %d: request prev %d, response %+v, error %v", i, f.Request().PrevLogEntry, f.Response(), f.Error())
			}
		}
		if got := arrivalOrder(w.servers["b"]); len(got) != 30 || !inOrder(got) {
			t.Errorf("b got %v, want 1..30 in order", got)
		}
		// 30 round trips one after another would take at least 60ms.
		if d := time.Since(start); d > 25*time.Millisecond {
			t.Errorf("30 pipelined calls took %v: they waited for each other's replies", d)
		}
		if st := w.net.Stats(); st.Pipelined != 30 || st.Kinds["AppendEntries"].Replied != 30 {
			t.Errorf("stats: pipelined %d, %+v", st.Pipelined, st.Kinds["AppendEntries"])
		}
	})
}

func TestPipelineTakesTheReorderFault(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(1, sim.NetworkOptions{Link: sim.LinkOptions{DelayMin: time.Millisecond, ReorderProbability: 0.3, ReorderDelayMax: 20 * time.Millisecond}}, "a", "b")
		defer w.close(t)
		pipelineSend(t, w, 30)
		if got := arrivalOrder(w.servers["b"]); inOrder(got) {
			t.Errorf("b got %v in send order: the reorder fault did not act on pipelined requests", got)
		}
	})
}

func TestPipelinedRequestLostOrCutFailsItsFuture(t *testing.T) {
	for name, setup := range map[string]func(w *world){
		"loss":      func(w *world) { w.net.SetLink("a", "b", sim.LinkOptions{LossProbability: 1}) },
		"partition": func(w *world) { w.net.Block("a", "b") },
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(1, sim.NetworkOptions{}, "a", "b")
				defer w.close(t)
				setup(w)
				for _, f := range pipelineSend(t, w, 3) {
					// raft's decoder aborts the pipeline on an unsuccessful
					// response, as on a broken connection.
					if !errors.Is(f.Error(), sim.ErrTimeout) || f.Response().Success {
						t.Errorf("future: error %v, response %+v; want a timeout and no success", f.Error(), f.Response())
					}
				}
				if got := arrivalOrder(w.servers["b"]); len(got) != 0 {
					t.Errorf("b got %v through a %s", got, name)
				}
			})
		})
	}
}

func TestPipelineCanBeTurnedOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(1, sim.NetworkOptions{NoPipelining: true}, "a", "b")
		defer w.close(t)
		if _, err := w.servers["a"].tr.AppendEntriesPipeline("b", "b"); !errors.Is(err, raft.ErrPipelineReplicationNotSupported) {
			t.Errorf("AppendEntriesPipeline: %v, want not supported", err)
		}
	})
}

func TestClosedPipelineRefusesAndLeavesNothingRunning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(1, sim.NetworkOptions{Link: sim.LinkOptions{DelayMin: 5 * time.Millisecond}}, "a", "b")
		defer w.close(t)
		p, err := w.servers["a"].tr.AppendEntriesPipeline("b", "b")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.AppendEntries(&raft.AppendEntriesRequest{Term: 1, PrevLogEntry: 1}, new(raft.AppendEntriesResponse)); err != nil {
			t.Fatal(err)
		}
		p.Close() // with the request in flight; the bubble fails on a leaked goroutine
		if _, err := p.AppendEntries(&raft.AppendEntriesRequest{Term: 1, PrevLogEntry: 2}, new(raft.AppendEntriesResponse)); !errors.Is(err, raft.ErrPipelineShutdown) {
			t.Errorf("AppendEntries after Close: %v", err)
		}
	})
}

// As on a connection that broke: once a request failed, sends fail at once
// instead of blocking on a full pipeline whose replies nobody reads (raft's
// decoder stops at the first failure).
func TestBrokenPipelineRefusesSendsInsteadOfBlocking(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(1, sim.NetworkOptions{}, "a", "b")
		defer w.close(t)
		w.net.Block("a", "b")
		p, err := w.servers["a"].tr.AppendEntriesPipeline("b", "b")
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		var sendErr error
		for i := 0; i < 1000 && sendErr == nil; i++ {
			// Nobody reads p.Consumer(): without the broken state the
			// 257th send would block for ever.
			_, sendErr = p.AppendEntries(&raft.AppendEntriesRequest{Term: 1, PrevLogEntry: uint64(i)}, new(raft.AppendEntriesResponse))
			time.Sleep(time.Millisecond)
		}
		if sendErr == nil {
			t.Fatal("1000 sends through a cut link all succeeded")
		}
	})
}
