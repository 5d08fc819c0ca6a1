package logstore

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

// countFSM counts applied commands and folds them into an order-sensitive
// hash, so two FSMs agree only if they applied the same commands in the
// same order.
type countFSM struct {
	mu    sync.Mutex
	count uint64
	hash  uint64
}

func (f *countFSM) Apply(l *raft.Log) any {
	h := fnv.New64a()
	h.Write(l.Data)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count++
	f.hash = f.hash*1099511628211 ^ h.Sum64()
	return f.count
}

func (f *countFSM) state() (count, hash uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count, f.hash
}

func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) {
	c, h := f.state()
	return countSnapshot{c, h}, nil
}

func (f *countFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	if len(b) != 16 {
		return fmt.Errorf("snapshot of %d bytes, want 16", len(b))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count, f.hash = binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])
	return nil
}

type countSnapshot struct{ count, hash uint64 }

func (s countSnapshot) Persist(sink raft.SnapshotSink) error {
	b := binary.BigEndian.AppendUint64(nil, s.count)
	if _, err := sink.Write(binary.BigEndian.AppendUint64(b, s.hash)); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (countSnapshot) Release() {}

// node is one raft server whose log and stable store are a Store on the
// node's own crashable MemFS.
type node struct {
	id    raft.ServerID
	fs    *vfs.MemFS
	snaps raft.SnapshotStore
	trans *raft.InmemTransport
	store *Store
	fsm   *countFSM
	raft  *raft.Raft
}

func raftConfig(id raft.ServerID) *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = id
	c.HeartbeatTimeout = 50 * time.Millisecond
	c.ElectionTimeout = 50 * time.Millisecond
	c.LeaderLeaseTimeout = 50 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
	c.SnapshotThreshold = 1 << 40 // no automatic snapshots: restarts replay the log
	c.LogOutput = io.Discard
	return c
}

func (n *node) start(t *testing.T, bootstrap *raft.Configuration) {
	t.Helper()
	var err error
	if n.store, err = Open("raft", Options{FS: n.fs}); err != nil {
		t.Fatalf("%s: Open: %v", n.id, err)
	}
	if bootstrap != nil {
		if err := raft.BootstrapCluster(raftConfig(n.id), n.store, n.store, n.snaps, n.trans, *bootstrap); err != nil {
			t.Fatalf("%s: bootstrap: %v", n.id, err)
		}
	}
	n.fsm = &countFSM{}
	if n.raft, err = raft.NewRaft(raftConfig(n.id), n.fsm, n.store, n.store, n.snaps, n.trans); err != nil {
		t.Fatalf("%s: NewRaft: %v", n.id, err)
	}
}

