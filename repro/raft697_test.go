package repro

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// hashicorp/raft#697 (livelock face): a follower that installs a
// snapshot whose last index S lies beyond its log accepts the first
// AppendEntries after it (PrevLogEntry = S is its last index then) and
// appends S+1.. . If that reply is lost, the leader retries with
// PrevLogEntry = S; now the follower's last index is past S, so
// appendEntries looks S up in the log, where it never was, instead of
// taking the snapshot's term, and rejects it. The leader walks nextIndex
// back below its compacted log and sends the same snapshot again, and
// again: the follower never catches up until the leader takes a newer
// snapshot.
//
// The test loses exactly one AppendEntries reply (the first one carrying
// entries after an InstallSnapshot to the lagging follower) and requires
// the follower to catch up within five seconds. Against v1.8.0 it never
// does, and the leader sends the snapshot over and over.
func TestFollowerCatchesUpWhenTheReplyAfterASnapshotIsLost(t *testing.T) {
	catchUpAfterSnapshot(t, true)
}

// The control: the same run with no reply lost passes against v1.8.0, so
// the failure above is the lost reply meeting the bug, not the harness.
func TestFollowerCatchesUpAfterASnapshotWhenNoReplyIsLost(t *testing.T) {
	catchUpAfterSnapshot(t, false)
}

func catchUpAfterSnapshot(t *testing.T, loseReply bool) {
	c := newCluster(t, 3, false)
	leader := c.waitLeader(t)
	term := c.nodes[leader].Stats()["term"]
	defer func() {
		if c.nodes[leader].State() != raft.Leader || c.nodes[leader].Stats()["term"] != term {
			t.Fatalf("test premise: node %d led term %s throughout; leadership changed (an overloaded machine?)", leader, term)
		}
	}()
	var lagging int
	for i := range c.nodes {
		if i != leader {
			lagging = i
			break
		}
	}
	c.ctl.victim.Store(string(c.addrs[lagging]))
	c.isolate(lagging)

	// The others commit 100 entries, snapshot and compact their logs, and
	// commit 10 more, so the lagging follower needs the snapshot (index S)
	// and the entries after it.
	c.apply(t, leader, 100)
	if err := c.nodes[leader].Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	c.apply(t, leader, 10)

	c.ctl.armed.Store(loseReply)
	c.rejoin(lagging)
	time.Sleep(500 * time.Millisecond) // the snapshot goes over; one reply is lost
	c.apply(t, leader, 10)
	want := c.nodes[leader].LastIndex()

	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && c.fsms[lagging].applied() < want {
		time.Sleep(20 * time.Millisecond)
	}
	if c.ctl.dropped.Load() != loseReply {
		t.Fatalf("test premise: an AppendEntries reply after the snapshot lost: %v, want %v", c.ctl.dropped.Load(), loseReply)
	}
	if c.ctl.snapshots.Load() == 0 {
		t.Fatal("test premise: the follower needed a snapshot")
	}
	if got := c.fsms[lagging].applied(); got < want {
		t.Fatalf("the follower is stuck at applied index %d, leader's last index %d, 5s after one lost reply; "+
			"the leader sent it InstallSnapshot %d times (hashicorp/raft#697: appendEntries rejects PrevLogEntry = "+
			"the snapshot's index once the follower's log is past it)", got, want, c.ctl.snapshots.Load())
	}
}

// controller decides which reply is lost: the first AppendEntries with
// entries sent to victim after an InstallSnapshot to it.
type controller struct {
	victim    atomic.Value // string address
	armed     atomic.Bool
	pending   atomic.Bool // an InstallSnapshot to victim went through
	dropped   atomic.Bool
	snapshots atomic.Int64
	// resent counts the InstallSnapshots to victim that succeeded after
	// the reply was lost: the same snapshot, installed again.
	resent atomic.Int64
}

// lossyTransport is an InmemTransport whose outbound calls the controller
// may lose a reply of. The call itself reaches the peer.
type lossyTransport struct {
	*raft.InmemTransport
	ctl *controller
}

func (l *lossyTransport) isVictim(target raft.ServerAddress) bool {
	v, _ := l.ctl.victim.Load().(string)
	return v != "" && string(target) == v
}

func (l *lossyTransport) InstallSnapshot(id raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	err := l.InmemTransport.InstallSnapshot(id, target, args, resp, data)
	if l.isVictim(target) {
		l.ctl.snapshots.Add(1)
		if err == nil && resp.Success && l.ctl.armed.Load() && !l.ctl.dropped.Load() {
			l.ctl.pending.Store(true)
		}
		if err == nil && resp.Success && l.ctl.dropped.Load() {
			l.ctl.resent.Add(1)
		}
	}
	return err
}

func (l *lossyTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	err := l.InmemTransport.AppendEntries(id, target, args, resp)
	if l.isVictim(target) && len(args.Entries) > 0 && l.ctl.pending.Load() && !l.ctl.dropped.Load() {
		l.ctl.pending.Store(false)
		l.ctl.dropped.Store(true)
		return errors.New("reply lost")
	}
	return err
}

