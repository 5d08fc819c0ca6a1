package sim_test

import (
	"errors"
	"hash/crc32"
	"io"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftsnap/testbed/sim"
)

// server answers every RPC that reaches one endpoint, as raft would, and
// remembers what it got. InstallSnapshot bodies are read through onBody.
type server struct {
	id     raft.ServerID
	tr     *sim.Transport
	onBody func(req *raft.InstallSnapshotRequest, body io.Reader) error

	mu  sync.Mutex
	got []any
}

func (s *server) handle(rpc raft.RPC) {
	s.mu.Lock()
	s.got = append(s.got, rpc.Command)
	s.mu.Unlock()
	switch cmd := rpc.Command.(type) {
	case *raft.AppendEntriesRequest:
		rpc.Respond(&raft.AppendEntriesResponse{Term: cmd.Term, LastLog: cmd.PrevLogEntry + uint64(len(cmd.Entries)), Success: true}, nil)
	case *raft.RequestVoteRequest:
		rpc.Respond(&raft.RequestVoteResponse{Term: cmd.Term, Granted: true}, nil)
	case *raft.RequestPreVoteRequest:
		rpc.Respond(&raft.RequestPreVoteResponse{Term: cmd.Term, Granted: true}, nil)
	case *raft.TimeoutNowRequest:
		rpc.Respond(&raft.TimeoutNowResponse{}, nil)
	case *raft.InstallSnapshotRequest:
		var err error
		if s.onBody != nil {
			err = s.onBody(cmd, rpc.Reader)
		}
		io.Copy(io.Discard, rpc.Reader) // as raft does
		rpc.Respond(&raft.InstallSnapshotResponse{Term: cmd.Term, Success: err == nil}, err)
	}
}

func (s *server) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// world is a network with one serving endpoint per id. Call close at the
// end of the bubble.
type world struct {
	net     *sim.Network
	trace   *sim.Trace
	servers map[raft.ServerID]*server
	stop    chan struct{}
	wg      sync.WaitGroup
}

func newWorld(seed sim.Seed, opts sim.NetworkOptions, ids ...raft.ServerID) *world {
	w := &world{trace: sim.NewTrace(sim.TraceOptions{}), servers: map[raft.ServerID]*server{}, stop: make(chan struct{})}
	w.net = sim.NewNetwork(seed, w.trace, opts)
	for _, id := range ids {
		s := &server{id: id, tr: w.net.Transport(id)}
		w.servers[id] = s
		w.wg.Go(func() {
			for {
				select {
				case rpc := <-s.tr.Consumer():
					s.handle(rpc)
				case <-w.stop:
					return
				}
			}
		})
	}
	return w
}

func (w *world) close(t *testing.T) {
	close(w.stop)
	w.wg.Wait()
	if err := w.net.Close(); err != nil {
		t.Error(err)
	}
}

// vote makes a RequestVote call from -> to and returns its error and
// virtual duration.
func (w *world) vote(from, to raft.ServerID) (error, time.Duration) {
	start := time.Now()
	var resp raft.RequestVoteResponse
	err := w.servers[from].tr.RequestVote(to, raft.ServerAddress(to), &raft.RequestVoteRequest{Term: 3}, &resp)
	if err == nil && (!resp.Granted || resp.Term != 3) {
		err = errors.New("wrong response")
	}
	return err, time.Since(start)
}

