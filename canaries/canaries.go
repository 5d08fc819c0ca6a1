// Package canaries owns the testbed's planted bugs: a catalog of realistic
// defects in the engine, the snapshot stream, the state machine, the
// storage and the client, each packaged as a scenarios.Mutation, which
// proves the checkers catch real bugs. A canary that stops being caught
// means a checker or a scenario lost its teeth.
//
// Every planted bug lives in a wrapper in this package (around an engine, a
// filesystem, a snapshot store or a client); production code has no branch
// for any of them. Hunt runs seeds until a canary is caught and says which
// checker caught it.
package canaries

import (
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/raftsnap/testbed/cluster"
	"github.com/raftsnap/testbed/scenarios"
	"github.com/raftsnap/testbed/sim"
)

// Layers a bug can live in.
const (
	LayerEngine       = "engine"
	LayerStream       = "stream"
	LayerStateMachine = "state-machine"
	LayerClient       = "client"
	LayerStorage      = "storage"
	LayerTransport    = "transport"
	// LayerOperator is an operator's tool around raft's API.
	LayerOperator = "operator"
)

// Checkers, by the prefix their violations carry.
const (
	CheckerSnapshotIntegrity = "snapshot-integrity"
	CheckerConvergence       = "convergence"
	CheckerDurability        = "durability"
	CheckerLinearizability   = "linearizability"
	CheckerLiveness          = "liveness"
	CheckerRaft              = "raft"
	// CheckerRestore is the operator's check of a user restore.
	CheckerRestore = "restore"
	// CheckerReloadConfig and CheckerLeadershipTransfer are the operator's
	// checks of a reload and of a transfer.
	CheckerReloadConfig       = "reload-config"
	CheckerLeadershipTransfer = "leadership-transfer"
)

// doneFuture is a raft.Future that reports success at once.
type doneFuture struct{}

func (doneFuture) Error() error { return nil }

// Bug is one planted bug.
type Bug struct {
	Name        string
	Description string
	// Layer is where the bug lives: engine, stream, state-machine, client
	// or storage.
	Layer string
	// Catcher is the checker expected to catch it (a violation prefix).
	Catcher string
	// Scenario and Engine are where it is hunted: where it manifests.
	Scenario string
	Engine   string
	// SnapshotStore is the nodes' snapshot store for the hunt (see
	// scenarios.Options.SnapshotStore); "" is the default.
	SnapshotStore string
	// Mutation returns a fresh planting of the bug for one run.
	Mutation func() *scenarios.Mutation
}

// Tuning of the planted bugs; see the wrappers.
const (
	// livePacePerPair paces the non-point-in-time view's scan.
	livePacePerPair = 25 * time.Millisecond
	// nonAtomicPairsPerBatch is the non-atomic install's batch size.
	nonAtomicPairsPerBatch = 2
	// blindRetryAttempt is the blind-retry client's per-attempt deadline:
	// below the cluster's tail commit latency under message loss, as
	// client libraries' defaults often are.
	blindRetryAttempt = 150 * time.Millisecond
)

func wrapEngine(name string, wrap func(st *cluster.Stores)) func() *scenarios.Mutation {
	return func() *scenarios.Mutation {
		return &scenarios.Mutation{Name: name, Stores: func(_ raft.ServerID, st *cluster.Stores) { wrap(st) }}
	}
}

