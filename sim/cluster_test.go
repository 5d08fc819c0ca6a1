//go:debug randseednop=0

package sim_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/raftsnap/testbed/sim"
)

// The //go:debug line above makes math/rand.Seed effective in this test
// binary (sim.SeedRaftGlobalRand checks it); it must precede the package
// clause and lives in this one file for the whole package's tests.

// testFSM is a minimal state machine: a count of applied commands, a
// running hash of them (so two nodes agree only if they applied the same
// commands in the same order) and a table of the last fsmSlots commands, so
// that snapshots carry some kilobytes of real data at a bounded size.
type testFSM struct {
	mu     sync.Mutex
	count  uint64
	digest uint64
	slots  [fsmSlots][]byte
}

const fsmSlots = 256

func (f *testFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := fnv.New64a()
	binary.Write(h, binary.BigEndian, f.digest)
	h.Write(l.Data)
	f.digest = h.Sum64()
	f.slots[f.count%fsmSlots] = bytes.Clone(l.Data)
	f.count++
	return nil
}

func (f *testFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	// Slot contents are never modified in place, so copying the table is
	// a point-in-time view.
	return &testSnapshot{count: f.count, digest: f.digest, slots: f.slots}, nil
}

func (f *testFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var s testSnapshot
	if err := binary.Read(rc, binary.BigEndian, &s.count); err != nil {
		return err
	}
	if err := binary.Read(rc, binary.BigEndian, &s.digest); err != nil {
		return err
	}
	for i := range s.slots {
		var n uint32
		if err := binary.Read(rc, binary.BigEndian, &n); err != nil {
			return err
		}
		s.slots[i] = make([]byte, n)
		if _, err := io.ReadFull(rc, s.slots[i]); err != nil {
			return err
		}
	}
	f.mu.Lock()
	f.count, f.digest, f.slots = s.count, s.digest, s.slots
	f.mu.Unlock()
	return nil
}

// state returns how many commands were applied and a hash of them.
func (f *testFSM) state() (int, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return int(f.count), f.digest
}

type testSnapshot struct {
	count, digest uint64
	slots         [fsmSlots][]byte
}

func (s *testSnapshot) Persist(sink raft.SnapshotSink) error {
	var buf []byte
	buf = binary.BigEndian.AppendUint64(buf, s.count)
	buf = binary.BigEndian.AppendUint64(buf, s.digest)
	for _, e := range s.slots {
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(e)))
		buf = append(buf, e...)
	}
	if _, err := sink.Write(buf); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *testSnapshot) Release() {}

type testNode struct {
	id    raft.ServerID
	raft  *raft.Raft
	fsm   *testFSM
	snaps *raft.InmemSnapshotStore
}

type testCluster struct {
	t     testing.TB
	net   *sim.Network
	trace *sim.Trace
	nodes []*testNode
}

type clusterOptions struct {
	nodes      int
	net        sim.NetworkOptions
	trailing   uint64 // TrailingLogs; 0 means 32
	threshold  uint64 // SnapshotThreshold; 0 means 64
	keepEvents bool   // keep trace events (for FirstDivergence)
}

// newCluster starts a bootstrapped cluster over a fresh network. Call it
// inside a bubble; call shutdown before the bubble ends.
func newCluster(t testing.TB, seed sim.Seed, o clusterOptions) *testCluster {
	t.Helper()
	// A GC that starts during setup preempts the goroutine creating the
	// nodes, letting the first nodes' goroutines draw their election
	// timeouts before the later nodes exist. Collecting first makes that
	// less likely (a suspected, not a proven, cause of rare divergence).
	runtime.GC()
	if err := sim.SeedRaftGlobalRand(seed.Child("raft")); err != nil {
		t.Fatal(err)
	}
	trace := sim.NewTrace(sim.TraceOptions{DiscardEvents: !o.keepEvents})
	c := &testCluster{t: t, trace: trace, net: sim.NewNetwork(seed.Child("network"), trace, o.net)}
	var cfg raft.Configuration
	for i := range o.nodes {
		id := raft.ServerID(fmt.Sprintf("n%d", i+1))
		cfg.Servers = append(cfg.Servers, raft.Server{Suffrage: raft.Voter, ID: id, Address: raft.ServerAddress(id)})
	}
	for _, srv := range cfg.Servers {
		conf := raft.DefaultConfig()
		conf.LocalID = srv.ID
		conf.HeartbeatTimeout = time.Second
		conf.ElectionTimeout = time.Second
		conf.LeaderLeaseTimeout = 500 * time.Millisecond
		conf.CommitTimeout = 50 * time.Millisecond
		conf.SnapshotInterval = 2 * time.Second
		conf.SnapshotThreshold = cmpOr(o.threshold, 64)
		conf.TrailingLogs = cmpOr(o.trailing, 32)
		conf.Logger = hclog.NewNullLogger()
		logs := raft.NewInmemStore()
		snaps := raft.NewInmemSnapshotStore()
		tr := c.net.Transport(srv.ID)
		if err := raft.BootstrapCluster(conf, logs, logs, snaps, tr, cfg); err != nil {
			t.Fatal(err)
		}
		fsm := &testFSM{}
		r, err := raft.NewRaft(conf, fsm, logs, logs, snaps, tr)
		if err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, &testNode{id: srv.ID, raft: r, fsm: fsm, snaps: snaps})
	}
	return c
}

