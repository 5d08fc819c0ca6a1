package canaries

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/hashicorp/raft"

	"github.com/raftsnap/testbed/checkers"
	"github.com/raftsnap/testbed/cluster"
	"github.com/raftsnap/testbed/cluster/snapstore"
	"github.com/raftsnap/testbed/engines"
	"github.com/raftsnap/testbed/engines/bbolt"
	"github.com/raftsnap/testbed/engines/pebble"
	"github.com/raftsnap/testbed/snapshot"
)

// Each test here shows its wrapper really plants its bug on a real engine,
// next to the same steps on the unwrapped engine, which must behave.

func openPebble(t *testing.T, fs vfs.FS) *pebble.Engine {
	t.Helper()
	e, err := pebble.Open("engine", pebble.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func openBbolt(t *testing.T) *bbolt.Engine {
	t.Helper()
	e, err := bbolt.Open(filepath.Join(t.TempDir(), "engine.db"), bbolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func write(t *testing.T, e engines.Engine, index uint64, kv ...string) {
	t.Helper()
	b := engines.Batch{Applied: engines.Applied{Index: index, Term: 1}}
	for i := 0; i+1 < len(kv); i += 2 {
		b.Put([]byte(kv[i]), []byte(kv[i+1]))
	}
	if err := e.Write(b); err != nil {
		t.Fatal(err)
	}
}

func contents(t *testing.T, e engines.Engine) (map[string]string, uint64) {
	t.Helper()
	st, err := checkers.ReadState("test", e)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for k, v := range st.Pairs {
		out[k] = string(v)
	}
	return out, st.Applied.Index
}

func pairsOf(kv ...string) *sliceIter {
	s := &sliceIter{}
	for i := 0; i+1 < len(kv); i += 2 {
		s.pairs = append(s.pairs, pair{[]byte(kv[i]), []byte(kv[i+1])})
	}
	return s
}

func readAll(t *testing.T, v engines.View) map[string]string {
	t.Helper()
	it, err := v.Iter()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for it.Next() {
		out[string(it.Key())] = string(it.Value())
	}
	if err := errors.Join(it.Err(), it.Close()); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestLiveViewReadsWritesAfterItWasTaken(t *testing.T) {
	for _, planted := range []bool{false, true} {
		e := openBbolt(t)
		write(t, e, 1, "a", "1", "b", "1")
		var target engines.Engine = e
		if planted {
			target = &liveViewEngine{Engine: e}
		}
		v, err := target.View()
		if err != nil {
			t.Fatal(err)
		}
		write(t, e, 2, "b", "2", "c", "2")
		got := readAll(t, v)
		pit := fmt.Sprint(got) == fmt.Sprint(map[string]string{"a": "1", "b": "1"})
		if v.Applied().Index != 1 || pit == planted {
			t.Errorf("planted=%v: view taken at index 1 says index %d and reads %v", planted, v.Applied().Index, got)
		}
		if err := v.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestStaleKeysInstallKeepsDeletedKeys(t *testing.T) {
	for _, planted := range []bool{false, true} {
		e := openBbolt(t)
		write(t, e, 4, "gone", "x", "kept", "old")
		var target engines.Engine = e
		if planted {
			target = &staleKeysEngine{Engine: e}
		}
		if err := target.Install(pairsOf("kept", "new"), engines.Applied{Index: 9, Term: 2}); err != nil {
			t.Fatal(err)
		}
		got, index := contents(t, e)
		_, stale := got["gone"]
		if index != 9 || got["kept"] != "new" || stale != planted {
			t.Errorf("planted=%v: after install at 9: index %d, contents %v", planted, index, got)
		}
	}
}

// failingIter yields its pairs, then reports err.
type failingIter struct {
	*sliceIter
	err error
}

func (f *failingIter) Err() error {
	if f.i < len(f.pairs) {
		return nil
	}
	return f.err
}

// crashingIter calls crash just before yielding pair number at (from 0).
type crashingIter struct {
	*sliceIter
	at    int
	crash func()
}

func (c *crashingIter) Next() bool {
	if c.i == c.at {
		c.crash()
	}
	return c.sliceIter.Next()
}

func TestNonAtomicInstallLeavesAMixAfterACrash(t *testing.T) {
	for _, planted := range []bool{false, true} {
		fs := vfs.NewCrashableMem()
		e := openPebble(t, fs)
		write(t, e, 4, "a", "old", "b", "old", "c", "old")
		var target engines.Engine = e
		if planted {
			target = &nonAtomicEngine{Engine: e, pairsPerBatch: 2}
		}
		var crashed *vfs.MemFS
		src := &crashingIter{sliceIter: pairsOf("a", "new", "b", "new", "c", "new", "d", "new"), at: 3,
			crash: func() {
				crashed = fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rand.New(rand.NewPCG(1, 2))})
			}}
		if err := target.Install(src, engines.Applied{Index: 9, Term: 2}); err != nil {
			t.Fatal(err)
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		after := openPebble(t, crashed)
		got, index := contents(t, after)
		if err := after.Close(); err != nil {
			t.Fatal(err)
		}
		old := fmt.Sprint(map[string]string{"a": "old", "b": "old", "c": "old"})
		mixed := fmt.Sprint(got) != old || index != 4
		if mixed != planted {
			t.Errorf("planted=%v: crash in the middle of an install left index %d, contents %v", planted, index, got)
		}
		if planted && (index != 9 || len(got) != 2) {
			t.Errorf("planted: want the snapshot's index 9 with its first two pairs, got index %d, contents %v", index, got)
		}
	}
}

func TestNonAtomicInstallCommitsPartOfAFailingSource(t *testing.T) {
	e := openBbolt(t)
	write(t, e, 4, "a", "old")
	bad := errors.New("stream broke")
	err := (&nonAtomicEngine{Engine: e, pairsPerBatch: 2}).Install(&failingIter{sliceIter: pairsOf("b", "new", "c", "new"), err: bad}, engines.Applied{Index: 9, Term: 2})
	got, index := contents(t, e)
	if !errors.Is(err, bad) || index != 9 || len(got) != 2 || got["b"] != "new" {
		t.Errorf("got error %v, index %d, contents %v; want the source's error with its pairs committed at index 9", err, index, got)
	}
}

func encodeStream(t *testing.T, index uint64, kv ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := snapshot.Encode(&buf, snapshot.HeaderFor(engines.Applied{Index: index, Term: 1}), pairsOf(kv...)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestLenientInstallAcceptsDamagedStreams(t *testing.T) {
	stream := encodeStream(t, 9, "a", "alpha", "b", "bravo", "c", "charlie")
	corrupt := bytes.Clone(stream)
	at := bytes.Index(corrupt, []byte("bravo"))
	corrupt[at] ^= 0x20 // "Bravo"
	// Cut inside the last pair: the first two pairs decode.
	truncated := stream[:bytes.Index(stream, []byte("charlie"))]
	for name, tc := range map[string]struct {
		stream  []byte
		wantErr error
		want    map[string]string
	}{
		"corrupt":   {corrupt, snapshot.ErrChecksum, map[string]string{"a": "alpha", "b": "Bravo", "c": "charlie"}},
		"truncated": {truncated, snapshot.ErrTruncated, map[string]string{"a": "alpha", "b": "bravo"}},
	} {
		e := openBbolt(t)
		write(t, e, 4, "z", "old")
		if _, err := snapshot.Restore(e, bytes.NewReader(tc.stream)); !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: real restore: %v, want %v", name, err, tc.wantErr)
		}
		if got, index := contents(t, e); index != 4 || len(got) != 1 {
			t.Errorf("%s: real restore changed the engine: index %d, %v", name, index, got)
		}
		if _, err := snapshot.Restore(&lenientEngine{Engine: e}, bytes.NewReader(tc.stream)); err != nil {
			t.Errorf("%s: lenient restore: %v, want success", name, err)
		}
		if got, index := contents(t, e); index != 9 || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: lenient restore left index %d, %v; want 9, %v", name, index, got, tc.want)
		}
	}
}

func TestForgetfulEngineMakesTheStateMachineReapply(t *testing.T) {
	set := cluster.Command{Op: cluster.OpSet, Key: []byte("k"), Value: []byte("v")}.Encode()
	for _, planted := range []bool{false, true} {
		e := openBbolt(t)
		write(t, e, 3, "k", "v")
		var under engines.Engine = e
		if planted {
			under = &forgetfulEngine{Engine: e}
		}
		var reapplied []uint64
		fsm, err := cluster.NewFSM(under, cluster.FSMHooks{Applied: func(logs []*raft.Log) {
			for _, l := range logs {
				reapplied = append(reapplied, l.Index)
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		// Raft replays entry 3 after a restart; the engine applied it already.
		resp := fsm.ApplyBatch([]*raft.Log{{Index: 3, Term: 1, Type: raft.LogCommand, Data: set}})
		_, skipped := resp[0].(cluster.Replayed)
		if skipped == planted || (len(reapplied) == 1) != planted {
			t.Errorf("planted=%v: replayed entry 3: response %T, applied again %v", planted, resp[0], reapplied)
		}
	}
}

func TestNoSyncFSLosesSyncedWritesOnPowerLoss(t *testing.T) {
	for _, planted := range []bool{false, true} {
		mem := vfs.NewCrashableMem()
		var fs vfs.FS = mem
		if planted {
			fs = noSyncFS{mem}
		}
		e := openPebble(t, fs)
		write(t, e, 1, "k", "v") // a synced commit (Options.NoSync is false)
		lost := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		after, err := pebble.Open("engine", pebble.Options{FS: lost})
		found := false
		if err == nil {
			_, found, err = after.Get([]byte("k"))
			err = errors.Join(err, after.Close())
		}
		if err != nil && !planted {
			t.Fatalf("real: reopening after power loss: %v", err)
		}
		if found == planted {
			t.Errorf("planted=%v: after power loss the synced write is found=%v (reopen error %v)", planted, found, err)
		}
	}
}

// A snapshot store on a disk whose writes fail: the real store fails the
// snapshot's Close; under droppedWriteErrorsFS the same snapshot closes as
// complete and is not there whole to open.
func TestDroppedWriteErrorsReportAShortSnapshotComplete(t *testing.T) {
	for _, planted := range []bool{false, true} {
		var fs vfs.FS = errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
			if op.Kind == errorfs.OpFileWrite {
				return errorfs.ErrInjected
			}
			return nil
		}))
		if planted {
			fs = droppedWriteErrorsFS{fs}
		}
		store, err := snapstore.New(fs, "snapshots", 2)
		if err != nil {
			t.Fatal(err)
		}
		sink, err := store.Create(1, 10, 1, raft.Configuration{}, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sink.Write(bytes.Repeat([]byte("x"), 100<<10)); err != nil && planted {
			t.Fatalf("planted: write: %v", err)
		}
		closeErr := sink.Close()
		if !planted {
			if closeErr == nil {
				t.Fatal("real: a snapshot whose writes failed closed as complete")
			}
			continue
		}
		if closeErr != nil {
			t.Fatalf("planted: Close reported the failed writes: %v", closeErr)
		}
		if _, _, err := store.Open(sink.ID()); err == nil {
			t.Error("planted: the short snapshot opens as whole")
		}
	}
}

// A stored snapshot that rots after it was kept: VerifyingStore refuses it
// at Open and leaves it out of List; the receive-only guard lists it and
// hands it out.
func TestReceiveOnlyGuardServesARottenSnapshot(t *testing.T) {
	for _, planted := range []bool{false, true} {
		mem := vfs.NewMem()
		inner, err := snapstore.New(mem, "snapshots", 2)
		if err != nil {
			t.Fatal(err)
		}
		guard := snapshot.VerifyingStore(inner)
		if planted {
			guard = newReceiveOnlyGuard(inner)
		}
		e := openBbolt(t)
		write(t, e, 7, "a", "1", "b", "2")
		sink, err := guard.Create(1, 7, 1, raft.Configuration{}, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		view, err := e.View()
		if err != nil {
			t.Fatal(err)
		}
		snap := snapshot.NewFSMSnapshot(view)
		if err := snap.Persist(sink); err != nil {
			t.Fatal(err)
		}
		snap.Release()
		// Rot: flip a byte in the middle of the stored data.
		path := mem.PathJoin("snapshots", sink.ID(), "state.bin")
		f, err := mem.OpenReadWrite(path, vfs.WriteCategoryUnspecified)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := f.Stat()
		b := make([]byte, 1)
		if _, err := f.ReadAt(b, st.Size()/2); err != nil {
			t.Fatal(err)
		}
		b[0] ^= 0x5a
		if _, err := f.WriteAt(b, st.Size()/2); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()

		_, rc, openErr := guard.Open(sink.ID())
		if rc != nil {
			_ = rc.Close()
		}
		metas, err := guard.List()
		if err != nil {
			t.Fatal(err)
		}
		listed := len(metas) > 0 && metas[0].ID == sink.ID()
		if !planted && (!errors.Is(openErr, snapshot.ErrRefused) || listed) {
			t.Errorf("real: rotten snapshot: Open error %v (want ErrRefused), still listed %v", openErr, listed)
		}
		if planted && (openErr != nil || !listed) {
			t.Errorf("planted: rotten snapshot: Open error %v (want it handed out), listed %v (want it listed)", openErr, listed)
		}
	}
}