func TestTransportCarriesEveryKind(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(1, sim.NetworkOptions{}, "a", "b")
		defer w.close(t)
		a, b := w.servers["a"].tr, w.servers["b"]
		start := time.Now()

		var ae raft.AppendEntriesResponse
		req := &raft.AppendEntriesRequest{Term: 2, PrevLogEntry: 5, PrevLogTerm: 2, LeaderCommitIndex: 5, Entries: []*raft.Log{{Index: 6}}}
		if err := a.AppendEntries("b", "b", req, &ae); err != nil || !ae.Success || ae.LastLog != 6 {
			t.Errorf("AppendEntries: %v %+v", err, ae)
		}
		var rv raft.RequestVoteResponse
		if err := a.RequestVote("b", "b", &raft.RequestVoteRequest{Term: 4}, &rv); err != nil || !rv.Granted || rv.Term != 4 {
			t.Errorf("RequestVote: %v %+v", err, rv)
		}
		var pv raft.RequestPreVoteResponse
		if err := a.RequestPreVote("b", "b", &raft.RequestPreVoteRequest{Term: 5}, &pv); err != nil || !pv.Granted || pv.Term != 5 {
			t.Errorf("RequestPreVote: %v %+v", err, pv)
		}
		var tn raft.TimeoutNowResponse
		if err := a.TimeoutNow("b", "b", &raft.TimeoutNowRequest{}, &tn); err != nil {
			t.Errorf("TimeoutNow: %v", err)
		}
		var body []byte
		b.onBody = func(_ *raft.InstallSnapshotRequest, r io.Reader) (err error) {
			body, err = io.ReadAll(r)
			return err
		}
		var is raft.InstallSnapshotResponse
		err := a.InstallSnapshot("b", "b", &raft.InstallSnapshotRequest{Term: 6, Size: 11}, &is, stringsReader("hello world"))
		if err != nil || !is.Success || string(body) != "hello world" {
			t.Errorf("InstallSnapshot: %v %+v body %q", err, is, body)
		}
		if b.count() != 5 {
			t.Errorf("server got %d RPCs, want 5", b.count())
		}

		// Heartbeats take raft's fast path when a handler is set.
		var hbCalls int
		b.tr.SetHeartbeatHandler(func(rpc raft.RPC) {
			hbCalls++
			rpc.Respond(&raft.AppendEntriesResponse{Term: 7, Success: true}, nil)
		})
		var hb raft.AppendEntriesResponse
		if err := a.AppendEntries("b", "b", &raft.AppendEntriesRequest{Term: 7, RPCHeader: raft.RPCHeader{Addr: []byte("a")}}, &hb); err != nil || !hb.Success || hbCalls != 1 {
			t.Errorf("heartbeat: %v %+v, handler calls %d", err, hb, hbCalls)
		}
		if b.count() != 5 {
			t.Error("the heartbeat went to the consumer channel")
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("a perfect network took %v of virtual time", d)
		}
		if a.LocalAddr() != "a" || a.DecodePeer(a.EncodePeer("b", "b")) != "b" {
			t.Error("addresses do not round-trip")
		}
		st := w.net.Stats()
		if st.Kinds["Heartbeat"].Replied != 1 || st.Kinds["AppendEntries"].Replied != 1 || st.SnapshotBytes != 11 {
			t.Errorf("stats: %+v", st)
		}
	})
}

func TestTransportDelayIsVirtualTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(1, sim.NetworkOptions{Link: sim.LinkOptions{DelayMin: 10 * time.Millisecond, DelayMax: 10 * time.Millisecond}}, "a", "b")
		defer w.close(t)
		if err, d := w.vote("a", "b"); err != nil || d != 20*time.Millisecond {
			t.Errorf("round trip: %v after %v, want nil after 20ms", err, d)
		}
	})
}

func TestTransportLossTimesOutExactly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(1, sim.NetworkOptions{RPCTimeout: 700 * time.Millisecond, Link: sim.LinkOptions{LossProbability: 1}}, "a", "b")
		defer w.close(t)
		err, d := w.vote("a", "b")
		if !errors.Is(err, sim.ErrTimeout) || !timedOutAfter(d, 700*time.Millisecond) {
			t.Errorf("lossy call: %v after %v, want ErrTimeout after 700ms (+ jitter)", err, d)
		}
		if w.servers["b"].count() != 0 {
			t.Error("a lost request was delivered")
		}
		if k := w.net.Stats().Kinds["RequestVote"]; k.Lost != 1 || k.TimedOut != 1 || k.Delivered != 0 {
			t.Errorf("stats: %+v", k)
		}
	})
}

