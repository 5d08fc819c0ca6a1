package cluster

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"

	"github.com/raftsnap/testbed/engines"
	"github.com/raftsnap/testbed/engines/bbolt"
	"github.com/raftsnap/testbed/engines/pebble"
	"github.com/raftsnap/testbed/snapshot"
)

// The data set: 16-byte random keys, 100-byte random values.
const (
	benchKeyLen   = 16
	benchValueLen = 100
)

// benchPairs yields n pairs with sorted random keys and random values from
// a fixed seed, without holding the values in memory.
type benchPairs struct {
	keys  [][]byte
	value []byte
	rng   *rand.Rand
	i     int
}

func newBenchPairs(n int) *benchPairs {
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	keys := make([][]byte, n)
	arena := make([]byte, n*benchKeyLen)
	for i := range keys {
		k := arena[i*benchKeyLen : (i+1)*benchKeyLen]
		binary.LittleEndian.PutUint64(k, rng.Uint64())
		binary.LittleEndian.PutUint64(k[8:], rng.Uint64())
		keys[i] = k
	}
	slices.SortFunc(keys, bytes.Compare)
	keys = slices.CompactFunc(keys, func(a, b []byte) bool { return bytes.Equal(a, b) })
	return &benchPairs{keys: keys, value: make([]byte, benchValueLen), rng: rng}
}

func (g *benchPairs) Next() bool {
	if g.i >= len(g.keys) {
		return false
	}
	for j := 0; j+8 <= benchValueLen; j += 8 {
		binary.LittleEndian.PutUint64(g.value[j:], g.rng.Uint64())
	}
	g.i++
	return true
}
func (g *benchPairs) Key() []byte   { return g.keys[g.i-1] }
func (g *benchPairs) Value() []byte { return g.value }
func (g *benchPairs) Err() error    { return nil }

// benchNode is a state machine over an engine on the real disk, with its
// snapshot stores beside it, as BoltStorage lays a node out.
type benchNode struct {
	dir    string
	engine engines.Engine
	fsm    *FSM
	store  raft.SnapshotStore
	bytes  int64
	next   uint64 // the next log index to apply
}

// openBenchEngine opens the engine, with unsynced writes (as a state
// machine beside a synced raft log runs; the zero-copy store's barrier
// syncs it) unless synced.
func openBenchEngine(b *testing.B, engine, dir string, synced bool) engines.Engine {
	var e engines.Engine
	var err error
	switch engine {
	case "bbolt":
		e, err = bbolt.Open(filepath.Join(dir, "engine.db"), bbolt.Options{NoSync: !synced, InitialMmapSize: 2 << 30})
	case "pebble":
		e, err = pebble.Open(filepath.Join(dir, "engine"), pebble.Options{NoSync: !synced})
	}
	if err != nil {
		b.Fatal(err)
	}
	return e
}

// newBenchNode loads n pairs into a fresh engine (untimed) and wires the
// store kind over it.
func newBenchNode(b *testing.B, kind, engine string, n int, synced bool) *benchNode {
	b.Helper()
	dir := b.TempDir()
	e := openBenchEngine(b, engine, dir, synced)
	b.Cleanup(func() { e.Close() })
	src := newBenchPairs(n)
	if err := e.Install(src, engines.Applied{Index: 1, Term: 1, Config: raft.EncodeConfiguration(testConfig)}); err != nil {
		b.Fatal(err)
	}
	if err := engines.Sync(e); err != nil {
		b.Fatal(err)
	}
	fsm, err := NewFSM(e, FSMHooks{})
	if err != nil {
		b.Fatal(err)
	}
	st := &Stores{}
	if err := openSnapshotStores(st, vfs.Default, dir); err != nil {
		b.Fatal(err)
	}
	streams := snapshot.VerifyingStore(st.Snapshots)
	var store raft.SnapshotStore = streams
	switch kind {
	case StoreZeroCopy:
		zc := NewZeroCopyStore(fsm, e.(engines.Syncer), streams)
		fsm.UseLocalSnapshots(zc)
		store = zc
	case StoreCheckpoint:
		cs, err := OpenCheckpointStore(fsm, e.(engines.Checkpointer), vfs.Default, filepath.Join(dir, PebbleCheckpointDir), streams, nil)
		if err != nil {
			b.Fatal(err)
		}
		fsm.UseLocalSnapshots(cs)
		store = cs
	}
	return &benchNode{dir: dir, engine: e, fsm: fsm, store: store, bytes: int64(len(src.keys)) * (benchKeyLen + benchValueLen), next: 2}
}