var catalog = []Bug{
	{
		Name: "view-not-point-in-time",
		Description: "the engine's view records its position when taken but its iterator reads the live engine pair by pair " +
			"as the scan advances (a paginated scan without a snapshot), so a snapshot labelled index i carries writes of later indexes",
		Layer:    LayerEngine,
		Catcher:  CheckerSnapshotIntegrity,
		Scenario: "snapshot-install",
		Engine:   scenarios.EnginePebble,
		Mutation: wrapEngine("view-not-point-in-time", func(st *cluster.Stores) {
			st.Engine = &liveViewEngine{Engine: st.Engine, pacePerPair: livePacePerPair}
		}),
	},
	{
		Name: "install-keeps-stale-keys",
		Description: "install writes the snapshot's pairs over the old contents in one atomic batch instead of replacing them, " +
			"so keys deleted since the follower fell behind survive the install",
		Layer:    LayerEngine,
		Catcher:  CheckerSnapshotIntegrity,
		Scenario: "snapshot-install",
		Engine:   scenarios.EngineBbolt,
		Mutation: wrapEngine("install-keeps-stale-keys", func(st *cluster.Stores) {
			st.Engine = &staleKeysEngine{Engine: st.Engine}
		}),
	},
	{
		Name: "delta-install-when-nearly-current",
		Description: "an install that finds the engine within two entries of the snapshot's position applies the snapshot's " +
			"pairs as a delta over the current contents (a follower barely behind is assumed to hold the same keys) instead " +
			"of replacing them: keys the snapshot lacks survive. Only a user restore (Raft.Restore) installs on nodes that " +
			"are current; InstallSnapshot goes to nodes far behind",
		Layer:    LayerEngine,
		Catcher:  CheckerRestore,
		Scenario: "operator",
		Engine:   scenarios.EnginePebble,
		Mutation: wrapEngine("delta-install-when-nearly-current", func(st *cluster.Stores) {
			st.Engine = &deltaInstallEngine{Engine: st.Engine}
		}),
	},
	{
		Name: "reload-drops-trailing-logs",
		Description: "the operator's reload wrapper builds raft's ReloadableConfig from the node's current one and copies " +
			"over SnapshotThreshold and SnapshotInterval but forgets TrailingLogs, and reports success",
		Layer:    LayerOperator,
		Catcher:  CheckerReloadConfig,
		Scenario: "operator",
		Engine:   scenarios.EnginePebble,
		Mutation: func() *scenarios.Mutation {
			return &scenarios.Mutation{Name: "reload-drops-trailing-logs", ReloadConfig: func(r *raft.Raft, rc raft.ReloadableConfig) error {
				next := r.ReloadableConfig()
				next.SnapshotThreshold, next.SnapshotInterval = rc.SnapshotThreshold, rc.SnapshotInterval
				return r.ReloadConfig(next)
			}}
		},
	},
	{
		Name: "transfer-reports-before-handover",
		Description: "the operator's leadership-transfer wrapper starts raft's transfer and reports it done at once, " +
			"without waiting for its future: the caller believes the old leader stepped down while it still leads",
		Layer:    LayerOperator,
		Catcher:  CheckerLeadershipTransfer,
		Scenario: "operator",
		Engine:   scenarios.EnginePebble,
		Mutation: func() *scenarios.Mutation {
			return &scenarios.Mutation{Name: "transfer-reports-before-handover", LeadershipTransfer: func(r *raft.Raft) raft.Future {
				r.LeadershipTransfer()
				return doneFuture{}
			}}
		},
	},
	{
		Name: "non-atomic-install",
		Description: "install deletes every old key, then writes the snapshot in small batches, each recording the snapshot's " +
			"position: a crash in between leaves a node at the snapshot's index holding only part of it",
		Layer:    LayerEngine,
		Catcher:  CheckerSnapshotIntegrity,
		Scenario: "snapshot-crash",
		Engine:   scenarios.EnginePebble,
		Mutation: wrapEngine("non-atomic-install", func(st *cluster.Stores) {
			st.Engine = &nonAtomicEngine{Engine: st.Engine, pairsPerBatch: nonAtomicPairsPerBatch}
		}),
	},
	{
		Name: "decoder-accepts-damaged-stream",
		Description: "a lenient restore: the snapshot store keeps InstallSnapshot bodies unverified, and the restore commits the " +
			"pairs it decoded even when the stream then fails its checksum, count or order check, so a corrupted or cut " +
			"stream is installed as if it were whole",
		Layer:    LayerStream,
		Catcher:  CheckerSnapshotIntegrity,
		Scenario: "snapshot-install",
		Engine:   scenarios.EnginePebble,
		Mutation: func() *scenarios.Mutation {
			return &scenarios.Mutation{
				Name:           "decoder-accepts-damaged-stream",
				GuardSnapshots: func(s raft.SnapshotStore) raft.SnapshotStore { return s },
				Stores: func(_ raft.ServerID, st *cluster.Stores) {
					st.Engine = &lenientEngine{Engine: st.Engine}
				},
			}
		},
	},
	{
		Name: "trusts-stored-snapshots",
		Description: "the snapshot store's guard checks a stream only when it is kept and trusts stored snapshots from then " +
			"on: one that rots on disk is not refused when opened, stays listed as the newest, and is served to be sent or " +
			"restored again and again instead of being replaced by a fresh snapshot",
		Layer:         LayerStorage,
		Catcher:       CheckerLiveness,
		Scenario:      "snapshot-rot",
		Engine:        scenarios.EngineBbolt,
		SnapshotStore: cluster.StoreCopy,
		Mutation: func() *scenarios.Mutation {
			return &scenarios.Mutation{Name: "trusts-stored-snapshots", GuardSnapshots: newReceiveOnlyGuard}
		},
	},
	{
		Name: "reapply-after-restart",
		Description: "the engine does not read its applied position back when it opens, so after a restart the state machine " +
			"believes it applied nothing and applies again every log entry raft replays",
		Layer:    LayerStateMachine,
		Catcher:  CheckerLiveness,
		Scenario: "leader-churn",
		Engine:   scenarios.EnginePebble,
		Mutation: wrapEngine("reapply-after-restart", func(st *cluster.Stores) {
			st.Engine = &forgetfulEngine{Engine: st.Engine}
		}),
	},
	{
		Name: "lost-fsync",
		Description: "every fsync of a Pebble node's files and directories is silently dropped (engine, raft log, snapshots): " +
			"harmless until a power loss, which then takes the node's files, acknowledged log entries and votes with it",
		Layer:    LayerStorage,
		Catcher:  CheckerRaft,
		Scenario: "snapshot-crash",
		Engine:   scenarios.EnginePebble,
		Mutation: func() *scenarios.Mutation {
			return &scenarios.Mutation{Name: "lost-fsync", FS: func(fs vfs.FS) vfs.FS { return noSyncFS{fs} }}
		},
	},
	{
		Name: "bbolt-late-commit-sync",
		Description: "the fsync after each bbolt commit's meta page is dropped (engine and raft log), so a commit returns before " +
			"it is durable: harmless until a power loss, which takes the last acknowledged commit back (log entries, a vote, applied writes)",
		Layer:    LayerStorage,
		Catcher:  CheckerRaft,
		Scenario: "leader-churn",
		Engine:   scenarios.EngineBbolt,
		Mutation: func() *scenarios.Mutation {
			return &scenarios.Mutation{Name: "bbolt-late-commit-sync", BoltFile: func(h bolt.FileHook) bolt.FileHook {
				return &lateMetaBolt{FileHook: h, metaLast: map[string]bool{}}
			}}
		},
	},
	{
		Name: "dropped-snapshot-write-errors",
		Description: "a bbolt node's snapshot files are written through a layer that reports a failed write (an I/O error, " +
			"or ENOSPC on a full disk) as done, as code that ignores write(2)'s result does: a snapshot persisted while the " +
			"disk fails is kept short and reported complete, raft compacts its log against it, and the node holds no whole " +
			"snapshot at that index to send or to restart from",
		Layer:         LayerStorage,
		Catcher:       CheckerLiveness,
		Scenario:      "snapshot-disk",
		Engine:        scenarios.EngineBbolt,
		SnapshotStore: cluster.StoreCopy,
		Mutation: func() *scenarios.Mutation {
			return &scenarios.Mutation{Name: "dropped-snapshot-write-errors",
				SnapshotFS: func(fs vfs.FS) vfs.FS { return droppedWriteErrorsFS{fs} }}
		},
	},
	{
		Name: "hollow-durability-barrier",
		Description: "the engine's durability barrier (engines.Syncer) returns without syncing, so a zero-copy store " +
			"records a local snapshot that only unsynced engine writes back and raft compacts its log against it: a " +
			"power loss then takes the engine below the snapshot, with the log that would have replayed it gone",
		Layer:    LayerEngine,
		Catcher:  CheckerLiveness,
		Scenario: "snapshot-crash",
		Engine:   scenarios.EnginePebble,
		Mutation: wrapEngine("hollow-durability-barrier", func(st *cluster.Stores) {
			st.Engine = hollowBarrierEngine{Engine: st.Engine}
		}),
	},
	{
		Name: "checkpoint-reads-live-engine",
		Description: "opening a checkpoint to send it streams the live engine under the checkpoint's position (Vault's " +
			"just-in-time stream of the live file, with the metadata of the checkpoint listed): a follower installs the " +
			"leader's later writes as the state at the checkpoint's index",
		Layer:         LayerEngine,
		Catcher:       CheckerSnapshotIntegrity,
		Scenario:      "snapshot-install",
		Engine:        scenarios.EnginePebble,
		SnapshotStore: cluster.StoreCheckpoint,
		Mutation: wrapEngine("checkpoint-reads-live-engine", func(st *cluster.Stores) {
			st.Engine = &liveCheckpointEngine{Engine: st.Engine}
		}),
	},
	{
		Name: "checkpoint-without-wal",
		Description: "the engine's checkpoint holds its sstables and MANIFEST but not its WAL (the memtable's writes): it " +
			"does not hold the position the store recorded for it, so the store refuses every send from it and a " +
			"follower behind the compacted log never catches up",
		Layer:         LayerEngine,
		Catcher:       CheckerLiveness,
		Scenario:      "snapshot-install",
		Engine:        scenarios.EnginePebble,
		SnapshotStore: cluster.StoreCheckpoint,
		Mutation: wrapEngine("checkpoint-without-wal", func(st *cluster.Stores) {
			st.Engine = &walLessCheckpointEngine{Engine: st.Engine, fs: st.CheckpointFS}
		}),
	},
	{
		Name: "checkpoint-fsync-dropped",
		Description: "every fsync under the checkpoint store's directory is dropped (its files, its directories, the " +
			"completion marker): the marker vouches for a checkpoint that is not durable and raft compacts its log " +
			"against it; a power loss takes the checkpoint, and the node, its engine durable, cannot start from the log left",
		Layer:         LayerStorage,
		Catcher:       CheckerLiveness,
		Scenario:      "snapshot-crash",
		Engine:        scenarios.EnginePebble,
		SnapshotStore: cluster.StoreCheckpoint,
		Mutation: func() *scenarios.Mutation {
			return &scenarios.Mutation{Name: "checkpoint-fsync-dropped", FS: func(fs vfs.FS) vfs.FS { return checkpointNoSyncFS{fs} }}
		},
	},
	{
		Name: "blind-retry",
		Description: fmt.Sprintf("the client gives each attempt %v and, when an attempt's outcome is unknown, retries a write "+
			"blindly, reporting one call with the last attempt's result: a write can take effect twice, and a compare-and-swap "+
			"whose first attempt swapped reports that it did not", blindRetryAttempt),
		Layer:    LayerClient,
		Catcher:  CheckerLinearizability,
		Scenario: "snapshot-install",
		Engine:   scenarios.EnginePebble,
		Mutation: func() *scenarios.Mutation {
			return &scenarios.Mutation{Name: "blind-retry", Client: func(c *cluster.Client, _ *scenarios.World) scenarios.Doer {
				return newBlindRetryClient(c, blindRetryAttempt)
			}}
		},
	},
	{
		Name: "read-without-leadership-check",
		Description: "the client serves each get from the local state machine of a random live node, with no leadership " +
			"check and no barrier, and reports it as a read through the log",
		Layer:    LayerClient,
		Catcher:  CheckerLinearizability,
		Scenario: "snapshot-install",
		Engine:   scenarios.EnginePebble,
		Mutation: func() *scenarios.Mutation {
			return &scenarios.Mutation{Name: "read-without-leadership-check", Client: newLocalReadClient}
		},
	},
	{
		Name: "pipeline-acks-lost-appends",
		Description: "the transport's AppendEntries pipeline fills in each response as a success before sending and leaves it so " +
			"when the request is lost, cut by a partition or times out: the leader counts entries a follower never got " +
			"towards commitment (only pipelined replication takes this path)",
		Layer:    LayerTransport,
		Catcher:  CheckerRaft,
		Scenario: "partition-heal",
		Engine:   scenarios.EnginePebble,
		Mutation: func() *scenarios.Mutation {
			return &scenarios.Mutation{Name: "pipeline-acks-lost-appends",
				Transport: func(t *sim.Transport) raft.Transport { return ackLostTransport{t} }}
		},
	},
}

// All returns the catalog, in a fixed order.
func All() []Bug { return append([]Bug(nil), catalog...) }

// Lookup returns the bug named name.
func Lookup(name string) (Bug, bool) {
	for _, b := range catalog {
		if b.Name == name {
			return b, true
		}
	}
	return Bug{}, false
}