func TestTransportOneWayPartition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(1, sim.NetworkOptions{}, "a", "b")
		defer w.close(t)
		w.net.Block("a", "b")
		// a -> b: the request never arrives.
		if err, _ := w.vote("a", "b"); !errors.Is(err, sim.ErrTimeout) || w.servers["b"].count() != 0 {
			t.Errorf("a->b: %v, b got %d", err, w.servers["b"].count())
		}
		// b -> a: the request arrives, the reply (a -> b) does not.
		if err, _ := w.vote("b", "a"); !errors.Is(err, sim.ErrTimeout) || w.servers["a"].count() != 1 {
			t.Errorf("b->a: %v, a got %d", err, w.servers["a"].count())
		}
		w.net.HealAll()
		if err, _ := w.vote("a", "b"); err != nil {
			t.Errorf("after heal a->b: %v", err)
		}
		if err, _ := w.vote("b", "a"); err != nil {
			t.Errorf("after heal b->a: %v", err)
		}
	})
}

func TestPartitionShapes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(1, sim.NetworkOptions{RPCTimeout: 100 * time.Millisecond}, "a", "b", "c")
		defer w.close(t)
		ids := []raft.ServerID{"a", "b", "c"}
		check := func(shape string, want map[[2]raft.ServerID]bool) {
			t.Helper()
			for _, x := range ids {
				for _, y := range ids {
					if x == y {
						continue
					}
					err, _ := w.vote(x, y)
					if ok := err == nil; ok != want[[2]raft.ServerID{x, y}] {
						t.Errorf("%s: %s->%s round trip ok=%v", shape, x, y, ok)
					}
				}
			}
		}
		all := map[[2]raft.ServerID]bool{{"a", "b"}: true, {"b", "a"}: true, {"a", "c"}: true, {"c", "a"}: true, {"b", "c"}: true, {"c", "b"}: true}
		check("healthy", all)
		w.net.Partition([]raft.ServerID{"a"}, []raft.ServerID{"b", "c"})
		check("partition a|bc", map[[2]raft.ServerID]bool{{"b", "c"}: true, {"c", "b"}: true})
		w.net.HealAll()
		w.net.Bridge("b", []raft.ServerID{"a"}, []raft.ServerID{"c"})
		check("bridge a-b-c", map[[2]raft.ServerID]bool{{"a", "b"}: true, {"b", "a"}: true, {"b", "c"}: true, {"c", "b"}: true})
		w.net.HealAll()
		w.net.Isolate("c")
		check("isolate c", map[[2]raft.ServerID]bool{{"a", "b"}: true, {"b", "a"}: true})
		w.net.HealAll()
		before := w.servers["a"].count()
		w.net.OneWay([]raft.ServerID{"a"}, []raft.ServerID{"b", "c"})
		// Every round trip touching a fails (one leg is cut) ...
		check("oneway a->bc", map[[2]raft.ServerID]bool{{"b", "c"}: true, {"c", "b"}: true})
		// ... but requests to a still arrived: b->a and c->a.
		if got := w.servers["a"].count() - before; got != 2 {
			t.Errorf("a received %d requests under a one-way cut, want 2", got)
		}
		w.net.HealAll()
		check("healed", all)
	})
}

func TestTransportDuplicates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(1, sim.NetworkOptions{Link: sim.LinkOptions{DuplicateProbability: 1, DelayMin: time.Millisecond, DelayMax: 9 * time.Millisecond}}, "a", "b")
		defer w.close(t)
		if err, _ := w.vote("a", "b"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second) // the duplicate may trail the original
		if n := w.servers["b"].count(); n != 2 {
			t.Errorf("b got the request %d times, want 2", n)
		}
		if k := w.net.Stats().Kinds["RequestVote"]; k.Duplicated != 1 || k.Delivered != 2 || k.Replied != 1 {
			t.Errorf("stats: %+v", k)
		}
	})
}