// applyOne applies one set, so that each local snapshot has something new.
func (nd *benchNode) applyOne(b *testing.B) {
	key := fmt.Appendf(nil, "bench-%08d", nd.next)
	resp := nd.fsm.Apply(&raft.Log{Index: nd.next, Term: 1, Type: raft.LogCommand, Data: Command{Op: OpSet, Key: key, Value: key}.Encode()})
	if err, ok := resp.(error); ok {
		b.Fatal(err)
	}
	nd.next++
}

// localSnapshot is raft's takeSnapshot as the store sees it: FSM.Snapshot
// on the apply goroutine, Create, Persist, the second Close, Release
// (reaping happens inside Close).
func (nd *benchNode) localSnapshot(b *testing.B) {
	snap, err := nd.fsm.Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	index := nd.next - 1
	sink, err := nd.store.Create(1, index, 1, testConfig, 1, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := snap.Persist(sink); err != nil {
		b.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		b.Fatal(err)
	}
	snap.Release()
}

// snapshotBytesKept is what the node's snapshot stores hold on disk
// (stored streams and checkpoints), and of it what no other file shares:
// a checkpoint's sstables are hard links to the engine's, so only the
// files it alone links (its copied MANIFEST, WAL and OPTIONS, and tables
// the engine has since compacted away) take space of their own.
func (nd *benchNode) snapshotBytesKept(b *testing.B) (total, unshared int64) {
	for _, d := range []string{snapshotDir, PebbleCheckpointDir} {
		err := filepath.WalkDir(filepath.Join(nd.dir, d), func(_ string, e fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil || e.IsDir() {
				return err
			}
			info, err := e.Info()
			if err != nil {
				return err
			}
			total += info.Size()
			if st, ok := info.Sys().(*syscall.Stat_t); !ok || st.Nlink == 1 {
				unshared += info.Size()
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return total, unshared
}

// writtenBytes is the process's count of bytes handed to write system
// calls (wchar in /proc/self/io): everything the snapshot wrote, to any
// file, whether or not the page cache has flushed it yet.
func writtenBytes(b *testing.B) int64 {
	f, err := os.Open("/proc/self/io")
	if err != nil {
		b.Skipf("no /proc/self/io to count written bytes: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "wchar: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatal("no wchar in /proc/self/io")
	return 0
}

var localSnapshotSizes = []int{250_000, 1_000_000, 4_000_000}

// BenchmarkLocalSnapshot measures one local Raft snapshot from raft's point
// of view (FSM.Snapshot + Persist + sink close + reaping) on each store and
// engine: time per snapshot, bytes written to disk, and snapshot bytes kept
// on disk afterwards. Loading the engine is not timed; one entry is applied
// (untimed) before each snapshot. The engine's writes are unsynced, so the
// zero-copy store's barrier pays one fsync; .../writes=synced runs it over
// an engine that syncs every write, where the barrier has nothing to do.
func BenchmarkLocalSnapshot(b *testing.B) {
	type config struct {
		kind   string
		synced bool
	}
	for _, c := range []config{{StoreCopy, false}, {StoreZeroCopy, false}, {StoreZeroCopy, true}, {StoreCheckpoint, false}} {
		for _, engine := range []string{"bbolt", "pebble"} {
			if c.kind == StoreCheckpoint && engine != "pebble" {
				continue // bbolt cannot checkpoint (BenchmarkCheckpointByCopy in engines/bbolt says what it would cost)
			}
			for _, n := range localSnapshotSizes {
				name := fmt.Sprintf("%s/%s/keys=%d", c.kind, engine, n)
				if c.synced {
					name += "/writes=synced"
				}
				b.Run(name, func(b *testing.B) {
					nd := newBenchNode(b, c.kind, engine, n, c.synced)
					nd.applyOne(b)
					nd.localSnapshot(b) // the first one is no different, but warms the page cache
					var written int64
					b.ResetTimer()
					for range b.N {
						b.StopTimer()
						nd.applyOne(b)
						before := writtenBytes(b)
						b.StartTimer()
						nd.localSnapshot(b)
						b.StopTimer()
						written += writtenBytes(b) - before
						b.StartTimer()
					}
					b.StopTimer()
					b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/snapshot")
					b.ReportMetric(float64(written)/float64(b.N), "bytes-written/op")
					kept, unshared := nd.snapshotBytesKept(b)
					b.ReportMetric(float64(kept), "bytes-kept")
					b.ReportMetric(float64(unshared), "bytes-kept-unshared")
					b.ReportMetric(float64(nd.bytes)/1e6, "state-MB")
				})
			}
		}
	}
}

// BenchmarkSendFromReference measures what a zero-copy store costs when a
// follower does need the state: Open of a local reference (a fresh view,
// its content count, the header) read to the end, beside a raw iteration of
// the same view with a CRC32C over it, each pass timed on its own.
func BenchmarkSendFromReference(b *testing.B) {
	for _, engine := range []string{"bbolt", "pebble"} {
		for _, n := range []int{250_000, 1_000_000} {
			b.Run(fmt.Sprintf("%s/keys=%d", engine, n), func(b *testing.B) {
				nd := newBenchNode(b, StoreZeroCopy, engine, n, false)
				nd.applyOne(b)
				nd.localSnapshot(b)
				metas, err := nd.store.List()
				if err != nil || len(metas) == 0 {
					b.Fatalf("no reference to open: %v %v", metas, err)
				}
				id := metas[0].ID
				send := func() {
					_, rc, err := nd.store.Open(id)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := io.Copy(io.Discard, rc); err != nil {
						b.Fatal(err)
					}
					if err := rc.Close(); err != nil {
						b.Fatal(err)
					}
				}
				raw := func() {
					v, err := nd.engine.View()
					if err != nil {
						b.Fatal(err)
					}
					it, err := v.Iter()
					if err != nil {
						b.Fatal(err)
					}
					var crc uint32
					table := crc32.MakeTable(crc32.Castagnoli)
					for it.Next() {
						crc = crc32.Update(crc, table, it.Key())
						crc = crc32.Update(crc, table, it.Value())
					}
					if err := it.Err(); err != nil {
						b.Fatal(err)
					}
					it.Close()
					v.Close()
				}
				send() // counts the contents once, as the first send after a start does
				raw()
				b.SetBytes(nd.bytes)
				var rawSecs float64
				b.ResetTimer()
				for range b.N {
					send()
					b.StopTimer()
					start := time.Now()
					raw()
					rawSecs += time.Since(start).Seconds()
					b.StartTimer()
				}
				b.StopTimer()
				b.ReportMetric(float64(nd.bytes)*float64(b.N)/1e6/rawSecs, "raw-MB/s")
				b.ReportMetric(rawSecs/b.Elapsed().Seconds(), "send/raw")
			})
		}
	}
}

// BenchmarkLocalRestore measures a restore of the engine from its local
// checkpoint (CheckpointStore.RestoreLocal, as a node's start runs it when
// its engine is behind its newest checkpoint): the checkpoint opened and
// checked against its marker, a new DB directory built from it (sstables
// linked, the rest copied and synced), the switch, the reopen, the old DB
// removed. Before each restore (untimed) the engine is put back on an
// older checkpoint, so that it is behind.
func BenchmarkLocalRestore(b *testing.B) {
	for _, n := range []int{1_000_000} {
		b.Run(fmt.Sprintf("pebble/keys=%d", n), func(b *testing.B) {
			nd := newBenchNode(b, StoreCheckpoint, "pebble", n, false)
			cs := nd.store.(*CheckpointStore)
			e := nd.engine.(engines.Checkpointer)
			nd.applyOne(b)
			older := filepath.Join(nd.dir, "older")
			if err := e.Checkpoint(older); err != nil {
				b.Fatal(err)
			}
			nd.applyOne(b)
			nd.localSnapshot(b)
			newest, ok := cs.Newest()
			if !ok {
				b.Fatal("no checkpoint")
			}
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				if err := nd.fsm.Reload(func() error { return e.RestoreCheckpoint(older) }, 0, 0, false); err != nil {
					b.Fatal(err)
				}
				if nd.fsm.Applied().Index >= newest.Index {
					b.Fatalf("engine at %d, not behind the checkpoint at %d", nd.fsm.Applied().Index, newest.Index)
				}
				b.StartTimer()
				at, restored, err := cs.RestoreLocal()
				if err != nil || !restored || at.Index != newest.Index || nd.fsm.Applied().Index != newest.Index {
					b.Fatalf("RestoreLocal = %v %v %v, engine at %d; want %d", at.Index, restored, err, nd.fsm.Applied().Index, newest.Index)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/restore")
			b.ReportMetric(float64(nd.bytes)/1e6, "state-MB")
		})
	}
}
