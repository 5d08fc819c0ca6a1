package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"

	"github.com/raftsnap/testbed/cluster/snapstore"
	"github.com/raftsnap/testbed/engines"
	"github.com/raftsnap/testbed/engines/pebble"
	"github.com/raftsnap/testbed/snapshot"
)

// checkpointFixture is a state machine over a Pebble engine on a memory
// filesystem with its checkpoint store, as StartNode wires them.
type checkpointFixture struct {
	fs     vfs.FS
	engine *pebble.Engine
	fsm    *FSM
	store  *CheckpointStore
}

const testCheckpointDir = "checkpoints"

// openCheckpointFixture opens the engine, state machine and store on fs
// and restores the engine from its newest checkpoint if it is behind it,
// as a node's start does.
func openCheckpointFixture(t *testing.T, fs vfs.FS) (*checkpointFixture, bool) {
	t.Helper()
	e, err := pebble.Open("db", pebble.Options{FS: fs, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	f, err := NewFSM(e, FSMHooks{})
	if err != nil {
		t.Fatal(err)
	}
	files, err := snapstore.New(fs, "files", 2)
	if err != nil {
		t.Fatal(err)
	}
	c, err := OpenCheckpointStore(f, e, fs, testCheckpointDir, snapshot.VerifyingStore(files), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, restored, err := c.RestoreLocal()
	if err != nil {
		t.Fatal(err)
	}
	f.UseLocalSnapshots(c)
	return &checkpointFixture{fs: fs, engine: e, fsm: f, store: c}, restored
}

func newCheckpointFixture(t *testing.T) *checkpointFixture {
	x, _ := openCheckpointFixture(t, vfs.NewMem())
	return x
}

// takeSnapshot does what raft's takeSnapshot does with the store.
func (x *checkpointFixture) takeSnapshot(t *testing.T, index, term uint64) {
	t.Helper()
	if err := x.trySnapshot(index, term); err != nil {
		t.Fatal(err)
	}
}

func (x *checkpointFixture) trySnapshot(index, term uint64) error {
	snap, err := x.fsm.Snapshot()
	if err != nil {
		return err
	}
	defer snap.Release()
	sink, err := x.store.Create(1, index, term, testConfig, 1, nil)
	if err != nil {
		return err
	}
	if err := snap.Persist(sink); err != nil {
		return err
	}
	return sink.Close()
}

func (x *checkpointFixture) apply(t *testing.T, from, to uint64) {
	t.Helper()
	for i := from; i <= to; i++ {
		applySet(t, x.fsm, i, fmt.Sprintf("k%03d", i%40), fmt.Sprintf("value %d", i))
	}
}

func (x *checkpointFixture) listed(t *testing.T) []*raft.SnapshotMeta {
	t.Helper()
	metas, err := x.store.List()
	if err != nil {
		t.Fatal(err)
	}
	return metas
}

// streamOfView is what the zero-copy store sends of the engine's state now.
func streamOfView(t *testing.T, e engines.Engine) []byte {
	t.Helper()
	v, err := e.View()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	pairs, kvBytes, err := countView(v)
	if err != nil {
		t.Fatal(err)
	}
	it, err := v.Iter()
	if err != nil {
		t.Fatal(err)
	}
	h := snapshot.HeaderFor(v.Applied())
	r, err := snapshot.NewReader(h, it, snapshot.StreamSize(h, pairs, kvBytes))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A local snapshot is a checkpoint at raft's index (above the state
// machine's last entry when raft's counts no-ops), and what Open streams
// of it is byte for byte what a stream of the engine's own view at that
// index is, with the metadata raft sends agreeing with the header.
func TestStreamFromCheckpointEqualsStreamFromEngineAtItsIndex(t *testing.T) {
	x := newCheckpointFixture(t)
	x.fsm.Apply(&raft.Log{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: raft.EncodeConfiguration(testConfig)})
	x.apply(t, 2, 120)
	x.takeSnapshot(t, 123, 1) // 121..123: no-ops raft never hands the FSM
	want := streamOfView(t, x.engine)
	x.apply(t, 124, 200) // the engine moves on; the checkpoint does not

	metas := x.listed(t)
	if len(metas) != 1 || !IsCheckpoint(metas[0].ID) || metas[0].Index != 123 {
		t.Fatalf("List = %+v, want one checkpoint at 123", metas)
	}
	meta, got := readAll(t, x.store, metas[0].ID)
	if !bytes.Equal(got, want) {
		t.Fatalf("stream of the checkpoint (%d bytes) differs from the stream of the engine at 123 (%d bytes)", len(got), len(want))
	}
	dec, err := snapshot.NewDecoder(bytes.NewReader(got))
	if err != nil {
		t.Fatal(err)
	}
	if h := dec.Header(); h.Index != meta.Index || h.Term != meta.Term || meta.Size != int64(len(got)) {
		t.Fatalf("metadata %d/%d size %d, header %d/%d, stream %d bytes", meta.Index, meta.Term, meta.Size, h.Index, h.Term, len(got))
	}
	if len(meta.Configuration.Servers) != 1 {
		t.Fatalf("metadata configuration %+v, want the engine's", meta.Configuration)
	}
}

// Reaping a checkpoint that a send is reading waits until the send
// closes it: the send reads the whole checkpoint, and List stops
// reporting it at once.
func TestReapingWaitsForTheLastReader(t *testing.T) {
	x := newCheckpointFixture(t)
	x.apply(t, 1, 50)
	x.takeSnapshot(t, 50, 1)
	want := streamOfView(t, x.engine)
	old := x.listed(t)[0].ID
	_, rc, err := x.store.Open(old)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 10)
	if _, err := io.ReadFull(rc, head); err != nil {
		t.Fatal(err)
	}
	x.apply(t, 51, 90)
	x.takeSnapshot(t, 90, 1) // reaps the first checkpoint, which is being read

	if metas := x.listed(t); len(metas) != 1 || metas[0].Index != 90 {
		t.Fatalf("List = %+v, want only the new checkpoint", metas)
	}
	if _, err := x.fs.Stat(x.fs.PathJoin(testCheckpointDir, old)); err != nil {
		t.Fatalf("the checkpoint being read was removed under its reader: %v", err)
	}
	rest, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading a reaped checkpoint: %v", err)
	}
	if got := append(head, rest...); !bytes.Equal(got, want) {
		t.Fatal("the reaped checkpoint's stream changed under its reader")
	}
	if err := rc.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := x.fs.Stat(x.fs.PathJoin(testCheckpointDir, old)); err == nil {
		t.Fatal("the reaped checkpoint is still on disk after its last reader closed")
	}
}

// countingFS calls at before every operation that changes the filesystem
// under dir, numbering them from 1.
type countingFS struct {
	vfs.FS
	dir string
	n   int
	at  func(n int)
}

func (fs *countingFS) op(path string) {
	if path == fs.dir || len(path) > len(fs.dir) && path[:len(fs.dir)+1] == fs.dir+"/" {
		fs.n++
		fs.at(fs.n)
	}
}

func (fs *countingFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	fs.op(name)
	f, err := fs.FS.Create(name, c)
	if err != nil {
		return nil, err
	}
	return &countingFile{File: f, fs: fs, path: name}, nil
}
func (fs *countingFS) Link(o, n string) error   { fs.op(n); return fs.FS.Link(o, n) }
func (fs *countingFS) Remove(name string) error { fs.op(name); return fs.FS.Remove(name) }
func (fs *countingFS) Rename(o, n string) error { fs.op(n); return fs.FS.Rename(o, n) }
func (fs *countingFS) MkdirAll(d string, p os.FileMode) error {
	fs.op(d)
	return fs.FS.MkdirAll(d, p)
}
func (fs *countingFS) RemoveAll(name string) error { fs.op(name); return fs.FS.RemoveAll(name) }
func (fs *countingFS) OpenDir(name string) (vfs.File, error) {
	f, err := fs.FS.OpenDir(name)
	if err != nil {
		return nil, err
	}
	return &countingFile{File: f, fs: fs, path: name}, nil
}

type countingFile struct {
	vfs.File
	fs   *countingFS
	path string
}

func (f *countingFile) Write(p []byte) (int, error) { f.fs.op(f.path); return f.File.Write(p) }
func (f *countingFile) Sync() error                 { f.fs.op(f.path); return f.File.Sync() }

// crashEveryStep runs step on a fresh copy of the state prepare builds,
// once for each filesystem operation under dir that step makes, and hands
// check what a power loss (nothing unsynced kept) just before that
// operation leaves; the last run crashes after step returns.
func crashEveryStep(t *testing.T, dir string, prepare func(t *testing.T, fs vfs.FS) func() error, check func(t *testing.T, crashed *vfs.MemFS, at int)) {
	t.Helper()
	for crashAt := 1; ; crashAt++ {
		mem := vfs.NewCrashableMem()
		var crashed *vfs.MemFS
		cfs := &countingFS{FS: mem, dir: dir, at: func(n int) {
			if n == crashAt {
				crashed = mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
			}
		}}
		step := prepare(t, cfs)
		cfs.n = 0
		err := step()
		last := crashed == nil
		if last {
			if err != nil {
				t.Fatal(err)
			}
			crashed = mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
		}
		t.Run(fmt.Sprintf("crash-before-op-%d", crashAt), func(t *testing.T) { check(t, crashed, crashAt) })
		if last {
			if crashAt < 5 {
				t.Fatalf("only %d operations counted under %s: the crash points miss the step", crashAt-1, dir)
			}
			return
		}
	}
}

// A crash at any point of a local snapshot leaves a store that, reopened,
// lists only checkpoints it can serve: an interrupted checkpoint is
// removed, never listed; every listed one streams exactly the engine's
// state at its index.
func TestListNeverReportsACheckpointItCannotServe(t *testing.T) {
	var want []byte
	crashEveryStep(t, testCheckpointDir, func(t *testing.T, fs vfs.FS) func() error {
		x, _ := openCheckpointFixture(t, fs)
		x.apply(t, 1, 60)
		x.takeSnapshot(t, 60, 1)
		x.apply(t, 61, 100)
		want = streamOfView(t, x.engine)
		return func() error { return x.trySnapshot(100, 1) }
	}, func(t *testing.T, crashed *vfs.MemFS, at int) {
		x, _ := openCheckpointFixture(t, crashed)
		metas := x.listed(t)
		if len(metas) == 0 {
			t.Fatal("no checkpoint listed: the first one, complete before the crash, was lost")
		}
		for _, m := range metas {
			meta, got := readAll(t, x.store, m.ID)
			if meta.Index != m.Index {
				t.Fatalf("listed %s at %d, opened at %d", m.ID, m.Index, meta.Index)
			}
			if m.Index == 100 && !bytes.Equal(got, want) {
				t.Fatalf("checkpoint at 100 does not stream the engine's state at 100")
			}
		}
		names, err := crashed.List(testCheckpointDir)
		if err != nil {
			t.Fatal(err)
		}
		var listed []string
		for _, m := range metas {
			listed = append(listed, m.ID)
		}
		for _, n := range names {
			if !slices.Contains(listed, n) {
				t.Fatalf("directory %s left on disk after the store reopened (listed: %v)", n, listed)
			}
		}
	})
}

// A restarted engine below its newest checkpoint (it lost writes the
// checkpoint holds) is restored from it: position and contents are the
// checkpoint's, and a crash at any point of the restore leaves a state
// that the next start restores the same way.
func TestLocalRestoreBringsTheEngineToTheCheckpointAcrossCrashes(t *testing.T) {
	var want []byte
	crashEveryStep(t, "db", func(t *testing.T, fs vfs.FS) func() error {
		// The engine durable at 40, then (on another copy of the disk) at
		// 90 with a checkpoint there: the engine's directory is then put
		// back as it was at 40, as a disk that lost the engine's writes
		// since would leave it.
		mem := vfs.NewCrashableMem()
		x, _ := openCheckpointFixture(t, mem)
		x.apply(t, 1, 40)
		x.takeSnapshot(t, 40, 1)
		at40 := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
		x.apply(t, 41, 90)
		x.takeSnapshot(t, 90, 1)
		want = streamOfView(t, x.engine)
		if err := copyTree(at40, "db", fs); err != nil {
			t.Fatal(err)
		}
		if err := copyTree(mem, testCheckpointDir, fs); err != nil {
			t.Fatal(err)
		}
		e, err := pebble.Open("db", pebble.Options{FS: fs, NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		f, err := NewFSM(e, FSMHooks{})
		if err != nil {
			t.Fatal(err)
		}
		if f.Applied().Index != 40 {
			t.Fatalf("engine at %d before the restore, want 40", f.Applied().Index)
		}
		files, err := snapstore.New(fs, "files", 2)
		if err != nil {
			t.Fatal(err)
		}
		c, err := OpenCheckpointStore(f, e, fs, testCheckpointDir, files, nil)
		if err != nil {
			t.Fatal(err)
		}
		return func() error {
			at, restored, err := c.RestoreLocal()
			if err == nil && (!restored || at.Index != 90 || f.Applied().Index != 90) {
				err = fmt.Errorf("RestoreLocal = %d, %v; state machine at %d; want 90", at.Index, restored, f.Applied().Index)
			}
			return err
		}
	}, func(t *testing.T, crashed *vfs.MemFS, at int) {
		x, _ := openCheckpointFixture(t, crashed)
		if got := x.fsm.Applied().Index; got != 90 {
			t.Fatalf("restarted at %d, want 90 (restored from the checkpoint)", got)
		}
		if got := streamOfView(t, x.engine); !bytes.Equal(got, want) {
			t.Fatal("the restored engine does not hold the checkpoint's state")
		}
	})
}

// copyTree copies dir from one memory filesystem to another, synced.
func copyTree(from *vfs.MemFS, dir string, to vfs.FS) error {
	names, err := from.List(dir)
	if err != nil {
		return err
	}
	if err := to.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, n := range names {
		p := from.PathJoin(dir, n)
		st, err := from.Stat(p)
		if err != nil {
			return err
		}
		if st.IsDir() {
			if err := copyTree(from, p, to); err != nil {
				return err
			}
			continue
		}
		src, err := from.Open(p)
		if err != nil {
			return err
		}
		dst, err := to.Create(p, vfs.WriteCategoryUnspecified)
		if err == nil {
			_, err = io.Copy(dst, src)
			err = errors.Join(err, dst.Sync(), dst.Close())
		}
		src.Close()
		if err != nil {
			return err
		}
	}
	d, err := to.OpenDir(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// What raft's Snapshot future opens (a backup) is the sink's ID: it opens
// the checkpoint the local snapshot took.
func TestTheSinkIDOfALocalSnapshotOpensItsCheckpoint(t *testing.T) {
	x := newCheckpointFixture(t)
	x.apply(t, 1, 30)
	snap, err := x.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink, err := x.store.Create(1, 30, 1, testConfig, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	want := streamOfView(t, x.engine)
	meta, got := readAll(t, x.store, sink.ID())
	if meta.Index != 30 || !bytes.Equal(got, want) {
		t.Fatalf("Open(%s): index %d, %d bytes; want the checkpoint at 30 (%d bytes)", sink.ID(), meta.Index, len(got), len(want))
	}
}