func TestTransportPause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(1, sim.NetworkOptions{}, "a", "b")
		defer w.close(t)
		w.net.Pause("b")
		go func() {
			time.Sleep(300 * time.Millisecond)
			w.net.Resume("b")
		}()
		if err, d := w.vote("a", "b"); err != nil || d != 300*time.Millisecond {
			t.Errorf("call to a paused node: %v after %v, want success after 300ms", err, d)
		}
		w.net.Pause("a")
		if err, d := w.vote("a", "b"); !errors.Is(err, sim.ErrTimeout) || !timedOutAfter(d, sim.DefaultRPCTimeout) {
			t.Errorf("call from a node paused for good: %v after %v", err, d)
		}
		w.net.Resume("a")
	})
}

func TestTransportClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(1, sim.NetworkOptions{}, "a", "b")
		defer w.close(t)
		b := w.servers["b"].tr
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		var resp raft.RequestVoteResponse
		if err := b.RequestVote("a", "a", &raft.RequestVoteRequest{}, &resp); !errors.Is(err, raft.ErrTransportShutdown) {
			t.Errorf("call from a closed endpoint: %v", err)
		}
		if err, d := w.vote("a", "b"); !errors.Is(err, sim.ErrTimeout) || !timedOutAfter(d, sim.DefaultRPCTimeout) {
			t.Errorf("call to a closed endpoint: %v after %v", err, d)
		}
		if k := w.net.Stats().Kinds["RequestVote"]; k.Unreachable != 1 {
			t.Errorf("stats: %+v", k)
		}
		// A restarted node gets a fresh endpoint under the same id.
		fresh := w.net.Transport("b")
		done := make(chan struct{})
		go func() {
			defer close(done)
			rpc := <-fresh.Consumer()
			rpc.Respond(&raft.RequestVoteResponse{Term: 3, Granted: true}, nil)
		}()
		if err, _ := w.vote("a", "b"); err != nil {
			t.Errorf("call to the restarted node: %v", err)
		}
		<-done
	})
}

// TestHashedChoicesIgnoreCallOrder: what happens to the n-th message on a
// link depends on the seed, the link, the kind and n, not on what other
// links did before.
func TestHashedChoicesIgnoreCallOrder(t *testing.T) {
	lossy := sim.NetworkOptions{RPCTimeout: 50 * time.Millisecond,
		Link: sim.LinkOptions{LossProbability: 0.4, DelayMin: time.Millisecond, DelayMax: 20 * time.Millisecond}}
	type outcome struct {
		ok bool
		d  time.Duration
	}
	run := func(seed sim.Seed, order []raft.ServerID) map[raft.ServerID][]outcome {
		got := map[raft.ServerID][]outcome{}
		synctest.Test(t, func(t *testing.T) {
			w := newWorld(seed, lossy, "a", "b", "c")
			defer w.close(t)
			for _, to := range order {
				err, d := w.vote("a", to)
				got[to] = append(got[to], outcome{err == nil, d})
			}
		})
		return got
	}
	var bThenC, interleaved []raft.ServerID
	for range 30 {
		bThenC = append(bThenC, "b")
		interleaved = append(interleaved, "c", "b")
	}
	for range 30 {
		bThenC = append(bThenC, "c")
	}
	x, y, z := run(5, bThenC), run(5, interleaved), run(6, bThenC)
	same := func(p, q map[raft.ServerID][]outcome) bool {
		for _, id := range []raft.ServerID{"b", "c"} {
			if len(p[id]) != len(q[id]) {
				return false
			}
			for i := range p[id] {
				if p[id][i] != q[id][i] {
					return false
				}
			}
		}
		return true
	}
	if !same(x, y) {
		t.Error("per-link outcomes depend on the order of calls across links")
	}
	if same(x, z) {
		t.Error("another seed gave the same outcomes")
	}
	lost := 0
	for _, o := range x["b"] {
		if !o.ok {
			lost++
		}
	}
	if lost == 0 || lost == 30 {
		t.Errorf("%d of 30 calls failed at 40%% loss per message", lost)
	}
}

