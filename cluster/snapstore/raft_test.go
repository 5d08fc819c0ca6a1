package snapstore

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
	"github.com/raftsnap/testbed/cluster/logstore"
)

// countFSM counts applied commands and folds them into an order-sensitive
// hash; its snapshot is those two numbers. restores counts Restore calls.
type countFSM struct {
	mu       sync.Mutex
	count    uint64
	hash     uint64
	restores int
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

func (f *countFSM) state() (count, hash uint64, restores int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count, f.hash, f.restores
}

func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) {
	c, h, _ := f.state()
	return countSnapshot{c, h}, nil
}

// Restore reads to EOF, so that the store's size and CRC check runs.
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
	f.restores++
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

// node is one raft server whose log, stable store and snapshots all live
// on the node's own crashable MemFS.
type node struct {
	id    raft.ServerID
	fs    *vfs.MemFS
	trans *raft.InmemTransport
	logs  *logstore.Store
	snaps *Store
	fsm   *countFSM
	raft  *raft.Raft
}

const trailingLogs = 10

func raftConfig(id raft.ServerID) *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = id
	c.HeartbeatTimeout = 50 * time.Millisecond
	c.ElectionTimeout = 50 * time.Millisecond
	c.LeaderLeaseTimeout = 50 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
	c.SnapshotThreshold = 1 << 40 // snapshots only when the test asks
	c.TrailingLogs = trailingLogs // so that a snapshot compacts the log
	c.LogOutput = io.Discard
	return c
}

func (n *node) start(t *testing.T, bootstrap *raft.Configuration) {
	t.Helper()
	var err error
	if n.logs, err = logstore.Open("raft", logstore.Options{FS: n.fs}); err != nil {
		t.Fatalf("%s: logstore: %v", n.id, err)
	}
	if n.snaps, err = New(n.fs, "snaps", 2); err != nil {
		t.Fatalf("%s: snapstore: %v", n.id, err)
	}
	if bootstrap != nil {
		if err := raft.BootstrapCluster(raftConfig(n.id), n.logs, n.logs, n.snaps, n.trans, *bootstrap); err != nil {
			t.Fatalf("%s: bootstrap: %v", n.id, err)
		}
	}
	n.fsm = &countFSM{}
	if n.raft, err = raft.NewRaft(raftConfig(n.id), n.fsm, n.logs, n.logs, n.snaps, n.trans); err != nil {
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
	if err := n.logs.Close(); err != nil {
		t.Errorf("%s: Close: %v", n.id, err)
	}
}

type cluster struct {
	t     *testing.T
	nodes []*node
}

// newCluster makes n nodes, connected, and bootstraps the first `voters`.
func newCluster(t *testing.T, n, voters int) *cluster {
	c := &cluster{t: t}
	var servers []raft.Server
	for i := 1; i <= n; i++ {
		id := raft.ServerID(fmt.Sprintf("n%d", i))
		_, trans := raft.NewInmemTransport(raft.ServerAddress(id))
		c.nodes = append(c.nodes, &node{id: id, fs: vfs.NewCrashableMem(), trans: trans})
		if i <= voters {
			servers = append(servers, raft.Server{ID: id, Address: trans.LocalAddr()})
		}
	}
	// Shut every node down before the bubble ends, also on failure.
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.stop(t)
		}
	})
	for i, n := range c.nodes {
		c.connect(n)
		if i < voters {
			n.start(t, &raft.Configuration{Servers: servers})
		}
	}
	return c
}