// The lagging follower must not be sent entries by a pipeline that
// bypasses AppendEntries; raft only pipelines after a successful
// AppendEntries, so this is the same path it takes anyway.
func (l *lossyTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	if l.isVictim(target) {
		return nil, raft.ErrPipelineReplicationNotSupported
	}
	return l.InmemTransport.AppendEntriesPipeline(id, target)
}

type cluster struct {
	nodes  []*raft.Raft
	fsms   []*indexFSM
	stores []raft.LogStore
	trans  []*raft.InmemTransport
	addrs  []raft.ServerAddress
	ctl    *controller
	mu     sync.Mutex
	closed bool
}

// newCluster starts n nodes on InmemStores; with monotonic, each store
// declares itself a raft.MonotonicLogStore, as raft-wal and
// raft-boltdb/v2 do.
func newCluster(t *testing.T, n int, monotonic bool) *cluster {
	t.Helper()
	c := &cluster{ctl: &controller{}}
	var servers []raft.Server
	for i := range n {
		addr, tr := raft.NewInmemTransport(raft.ServerAddress(fmt.Sprintf("n%d", i)))
		c.trans = append(c.trans, tr)
		c.addrs = append(c.addrs, addr)
		servers = append(servers, raft.Server{ID: raft.ServerID(addr), Address: addr})
	}
	for i := range n {
		for j := range n {
			if i != j {
				c.trans[i].Connect(c.addrs[j], c.trans[j])
			}
		}
	}
	for i := range n {
		conf := raft.DefaultConfig()
		conf.LocalID = raft.ServerID(c.addrs[i])
		// Long enough that a loaded machine does not change leaders
		// mid-test: a new leader probes from its own last index and
		// would find the follower's log by another path.
		conf.HeartbeatTimeout = time.Second
		conf.ElectionTimeout = time.Second
		conf.LeaderLeaseTimeout = time.Second
		conf.CommitTimeout = 5 * time.Millisecond
		// Snapshots only when the test asks, compacting everything.
		conf.SnapshotThreshold = 1 << 40
		conf.SnapshotInterval = time.Hour
		conf.TrailingLogs = 0
		conf.LogOutput = io.Discard
		inmem := raft.NewInmemStore()
		var logs raft.LogStore = inmem
		if monotonic {
			logs = monotonicStore{inmem}
		}
		snaps := raft.NewInmemSnapshotStore()
		fsm := &indexFSM{}
		if err := raft.BootstrapCluster(conf, logs, inmem, snaps, c.trans[i], raft.Configuration{Servers: servers}); err != nil {
			t.Fatal(err)
		}
		r, err := raft.NewRaft(conf, fsm, logs, inmem, snaps, &lossyTransport{InmemTransport: c.trans[i], ctl: c.ctl})
		if err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, r)
		c.fsms = append(c.fsms, fsm)
		c.stores = append(c.stores, logs)
	}
	t.Cleanup(func() {
		for _, r := range c.nodes {
			r.Shutdown().Error()
		}
	})
	return c
}

func (c *cluster) waitLeader(t *testing.T) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for i, r := range c.nodes {
			if r.State() == raft.Leader {
				return i
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no leader")
	return -1
}

func (c *cluster) isolate(i int) {
	for j := range c.nodes {
		if j != i {
			c.trans[i].Disconnect(c.addrs[j])
			c.trans[j].Disconnect(c.addrs[i])
		}
	}
}

func (c *cluster) rejoin(i int) {
	for j := range c.nodes {
		if j != i {
			c.trans[i].Connect(c.addrs[j], c.trans[j])
			c.trans[j].Connect(c.addrs[i], c.trans[i])
		}
	}
}

func (c *cluster) apply(t *testing.T, leader, n int) {
	t.Helper()
	for k := range n {
		if err := c.nodes[leader].Apply([]byte{byte(k)}, time.Second).Error(); err != nil {
			t.Fatal(err)
		}
	}
}

// indexFSM keeps only the index of the last entry it applied; its
// snapshot is that index.
type indexFSM struct{ last atomic.Uint64 }

func (f *indexFSM) Apply(l *raft.Log) any { f.last.Store(l.Index); return nil }
func (f *indexFSM) applied() uint64       { return f.last.Load() }

func (f *indexFSM) Snapshot() (raft.FSMSnapshot, error) { return indexSnapshot(f.last.Load()), nil }

func (f *indexFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var b [8]byte
	if _, err := io.ReadFull(rc, b[:]); err != nil {
		return err
	}
	f.last.Store(binary.BigEndian.Uint64(b[:]))
	return nil
}

type indexSnapshot uint64

func (s indexSnapshot) Persist(sink raft.SnapshotSink) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(s))
	if _, err := sink.Write(b[:]); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (indexSnapshot) Release() {}