// timedOutAfter reports whether d is the timeout plus its hashed jitter.
func timedOutAfter(d, timeout time.Duration) bool {
	return d >= timeout && d < timeout+sim.TimeoutJitterMax
}

func stringsReader(s string) io.Reader { return &onceReader{b: []byte(s)} }

type onceReader struct{ b []byte }

func (r *onceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// genReader yields n bytes of a fixed pattern without holding them.
type genReader struct{ n, off int64 }

func patternByte(i int64) byte { return byte(i*131>>3) ^ byte(i>>16) }

func (g *genReader) Read(p []byte) (int, error) {
	if g.off >= g.n {
		return 0, io.EOF
	}
	k := min(int64(len(p)), g.n-g.off)
	for i := range k {
		p[i] = patternByte(g.off + i)
	}
	g.off += k
	return int(k), nil
}

func patternCRC(n int64) uint32 {
	h := crc32.NewIEEE()
	io.Copy(h, &genReader{n: n})
	return h.Sum32()
}

func TestInstallSnapshotStreamsLargeBody(t *testing.T) {
	const size = 64 << 20
	want := patternCRC(size)
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(1, sim.NetworkOptions{}, "a", "b")
		defer w.close(t)
		var got uint32
		var n int64
		w.servers["b"].onBody = func(_ *raft.InstallSnapshotRequest, r io.Reader) error {
			h := crc32.NewIEEE()
			var err error
			n, err = io.Copy(h, r)
			got = h.Sum32()
			return err
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var resp raft.InstallSnapshotResponse
		err := w.servers["a"].tr.InstallSnapshot("b", "b", &raft.InstallSnapshotRequest{Term: 1, Size: size}, &resp, &genReader{n: size})
		runtime.ReadMemStats(&after)
		if err != nil || !resp.Success || n != size || got != want {
			t.Fatalf("64 MiB stream: err %v success %v, %d bytes, crc %x want %x", err, resp.Success, n, got, want)
		}
		// The body went through in the receiver's 32 KiB buffers: nothing
		// near its size was allocated on the way.
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("streaming 64 MiB allocated %d bytes in total", alloc)
		if alloc > 4<<20 {
			t.Errorf("streaming 64 MiB allocated %d bytes", alloc)
		}
		if st := w.net.Stats(); st.SnapshotBytes != size {
			t.Errorf("SnapshotBytes = %d", st.SnapshotBytes)
		}
	})
}

// snapshotThrough sends a size-byte pattern body a -> b with fault f
// injected and returns the sender's error and duration, what b read and the
// error b's reads ended with.
func snapshotThrough(t *testing.T, opts sim.NetworkOptions, size int64, faults ...sim.StreamFault) (sendErr error, took time.Duration, body []byte, readErr error) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(1, opts, "a", "b")
		defer w.close(t)
		w.servers["b"].onBody = func(_ *raft.InstallSnapshotRequest, r io.Reader) error {
			body, readErr = io.ReadAll(r)
			return readErr
		}
		for _, f := range faults {
			w.net.InjectStreamFault("a", "b", f)
		}
		start := time.Now()
		var resp raft.InstallSnapshotResponse
		sendErr = w.servers["a"].tr.InstallSnapshot("b", "b", &raft.InstallSnapshotRequest{Term: 1, Size: size}, &resp, &genReader{n: size})
		took = time.Since(start)
		if sendErr == nil && !resp.Success {
			sendErr = errors.New("receiver reported failure")
		}
		time.Sleep(time.Second) // let the receiver finish before the world closes
	})
	return
}

func TestSnapshotStreamCut(t *testing.T) {
	sendErr, _, body, readErr := snapshotThrough(t, sim.NetworkOptions{}, 1<<20, sim.StreamFault{Kind: sim.StreamCut, Offset: 100_000})
	if !errors.Is(sendErr, sim.ErrStreamCut) || !errors.Is(readErr, sim.ErrStreamCut) {
		t.Errorf("sender %v, receiver %v; want ErrStreamCut on both", sendErr, readErr)
	}
	if len(body) != 100_000 {
		t.Errorf("receiver got %d bytes before the cut, want 100000", len(body))
	}
}

