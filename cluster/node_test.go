//go:debug randseednop=0
package cluster_test

import (
	"bytes"
	"fmt"
	"math/rand"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"

	"github.com/raftsnap/testbed/cluster"
	"github.com/raftsnap/testbed/engines"
)

// raftConfig is a realistic configuration with snapshots forced often; the
// tests run in a synctest bubble, so the timeouts cost no wall time.
func raftConfig() raft.Config {
	c := *raft.DefaultConfig()
	c.HeartbeatTimeout = time.Second
	c.ElectionTimeout = time.Second
	c.LeaderLeaseTimeout = 500 * time.Millisecond
	c.CommitTimeout = 50 * time.Millisecond
	c.SnapshotThreshold = 64
	c.SnapshotInterval = 5 * time.Second
	c.TrailingLogs = 16
	return c
}

type storageKind struct {
	name string
	make func(t *testing.T, id string) cluster.Storage
}

var storageKinds = []storageKind{
	{"bbolt", func(t *testing.T, id string) cluster.Storage {
		return cluster.BoltStorage{Dir: filepath.Join(t.TempDir(), id), NoSync: true}
	}},
	{"pebble", func(t *testing.T, id string) cluster.Storage {
		return cluster.PebbleStorage{FS: vfs.NewMem()}
	}},
}

type testCluster struct {
	t     *testing.T
	nodes map[raft.ServerID]*cluster.Node
	trans map[raft.ServerID]*raft.InmemTransport
}

func (c *testCluster) start(id raft.ServerID, st cluster.Storage) *cluster.Node {
	c.t.Helper()
	_, tr := raft.NewInmemTransport(raft.ServerAddress(id))
	for oid, other := range c.trans {
		tr.Connect(raft.ServerAddress(oid), other)
		other.Connect(raft.ServerAddress(id), tr)
	}
	n, err := cluster.StartNode(cluster.NodeConfig{ID: id, Storage: st, Transport: tr, Raft: raftConfig()})
	if err != nil {
		c.t.Fatal(err)
	}
	c.nodes[id], c.trans[id] = n, tr
	return n
}

func (c *testCluster) shutdown() {
	for _, n := range c.nodes {
		if err := n.Shutdown(); err != nil {
			c.t.Error(err)
		}
	}
	for _, tr := range c.trans {
		tr.Close()
	}
}

func waitLeader(t *testing.T, n *cluster.Node) {
	t.Helper()
	for range 600 {
		if n.Raft.State() == raft.Leader {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("no leader after 60 virtual seconds")
}

func apply(t *testing.T, n *cluster.Node, c cluster.Command) cluster.Result {
	t.Helper()
	f := n.Raft.Apply(c.Encode(), 5*time.Second)
	if err := f.Error(); err != nil {
		t.Fatal(err)
	}
	switch r := f.Response().(type) {
	case cluster.Result:
		return r
	case error:
		t.Fatal(r)
	}
	t.Fatalf("unexpected response %#v", f.Response())
	return cluster.Result{}
}

func digest(t *testing.T, e engines.Engine) (string, engines.Applied) {
	t.Helper()
	v, err := e.View()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	it, err := v.Iter()
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var b bytes.Buffer
	n := 0
	for it.Next() {
		fmt.Fprintf(&b, "%q=%q;", it.Key(), it.Value())
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d pairs, %x", n, b.Bytes()), v.Applied()
}

// A node that joins with an empty log after the others compacted theirs can
// only catch up through InstallSnapshot, which streams the leader's engine
// view into the new node's atomic install.
func TestANodeWithAnEmptyLogCatchesUpThroughInstallSnapshot(t *testing.T) {
	for _, kind := range storageKinds {
		t.Run(kind.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rand.Seed(1) // raft's election timeouts come from the global source
				c := &testCluster{t: t, nodes: map[raft.ServerID]*cluster.Node{}, trans: map[raft.ServerID]*raft.InmemTransport{}}
				defer c.shutdown()
				n1 := c.start("n1", kind.make(t, "n1"))
				c.start("n2", kind.make(t, "n2"))
				boot := raft.Configuration{Servers: []raft.Server{
					{ID: "n1", Address: "n1", Suffrage: raft.Voter},
					{ID: "n2", Address: "n2", Suffrage: raft.Voter},
				}}
				if err := n1.Raft.BootstrapCluster(boot).Error(); err != nil {
					t.Fatal(err)
				}
				waitLeader(t, n1)
				for i := range 500 {
					apply(t, n1, cluster.Command{Op: cluster.OpSet, Key: []byte(fmt.Sprintf("k%04d", i)), Value: []byte(fmt.Sprint(i))})
				}
				apply(t, n1, cluster.Command{Op: cluster.OpDelete, Key: []byte("k0007")})
				if err := n1.Raft.Snapshot().Error(); err != nil {
					t.Fatal(err)
				}
				first, _ := n1.Stores.Logs.FirstIndex()
				if first <= 1 {
					t.Fatalf("leader log not compacted (first index %d)", first)
				}

				n3 := c.start("n3", kind.make(t, "n3"))
				if err := n1.Raft.AddVoter("n3", "n3", 0, 0).Error(); err != nil {
					t.Fatal(err)
				}
				want := apply(t, n1, cluster.Command{Op: cluster.OpSet, Key: []byte("after"), Value: []byte("join")})
				for range 600 {
					if n3.FSM.Applied().Index >= want.Index {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
				if got := n3.Raft.Stats()["last_snapshot_index"]; got == "0" {
					t.Fatal("n3 caught up without installing a snapshot")
				}
				wantDigest, wantApplied := digest(t, n1.Stores.Engine)
				gotDigest, gotApplied := digest(t, n3.Stores.Engine)
				if gotDigest != wantDigest || gotApplied.Index != wantApplied.Index {
					t.Fatalf("n3 differs from the leader: %.60s at %d vs %.60s at %d", gotDigest, gotApplied.Index, wantDigest, wantApplied.Index)
				}
			})
		})
	}
}