func (n *node) stop(t *testing.T) {
	t.Helper()
	if n.raft == nil {
		return
	}
	if err := n.raft.Shutdown().Error(); err != nil {
		t.Errorf("%s: Shutdown: %v", n.id, err)
	}
	n.raft = nil
	if err := n.store.Close(); err != nil {
		t.Errorf("%s: Close: %v", n.id, err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // virtual time inside the bubble
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func leaderOf(t *testing.T, nodes []*node) *node {
	t.Helper()
	var leader *node
	waitFor(t, "a leader", func() bool {
		for _, n := range nodes {
			if n.raft != nil && n.raft.State() == raft.Leader {
				leader = n
				return true
			}
		}
		return false
	})
	return leader
}

func apply(t *testing.T, nodes []*node, from, to int) {
	t.Helper()
	leader := leaderOf(t, nodes)
	var futures []raft.ApplyFuture
	for i := from; i < to; i++ {
		futures = append(futures, leader.raft.Apply([]byte(fmt.Sprintf("cmd-%d", i)), 5*time.Second))
	}
	for _, f := range futures {
		if err := f.Error(); err != nil {
			t.Fatalf("Apply: %v", err)
		}
	}
}

func waitAgree(t *testing.T, nodes []*node, count uint64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("all FSMs at %d commands", count), func() bool {
		c0, h0 := nodes[0].fsm.state()
		for _, n := range nodes {
			if c, h := n.fsm.state(); c != count || h != h0 || c0 != count {
				return false
			}
		}
		return true
	})
}

// TestRaftCluster runs three hashicorp/raft servers on Stores in virtual
// time: they elect a leader and agree on 200 commands; a follower restarts
// cleanly and one restarts from a crash (a clone of its filesystem with
// only synced data), missing commands in between, and both catch up from
// the logs they reopen plus the leader.
func TestRaftCluster(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var nodes []*node
		var servers []raft.Server
		for i := 1; i <= 3; i++ {
			id := raft.ServerID(fmt.Sprintf("n%d", i))
			addr, trans := raft.NewInmemTransport(raft.ServerAddress(id))
			nodes = append(nodes, &node{id: id, fs: vfs.NewCrashableMem(), snaps: raft.NewInmemSnapshotStore(), trans: trans})
			servers = append(servers, raft.Server{ID: id, Address: addr})
		}
		connect := func(n *node) {
			for _, p := range nodes {
				if p != n {
					n.trans.Connect(p.trans.LocalAddr(), p.trans)
					p.trans.Connect(n.trans.LocalAddr(), n.trans)
				}
			}
		}
		// Shut every node down before the bubble ends, also on failure.
		t.Cleanup(func() {
			for _, n := range nodes {
				n.stop(t)
			}
		})
		for _, n := range nodes {
			connect(n)
			n.start(t, &raft.Configuration{Servers: servers})
		}

		apply(t, nodes, 0, 200)
		waitAgree(t, nodes, 200)

		followers := []*node{}
		for _, n := range nodes {
			if n.raft.State() != raft.Leader {
				followers = append(followers, n)
			}
		}
		if len(followers) != 2 {
			t.Fatalf("%d followers", len(followers))
		}

		// Clean restart: the node comes back with its log and replays it
		// into a fresh FSM once the leader tells it the commit index.
		clean := followers[0]
		clean.stop(t)
		apply(t, nodes, 200, 250)
		clean.start(t, nil) // the Shutdown closed its transport's outgoing links
		connect(clean)
		waitAgree(t, nodes, 250)

		// Crash: only what was synced survives. Taken while idle, so that
		// everything the node acknowledged was written before the clone.
		crashed := followers[1]
		synctest.Wait()
		clone := crashed.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
		crashed.stop(t)
		crashed.fs = clone
		apply(t, nodes, 250, 300)
		crashed.start(t, nil)
		if last, err := crashed.store.LastIndex(); err != nil || last < 250 {
			t.Fatalf("crashed node's log ends at %d, %v; it had acknowledged 250 commands", last, err)
		}
		connect(crashed)
		waitAgree(t, nodes, 300)
		for _, n := range nodes {
			c, h := n.fsm.state()
			last, _ := n.store.LastIndex()
			t.Logf("%s: %d commands, hash %x, log ends at %d", n.id, c, h, last)
		}
		t.Logf("virtual time %v", time.Since(start))
	})
}

// TestSeveralBubbles runs the store in three bubbles in a row: a
// dependency that pools channels globally (as older Pebble formats do)
// makes the second bubble that flushes die.
func TestSeveralBubbles(t *testing.T) {
	for i := range 3 {
		synctest.Test(t, func(t *testing.T) {
			s, err := Open("raft", Options{FS: vfs.NewMem()})
			if err != nil {
				t.Fatal(err)
			}
			defer closeStore(t, s)
			big := make([]byte, 64<<10)
			for j := uint64(1); j <= 40; j++ { // 2.5 MB: several memtable flushes
				e := entry(j, 1)
				e.Data = big
				if err := s.StoreLog(e); err != nil {
					t.Fatalf("bubble %d: %v", i, err)
				}
			}
			wantIndexes(t, s, 1, 40)
		})
	}
}
