package cluster

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"

	"github.com/raftsnap/testbed/cluster/snapstore"
	"github.com/raftsnap/testbed/engines"
	"github.com/raftsnap/testbed/engines/pebble"
	"github.com/raftsnap/testbed/snapshot"
)

// zeroCopyFixture is a state machine over a Pebble engine on a memory
// filesystem with its zero-copy store, as StartNode wires them.
type zeroCopyFixture struct {
	fs     vfs.FS
	engine *syncCounter
	fsm    *FSM
	store  *ZeroCopyStore
	files  *snapstore.Store
}

// syncCounter counts the durability barriers an engine is asked for.
type syncCounter struct {
	engines.Engine
	syncs int
}

func (e *syncCounter) Sync() error {
	e.syncs++
	return engines.Sync(e.Engine)
}

func newZeroCopyFixture(t *testing.T) *zeroCopyFixture {
	t.Helper()
	fs := vfs.NewMem()
	e, err := pebble.Open("db", pebble.Options{FS: fs, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	counted := &syncCounter{Engine: e}
	f, err := NewFSM(counted, FSMHooks{})
	if err != nil {
		t.Fatal(err)
	}
	files, err := snapstore.New(fs, "files", 2)
	if err != nil {
		t.Fatal(err)
	}
	z := NewZeroCopyStore(f, counted, snapshot.VerifyingStore(files))
	f.UseLocalSnapshots(z)
	return &zeroCopyFixture{fs: fs, engine: counted, fsm: f, store: z, files: files}
}

var testConfig = raft.Configuration{Servers: []raft.Server{{ID: "a", Address: "a", Suffrage: raft.Voter}}}

// takeSnapshot does what raft's takeSnapshot does with the store: FSM
// snapshot, Create at raft's index and term, Persist, Close.
func (x *zeroCopyFixture) takeSnapshot(t *testing.T, index, term uint64) string {
	t.Helper()
	snap, err := x.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	sink, err := x.store.Create(1, index, term, testConfig, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	return sink.ID()
}

func readAll(t *testing.T, store raft.SnapshotStore, id string) (*raft.SnapshotMeta, []byte) {
	t.Helper()
	meta, rc, err := store.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return meta, b
}

func TestALocalSnapshotSyncsTheEngineAndWritesNoState(t *testing.T) {
	x := newZeroCopyFixture(t)
	for i := uint64(1); i <= 200; i++ {
		applySet(t, x.fsm, i, string(rune('a'+i%26))+string(rune('a'+i/26)), "a value that is not small at all")
	}
	id := x.takeSnapshot(t, 200, 1)
	if !IsReference(id) {
		t.Fatalf("local snapshot %q is not a reference", id)
	}
	if x.engine.syncs != 1 {
		t.Fatalf("durability barrier ran %d times, want 1", x.engine.syncs)
	}
	if files, _ := x.files.List(); len(files) != 0 {
		t.Fatalf("a local snapshot stored a stream: %v", files)
	}
	metas, err := x.store.List()
	if err != nil || len(metas) != 1 || metas[0].ID != id || metas[0].Index != 200 {
		t.Fatalf("List = %v, %v; want the local snapshot %s at 200", metas, err, id)
	}
}

func TestOpenOfAReferenceStreamsTheStateAtItsViewExactlyAsACopyWould(t *testing.T) {
	x := newZeroCopyFixture(t)
	for i := uint64(1); i <= 50; i++ {
		applySet(t, x.fsm, i, "k"+string(rune('a'+i%7)), "v")
	}
	id := x.takeSnapshot(t, 50, 1)
	want := snapshotBytes(t, copyingFSM(t, x.fsm.engine)) // the copying path's stream of the same state
	meta, got := readAll(t, x.store, id)
	if !bytes.Equal(got, want) {
		t.Fatalf("reference streamed %d bytes, the copying path %d; they differ", len(got), len(want))
	}
	if meta.Size != int64(len(got)) {
		t.Fatalf("meta says %d bytes, stream has %d (raft's receiver refuses a body of another size)", meta.Size, len(got))
	}
	if meta.Index != 50 || meta.Term != 1 || len(meta.Configuration.Servers) != 0 {
		t.Fatalf("meta = %+v, want index 50 term 1 and the engine's (empty) configuration", meta)
	}
}

func TestAReferenceServesTheNewestStateWithAHeaderFromTheSameView(t *testing.T) {
	x := newZeroCopyFixture(t)
	applySet(t, x.fsm, 1, "k", "old")
	id := x.takeSnapshot(t, 1, 1)
	applySet(t, x.fsm, 2, "k", "new")
	applySet(t, x.fsm, 3, "k2", "more")
	meta, b := readAll(t, x.store, id)
	dec, err := snapshot.NewDecoder(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if h := dec.Header(); h.Index != 3 || meta.Index != 3 {
		t.Fatalf("header index %d, meta index %d; want the view's 3", h.Index, meta.Index)
	}
	pairs := map[string]string{}
	for dec.Next() {
		pairs[string(dec.Key())] = string(dec.Value())
	}
	if dec.Err() != nil || pairs["k"] != "new" || pairs["k2"] != "more" || len(pairs) != 2 {
		t.Fatalf("streamed %v (err %v), want the state at index 3", pairs, dec.Err())
	}
}

// Raft's snapshot index counts a new leader's no-op and Barrier entries,
// which the state machine never sees: a local snapshot at raft index 7 over
// an engine at index 5 records 7 in the engine before its barrier, so that
// a restart resumes at 7, where raft compacts its log, and a send says 7.
func TestALocalSnapshotRecordsRaftsIndexWhenOnlyNoOpsLieBetween(t *testing.T) {
	x := newZeroCopyFixture(t)
	applySet(t, x.fsm, 5, "k", "v")
	before := snapshotBytes(t, copyingFSM(t, x.fsm.engine))
	id := x.takeSnapshot(t, 7, 2)
	if a, err := x.fsm.engine.Applied(); err != nil || a.Index != 7 || a.Term != 2 {
		t.Fatalf("engine position after the snapshot: %+v, %v; want raft's 7/2", a, err)
	}
	meta, b := readAll(t, x.store, id)
	dec, err := snapshot.NewDecoder(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if h := dec.Header(); h.Index != 7 || h.Term != 2 || meta.Index != 7 || meta.Term != 2 {
		t.Fatalf("header %d/%d, meta %+v; want raft's index 7 term 2", h.Index, h.Term, meta)
	}
	bd, err := snapshot.NewDecoder(bytes.NewReader(before))
	if err != nil {
		t.Fatal(err)
	}
	for dec.Next() {
		if !bd.Next() || !bytes.Equal(bd.Key(), dec.Key()) || !bytes.Equal(bd.Value(), dec.Value()) {
			t.Fatal("the state at 7 is not the state at 5")
		}
	}
	// A later apply at 8 moves the engine on; an older raft index moves
	// nothing back.
	applySet(t, x.fsm, 8, "k", "v8")
	if err := x.fsm.ReachPosition(6, 2); err != nil {
		t.Fatal(err)
	}
	if a := x.fsm.Applied(); a.Index != 8 {
		t.Fatalf("ReachPosition(6) moved the engine from 8 to %d", a.Index)
	}
}

func TestAReceivedSnapshotIsStoredVerifiedAndListedBesideReferences(t *testing.T) {
	x := newZeroCopyFixture(t)
	applySet(t, x.fsm, 1, "a", "1")
	x.takeSnapshot(t, 1, 1)
	// A leader's stream of another state at index 9, term 3.
	src := newTestFSM(t)
	applySet(t, src, 9, "z", "26")
	body := snapshotBytes(t, src)
	sink, err := x.store.Create(1, 9, 3, testConfig, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	metas, err := x.store.List()
	if err != nil || len(metas) != 2 || IsReference(metas[0].ID) || metas[0].Index != 9 || !IsReference(metas[1].ID) {
		t.Fatalf("List = %v, %v; want the received snapshot first, then the reference", metas, err)
	}
	if _, got := readAll(t, x.store, metas[0].ID); !bytes.Equal(got, body) {
		t.Fatal("the received snapshot does not read back as it was received")
	}

	// A damaged body is refused and nothing is listed for it.
	damaged := bytes.Clone(body)
	damaged[len(damaged)/2] ^= 0xff
	sink, err = x.store.Create(1, 12, 3, testConfig, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Write(damaged); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err == nil {
		t.Fatal("a damaged received snapshot was kept")
	}
	if metas, _ := x.store.List(); len(metas) != 2 {
		t.Fatalf("after a refused body List = %v", metas)
	}
}

func TestASinkClosedEmptyWithoutAReferenceIsRefused(t *testing.T) {
	x := newZeroCopyFixture(t)
	sink, err := x.store.Create(1, 4, 1, testConfig, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); !errors.Is(err, ErrNotReference) {
		t.Fatalf("Close = %v, want ErrNotReference", err)
	}
	if metas, _ := x.store.List(); len(metas) != 0 {
		t.Fatalf("List = %v after a refused empty sink", metas)
	}
}

func TestAStreamWhoseContentsChangedBehindTheCountFailsInsteadOfLying(t *testing.T) {
	x := newZeroCopyFixture(t)
	applySet(t, x.fsm, 1, "k", "v")
	id := x.takeSnapshot(t, 1, 1)
	readAll(t, x.store, id) // counts the contents once
	// A write that bypasses the state machine (a bug the count cannot see).
	if err := x.fsm.engine.Write(engines.Batch{Ops: []engines.Op{{Kind: engines.OpPut, Key: []byte("sneaky"), Value: []byte("x")}},
		Applied: engines.Applied{Index: 1, Term: 1}}); err != nil {
		t.Fatal(err)
	}
	_, rc, err := x.store.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	if !errors.Is(err, snapshot.ErrSizeChanged) {
		t.Fatalf("read = %v, want ErrSizeChanged", err)
	}
	// The count is recounted, and the next stream is whole again.
	if _, b := readAll(t, x.store, id); len(b) == 0 {
		t.Fatal("no stream after the recount")
	}
}

// A node whose state ends below the first entry of its log cannot start:
// raft would look for the entries in between and panic. A log that still
// holds the next entry, or no entries past the state, is fine.
func TestANodeWhoseLogWasCompactedPastItsStateIsRefused(t *testing.T) {
	x := newZeroCopyFixture(t)
	applySet(t, x.fsm, 5, "k", "v")
	logs := raft.NewInmemStore()
	store := func(from, to uint64) {
		for i := from; i <= to; i++ {
			if err := logs.StoreLog(&raft.Log{Index: i, Term: 1, Type: raft.LogNoop}); err != nil {
				t.Fatal(err)
			}
		}
	}
	store(6, 9) // the engine is at 5, the log goes on from 6
	if err := checkLogCoversEngine(x.store, logs); err != nil {
		t.Fatalf("log from 6 over an engine at 5: %v", err)
	}
	if err := logs.DeleteRange(6, 6); err != nil {
		t.Fatal(err)
	}
	err := checkLogCoversEngine(x.store, logs)
	if !errors.Is(err, ErrStateLost) {
		t.Fatalf("log from 7 over an engine at 5: %v, want ErrStateLost", err)
	}
	if err := checkLogCoversEngine(x.store, raft.NewInmemStore()); err != nil {
		t.Fatalf("an empty log: %v", err)
	}
}

// copyingFSM is a state machine over e that takes copying snapshots.
func copyingFSM(t *testing.T, e engines.Engine) *FSM {
	t.Helper()
	f, err := NewFSM(e, FSMHooks{})
	if err != nil {
		t.Fatal(err)
	}
	return f
}