// connect (re)links n with every other node; a Shutdown closes a node's
// outgoing links.
func (c *cluster) connect(n *node) {
	for _, p := range c.nodes {
		if p != n {
			n.trans.Connect(p.trans.LocalAddr(), p.trans)
			p.trans.Connect(n.trans.LocalAddr(), n.trans)
		}
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

func (c *cluster) leader() *node {
	c.t.Helper()
	var leader *node
	waitFor(c.t, "a leader", func() bool {
		for _, n := range c.nodes {
			if n.raft != nil && n.raft.State() == raft.Leader {
				leader = n
				return true
			}
		}
		return false
	})
	return leader
}

func (c *cluster) apply(from, to int) {
	c.t.Helper()
	leader := c.leader()
	var futures []raft.ApplyFuture
	for i := from; i < to; i++ {
		futures = append(futures, leader.raft.Apply([]byte(fmt.Sprintf("cmd-%d", i)), 5*time.Second))
	}
	for _, f := range futures {
		if err := f.Error(); err != nil {
			c.t.Fatalf("Apply: %v", err)
		}
	}
}

// waitAgree waits until every running node has applied count commands
// and all agree on them.
func (c *cluster) waitAgree(count uint64) {
	c.t.Helper()
	waitFor(c.t, fmt.Sprintf("all FSMs at %d commands", count), func() bool {
		var h0 uint64
		first := true
		for _, n := range c.nodes {
			if n.raft == nil {
				continue
			}
			cnt, h, _ := n.fsm.state()
			if cnt != count || (!first && h != h0) {
				return false
			}
			h0, first = h, false
		}
		return true
	})
}

func (c *cluster) snapshot(n *node) *raft.SnapshotMeta {
	c.t.Helper()
	f := n.raft.Snapshot()
	if err := f.Error(); err != nil {
		c.t.Fatalf("%s: Snapshot: %v", n.id, err)
	}
	meta, rc, err := f.Open()
	if err != nil {
		c.t.Fatalf("%s: open the snapshot just taken: %v", n.id, err)
	}
	rc.Close()
	return meta
}

// restart starts a stopped node again from what its filesystem holds and
// checks that raft restored its FSM from its own snapshot at NewRaft: the
// log below that snapshot is compacted, so nothing else could have brought
// the FSM to 150 commands before it even joins the cluster.
func (c *cluster) restart(n *node) {
	c.t.Helper()
	n.start(c.t, nil)
	if cnt, _, restores := n.fsm.state(); restores != 1 || cnt < 150 {
		c.t.Fatalf("%s after restart: %d commands from %d restores, want >= 150 from 1", n.id, cnt, restores)
	}
	if fi := firstIndex(c.t, n); fi <= 1 {
		c.t.Fatalf("%s: log starts at %d; the snapshot did not compact it", n.id, fi)
	}
	c.connect(n)
}

func firstIndex(t *testing.T, n *node) uint64 {
	t.Helper()
	i, err := n.logs.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// TestRaftInstallAndRestart runs hashicorp/raft on this store (and
// logstore) in virtual time. The leader snapshots and compacts its log, so
// a node added later can only catch up by InstallSnapshot; a follower that
// snapshotted restarts cleanly and another from a crash, and both rebuild
// their FSM from their own snapshot plus the log after it.
func TestRaftInstallAndRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 4, 3)
		n4 := c.nodes[3]
		c.apply(0, 100)
		c.waitAgree(100)

		leader := c.leader()
		snap := c.snapshot(leader)
		if snap.Index < 100 {
			t.Fatalf("leader snapshot at index %d, want >= 100", snap.Index)
		}
		if fi := firstIndex(t, leader); fi <= 1 {
			t.Fatalf("leader log still starts at %d after the snapshot", fi)
		}

		// A new node: the entries it needs are gone from the leader's log.
		n4.start(t, nil)
		if err := leader.raft.AddVoter(n4.id, n4.trans.LocalAddr(), 0, 5*time.Second).Error(); err != nil {
			t.Fatalf("AddVoter: %v", err)
		}
		c.waitAgree(100)
		if _, _, restores := n4.fsm.state(); restores != 1 {
			t.Fatalf("new node restored %d snapshots, want 1 (InstallSnapshot)", restores)
		}
		metas, err := n4.snaps.List()
		if err != nil || len(metas) != 1 || metas[0].Index != snap.Index || metas[0].Term != snap.Term {
			t.Fatalf("new node's snapshots %+v, %v; want the leader's at index %d", metas, err, snap.Index)
		}
		c.apply(100, 150)
		c.waitAgree(150)

		// Followers snapshot, then restart: one cleanly, one from a crash
		// that keeps only synced data, taken while idle.
		var followers []*node
		for _, n := range c.nodes {
			if n.raft.State() != raft.Leader {
				followers = append(followers, n)
			}
		}
		for _, f := range followers[:2] {
			c.snapshot(f)
		}
		c.apply(150, 170)
		c.waitAgree(170)

		// One at a time: with four voters, two down would stop the cluster.
		clean, crashed := followers[0], followers[1]
		clean.stop(t)
		c.apply(170, 185)
		c.restart(clean)
		c.waitAgree(185)

		synctest.Wait()
		clone := crashed.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
		crashed.stop(t)
		crashed.fs = clone
		c.apply(185, 200)
		c.restart(crashed)
		c.waitAgree(200)
	})
}

// TestRaftRefusesCorruptSnapshot flips a byte in the leader's snapshot
// data. A node that needs InstallSnapshot must never install it: the
// leader's reader fails its CRC check at the end of the stream, the
// follower's copy fails and cancels its sink, and no snapshot appears.
func TestRaftRefusesCorruptSnapshot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 2, 1)
		leader, fresh := c.nodes[0], c.nodes[1]
		c.apply(0, 50)
		c.waitAgree(50)
		snap := c.snapshot(leader)

		path := leader.fs.PathJoin("snaps", snap.ID, dataFile)
		f, err := leader.fs.OpenReadWrite(path, vfs.WriteCategoryUnspecified)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		if _, err := f.ReadAt(b, 3); err != nil {
			t.Fatal(err)
		}
		b[0] ^= 0x10
		if _, err := f.WriteAt(b, 3); err != nil {
			t.Fatal(err)
		}
		f.Close()

		fresh.start(t, nil)
		// AddNonvoter so that the cluster keeps its quorum while the
		// install keeps failing.
		if err := leader.raft.AddNonvoter(fresh.id, fresh.trans.LocalAddr(), 0, 5*time.Second).Error(); err != nil {
			t.Fatalf("AddNonvoter: %v", err)
		}
		time.Sleep(3 * time.Second) // many install attempts in virtual time
		if cnt, _, restores := fresh.fsm.state(); cnt != 0 || restores != 0 {
			t.Fatalf("fresh node applied %d commands and restored %d snapshots from a corrupt one", cnt, restores)
		}
		fresh.snaps.mu.Lock()
		attempts := fresh.snaps.lastSeq
		fresh.snaps.mu.Unlock()
		if attempts == 0 {
			t.Fatalf("the leader never tried to install its snapshot on the fresh node")
		}
		t.Logf("%d install attempts refused", attempts)
		if metas, err := fresh.snaps.List(); err != nil || len(metas) != 0 {
			t.Fatalf("fresh node lists %+v, %v", metas, err)
		}
		synctest.Wait()
		if names := dirNames(t, fresh.fs, "snaps"); len(names) != 0 {
			t.Fatalf("fresh node's snapshot directory holds %v after failed installs", names)
		}
	})
}