func cmpOr(v, d uint64) uint64 {
	if v == 0 {
		return d
	}
	return v
}

func (c *testCluster) node(id raft.ServerID) *testNode {
	for _, n := range c.nodes {
		if n.id == id {
			return n
		}
	}
	c.t.Fatalf("no node %s", id)
	return nil
}

// leader waits (in virtual time) until exactly one of the given nodes (all
// if none given) is leader and returns it.
func (c *testCluster) leader(within time.Duration, among ...*testNode) *testNode {
	c.t.Helper()
	if len(among) == 0 {
		among = c.nodes
	}
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		var leaders []*testNode
		for _, n := range among {
			if n.raft.State() == raft.Leader {
				leaders = append(leaders, n)
			}
		}
		if len(leaders) == 1 {
			c.trace.Record(string(leaders[0].id), "test", "leader")
			return leaders[0]
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("no single leader within %v", within)
	return nil
}

// apply writes count commands through whichever node leads, retrying on
// leadership changes, and fails the test if that takes over within.
func (c *testCluster) apply(prefix string, count int, within time.Duration, among ...*testNode) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for i := 0; i < count; {
		if time.Now().After(deadline) {
			c.t.Fatalf("applied only %d/%d writes within %v", i, count, within)
		}
		l := c.leader(within, among...)
		err := l.raft.Apply([]byte(fmt.Sprintf("%s-%d", prefix, i)), time.Second).Error()
		switch {
		case err == nil:
			i++
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
			errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, raft.ErrAbortedByRestore):
			time.Sleep(10 * time.Millisecond)
		default:
			c.t.Fatalf("apply: %v", err)
		}
	}
}

// converged waits until every node has applied the same commands.
func (c *testCluster) converged(within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		n0, h0 := c.nodes[0].fsm.state()
		same := n0 > 0
		for _, n := range c.nodes[1:] {
			if k, h := n.fsm.state(); k != n0 || h != h0 {
				same = false
			}
		}
		if same {
			c.trace.Record("", "test", fmt.Sprintf("converged %d", n0))
			return
		}
		if time.Now().After(deadline) {
			for _, n := range c.nodes {
				k, _ := n.fsm.state()
				c.t.Logf("%s: state %v applied %d fsm entries %d", n.id, n.raft.State(), n.raft.AppliedIndex(), k)
			}
			c.t.Fatalf("cluster did not converge within %v", within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// shutdown stops every node and closes the network, so that no goroutine
// outlives the bubble.
func (c *testCluster) shutdown() {
	c.t.Helper()
	if c.t.Failed() {
		dumpTrace(c.t, c.trace, fmt.Sprintf("failed-%d.jsonl", time.Now().UnixNano()))
	}
	for _, n := range c.nodes {
		if err := n.raft.Shutdown().Error(); err != nil {
			c.t.Errorf("shutdown %s: %v", n.id, err)
		}
	}
	if err := c.net.Close(); err != nil {
		c.t.Error(err)
	}
}

func ids(nodes ...*testNode) []raft.ServerID {
	out := make([]raft.ServerID, len(nodes))
	for i, n := range nodes {
		out[i] = n.id
	}
	return out
}

func others(all []*testNode, except ...*testNode) []*testNode {
	var out []*testNode
outer:
	for _, n := range all {
		for _, e := range except {
			if n == e {
				continue outer
			}
		}
		out = append(out, n)
	}
	return out
}