func TestSnapshotStreamCorrupt(t *testing.T) {
	const size, at = 1 << 20, 654_321
	sendErr, _, body, readErr := snapshotThrough(t, sim.NetworkOptions{}, size, sim.StreamFault{Kind: sim.StreamCorrupt, Offset: at})
	if sendErr != nil || readErr != nil || len(body) != size {
		t.Fatalf("corrupt stream: sender %v, receiver %v, %d bytes", sendErr, readErr, len(body))
	}
	for i, b := range body {
		if differs := b != patternByte(int64(i)); differs != (i == at) {
			t.Fatalf("byte %d differs=%v", i, differs)
		}
	}
}

func TestSnapshotStreamStall(t *testing.T) {
	sendErr, took, body, readErr := snapshotThrough(t, sim.NetworkOptions{}, 1<<20, sim.StreamFault{Kind: sim.StreamStall, Offset: 5000, Stall: 3 * time.Second})
	if sendErr != nil || readErr != nil || len(body) != 1<<20 || took != 3*time.Second {
		t.Errorf("stalled stream: sender %v, receiver %v, %d bytes, took %v (want 3s)", sendErr, readErr, len(body), took)
	}
	// A stall longer than the InstallSnapshot timeout (10 x 1s + 1s per MiB)
	// ends the call by its timeout; the receiver's read fails too.
	sendErr, took, body, readErr = snapshotThrough(t, sim.NetworkOptions{}, 1<<20, sim.StreamFault{Kind: sim.StreamStall, Offset: 5000, Stall: time.Minute})
	if !errors.Is(sendErr, sim.ErrTimeout) || readErr == nil || len(body) != 5000 || !timedOutAfter(took, 11*time.Second) {
		t.Errorf("overlong stall: sender %v, receiver %v, %d bytes, took %v (want 11s)", sendErr, readErr, len(body), took)
	}
}

func TestSnapshotStreamBandwidth(t *testing.T) {
	sendErr, took, body, _ := snapshotThrough(t, sim.NetworkOptions{Link: sim.LinkOptions{SnapshotBytesPerSecond: 1 << 20}}, 2<<20)
	if sendErr != nil || len(body) != 2<<20 || took != 2*time.Second {
		t.Errorf("2 MiB at 1 MiB/s: %v, %d bytes, took %v (want 2s)", sendErr, len(body), took)
	}
}

func TestClearStreamFaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(1, sim.NetworkOptions{}, "a", "b")
		defer w.close(t)
		w.net.InjectStreamFault("a", "b", sim.StreamFault{Kind: sim.StreamCut, Offset: 10})
		w.net.ClearStreamFaults("a", "b")
		var resp raft.InstallSnapshotResponse
		if err := w.servers["a"].tr.InstallSnapshot("b", "b", &raft.InstallSnapshotRequest{Size: 100}, &resp, &genReader{n: 100}); err != nil || !resp.Success {
			t.Errorf("a cleared fault still fired: %v", err)
		}
	})
}

// Faults drawn from probabilities fall at a hashed offset: the same seed cuts
// at the same byte every time, and inside the body.
func TestSnapshotStreamFaultsFromProbabilities(t *testing.T) {
	opts := sim.NetworkOptions{Link: sim.LinkOptions{SnapshotCutProbability: 1}}
	_, _, first, err1 := snapshotThrough(t, opts, 1<<20)
	_, _, again, err2 := snapshotThrough(t, opts, 1<<20)
	if !errors.Is(err1, sim.ErrStreamCut) || !errors.Is(err2, sim.ErrStreamCut) {
		t.Fatalf("cut probability 1 did not cut: %v, %v", err1, err2)
	}
	if len(first) != len(again) || len(first) >= 1<<20 {
		t.Errorf("cut at %d then %d bytes; want the same offset inside the body", len(first), len(again))
	}
}
