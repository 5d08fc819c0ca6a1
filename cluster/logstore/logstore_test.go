package logstore

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/hashicorp/raft"
)

func openMem(t *testing.T, fs vfs.FS) *Store {
	t.Helper()
	s, err := Open("raft", Options{FS: fs})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func closeStore(t *testing.T, s *Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func entry(index, term uint64) *raft.Log {
	return &raft.Log{
		Index:      index,
		Term:       term,
		Type:       raft.LogCommand,
		Data:       []byte(fmt.Sprintf("data-%d", index)),
		Extensions: []byte{byte(index)},
		AppendedAt: time.Unix(1700000000, int64(index)),
	}
}

func entries(first, last, term uint64) []*raft.Log {
	var out []*raft.Log
	for i := first; i <= last; i++ {
		out = append(out, entry(i, term))
	}
	return out
}

func wantIndexes(t *testing.T, s *Store, first, last uint64) {
	t.Helper()
	f, err := s.FirstIndex()
	if err != nil || f != first {
		t.Fatalf("FirstIndex = %d, %v; want %d", f, err, first)
	}
	l, err := s.LastIndex()
	if err != nil || l != last {
		t.Fatalf("LastIndex = %d, %v; want %d", l, err, last)
	}
}

func sameLog(a, b *raft.Log) bool {
	return a.Index == b.Index && a.Term == b.Term && a.Type == b.Type &&
		reflect.DeepEqual(a.Data, b.Data) && reflect.DeepEqual(a.Extensions, b.Extensions) &&
		a.AppendedAt.Equal(b.AppendedAt)
}

func wantLog(t *testing.T, s *Store, want *raft.Log) {
	t.Helper()
	var got raft.Log
	if err := s.GetLog(want.Index, &got); err != nil {
		t.Fatalf("GetLog(%d): %v", want.Index, err)
	}
	if !sameLog(&got, want) {
		t.Fatalf("GetLog(%d) = %+v, want %+v", want.Index, got, *want)
	}
}

func wantMissing(t *testing.T, s *Store, index uint64) {
	t.Helper()
	var got raft.Log
	if err := s.GetLog(index, &got); err != raft.ErrLogNotFound {
		t.Fatalf("GetLog(%d) = %v, want exactly raft.ErrLogNotFound", index, err)
	}
}

func TestEmptyStore(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer closeStore(t, s)
	wantIndexes(t, s, 0, 0)
	wantMissing(t, s, 0)
	wantMissing(t, s, 1)

	v, err := s.Get([]byte("CurrentTerm"))
	if err == nil || err.Error() != "not found" || v != nil {
		t.Fatalf("Get miss = %q, %v; want nil, \"not found\"", v, err)
	}
	if !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("Get miss error %v is not ErrKeyNotFound", err)
	}
	u, err := s.GetUint64([]byte("CurrentTerm"))
	if err == nil || err.Error() != "not found" || u != 0 {
		t.Fatalf("GetUint64 miss = %d, %v; want 0, \"not found\"", u, err)
	}
	// raft's own check of a fresh node goes through the "not found" text.
	has, err := raft.HasExistingState(s, s, raft.NewInmemSnapshotStore())
	if err != nil || has {
		t.Fatalf("HasExistingState = %v, %v; want false, nil", has, err)
	}
	if !s.IsMonotonic() {
		t.Fatalf("IsMonotonic = false")
	}
}

func TestStoreAndGetLogs(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer closeStore(t, s)

	if err := s.StoreLog(entry(1, 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs(entries(2, 10, 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs(nil); err != nil {
		t.Fatalf("StoreLogs(nil): %v", err)
	}
	wantIndexes(t, s, 1, 10)
	for _, e := range entries(1, 10, 1) {
		wantLog(t, s, e)
	}
	wantMissing(t, s, 11)

	// Raft overwrites conflicting suffixes; the later entry wins.
	over := entry(10, 2)
	over.Type = raft.LogConfiguration
	over.Data = []byte("replaced")
	if err := s.StoreLogs([]*raft.Log{over}); err != nil {
		t.Fatal(err)
	}
	wantLog(t, s, over)

	// Edge cases of the encoding read back exactly: nil versus empty, zero
	// time, the largest index.
	edge := []*raft.Log{
		{Index: 20, Term: 3, Type: raft.LogNoop},
		{Index: 21, Term: 3, Type: raft.LogBarrier, Data: []byte{}, Extensions: []byte{}},
		{Index: ^uint64(0), Term: ^uint64(0), Type: raft.LogType(255), Data: bytes.Repeat([]byte{0xff}, 100_000)},
	}
	if err := s.StoreLogs(edge); err != nil {
		t.Fatal(err)
	}
	for _, e := range edge {
		var got raft.Log
		if err := s.GetLog(e.Index, &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, *e) {
			t.Fatalf("GetLog(%d) = %#v, want %#v", e.Index, got, *e)
		}
	}
	wantIndexes(t, s, 1, ^uint64(0))
}

func TestGetLogCopiesOut(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer closeStore(t, s)
	e := entry(1, 1)
	if err := s.StoreLog(e); err != nil {
		t.Fatal(err)
	}
	e.Data[0] = 'X' // the caller may reuse its buffers after StoreLogs
	var a, b raft.Log
	if err := s.GetLog(1, &a); err != nil {
		t.Fatal(err)
	}
	a.Data[0] = 'Y' // and the reader may scribble on what it got
	if err := s.GetLog(1, &b); err != nil {
		t.Fatal(err)
	}
	if string(b.Data) != "data-1" {
		t.Fatalf("stored data changed to %q", b.Data)
	}
}

func TestDeleteRange(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer closeStore(t, s)
	if err := s.StoreLogs(entries(1, 100, 1)); err != nil {
		t.Fatal(err)
	}
	// Inclusive at both ends, prefix compaction as raft does it.
	if err := s.DeleteRange(1, 40); err != nil {
		t.Fatal(err)
	}
	wantIndexes(t, s, 41, 100)
	wantMissing(t, s, 40)
	wantLog(t, s, entry(41, 1))

	// Suffix removal, as raft does on a conflict.
	if err := s.DeleteRange(91, 100); err != nil {
		t.Fatal(err)
	}
	wantIndexes(t, s, 41, 90)
	wantMissing(t, s, 91)
	wantLog(t, s, entry(90, 1))

	// A hole in the middle; both neighbours survive.
	if err := s.DeleteRange(50, 50); err != nil {
		t.Fatal(err)
	}
	wantMissing(t, s, 50)
	wantLog(t, s, entry(49, 1))
	wantLog(t, s, entry(51, 1))

	// min > max deletes nothing.
	if err := s.DeleteRange(60, 59); err != nil {
		t.Fatal(err)
	}
	wantLog(t, s, entry(60, 1))
	wantLog(t, s, entry(59, 1))

	// Everything, with the largest possible max (no overflow of max+1).
	if err := s.StoreLog(entry(^uint64(0), 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(0, ^uint64(0)); err != nil {
		t.Fatal(err)
	}
	wantIndexes(t, s, 0, 0)

	// The stable keyspace is untouched by log deletes.
	if err := s.Set([]byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(0, ^uint64(0)); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get([]byte("k")); err != nil || string(v) != "v" {
		t.Fatalf("Get after DeleteRange = %q, %v", v, err)
	}
}

func TestStable(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer closeStore(t, s)

	if err := s.Set([]byte("LastVoteCand"), []byte("node-2")); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get([]byte("LastVoteCand")); err != nil || string(v) != "node-2" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("node-3")); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get([]byte("LastVoteCand")); err != nil || string(v) != "node-3" {
		t.Fatalf("Get after overwrite = %q, %v", v, err)
	}
	// An empty value is present, not missing.
	if err := s.Set([]byte("empty"), nil); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get([]byte("empty")); err != nil || v == nil || len(v) != 0 {
		t.Fatalf("Get(empty) = %#v, %v; want []byte{}, nil", v, err)
	}
	// The empty key is a key like any other.
	if err := s.Set(nil, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get([]byte{}); err != nil || string(v) != "x" {
		t.Fatalf("Get(empty key) = %q, %v", v, err)
	}

	for _, v := range []uint64{0, 1, 1 << 40, ^uint64(0)} {
		if err := s.SetUint64([]byte("CurrentTerm"), v); err != nil {
			t.Fatal(err)
		}
		if got, err := s.GetUint64([]byte("CurrentTerm")); err != nil || got != v {
			t.Fatalf("GetUint64 = %d, %v; want %d", got, err, v)
		}
	}
	// A value that is not 8 bytes is reported, not misread.
	if _, err := s.GetUint64([]byte("LastVoteCand")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("GetUint64 of a 6-byte value: %v, want ErrCorrupt", err)
	}
	// Stable keys never show up as log entries, whatever their bytes.
	if err := s.Set([]byte{prefixLog, 0, 0, 0, 0, 0, 0, 0, 1}, []byte("not a log")); err != nil {
		t.Fatal(err)
	}
	wantIndexes(t, s, 0, 0)
}

func TestReopenKeepsEverything(t *testing.T) {
	fs := vfs.NewMem()
	s := openMem(t, fs)
	if err := s.StoreLogs(entries(1, 50, 2)); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(1, 9); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 2); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("n1")); err != nil {
		t.Fatal(err)
	}
	closeStore(t, s)

	s = openMem(t, fs)
	defer closeStore(t, s)
	wantIndexes(t, s, 10, 50)
	wantMissing(t, s, 9)
	for _, e := range entries(10, 50, 2) {
		wantLog(t, s, e)
	}
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 2 {
		t.Fatalf("CurrentTerm = %d, %v", v, err)
	}
	if v, err := s.Get([]byte("LastVoteCand")); err != nil || string(v) != "n1" {
		t.Fatalf("LastVoteCand = %q, %v", v, err)
	}
}

func TestOnDisk(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs(entries(1, 3, 1)); err != nil {
		t.Fatal(err)
	}
	closeStore(t, s)
	s, err = Open(dir, Options{FS: vfs.Default})
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore(t, s)
	wantIndexes(t, s, 1, 3)
}

func TestClosed(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	closeStore(t, s)
	var l raft.Log
	errs := map[string]error{
		"Close":       s.Close(),
		"StoreLogs":   s.StoreLogs(entries(1, 1, 1)),
		"StoreLogs0":  s.StoreLogs(nil),
		"GetLog":      s.GetLog(1, &l),
		"DeleteRange": s.DeleteRange(1, 2),
		"Set":         s.Set([]byte("k"), nil),
		"SetUint64":   s.SetUint64([]byte("k"), 1),
	}
	_, errs["FirstIndex"] = s.FirstIndex()
	_, errs["LastIndex"] = s.LastIndex()
	_, errs["Get"] = s.Get([]byte("k"))
	_, errs["GetUint64"] = s.GetUint64([]byte("k"))
	for op, err := range errs {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", op, err)
		}
	}
}

// TestSyncedWritesSurviveCrash checks that every write is durable when it
// returns: a crash that keeps only synced data still holds all of it.
func TestSyncedWritesSurviveCrash(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s := openMem(t, fs)
	defer closeStore(t, s)

	check := func(step string, f func(*Store)) {
		t.Helper()
		crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
		c := openMem(t, crashed)
		defer closeStore(t, c)
		t.Run(step, func(t *testing.T) { f(c) })
	}

	if err := s.StoreLogs(entries(1, 20, 1)); err != nil {
		t.Fatal(err)
	}
	check("StoreLogs", func(c *Store) {
		wantIndexes(t, c, 1, 20)
		for _, e := range entries(1, 20, 1) {
			wantLog(t, c, e)
		}
	})
	if err := s.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("n3")); err != nil {
		t.Fatal(err)
	}
	check("Set", func(c *Store) {
		if v, err := c.GetUint64([]byte("CurrentTerm")); err != nil || v != 7 {
			t.Fatalf("CurrentTerm = %d, %v", v, err)
		}
		if v, err := c.Get([]byte("LastVoteCand")); err != nil || string(v) != "n3" {
			t.Fatalf("LastVoteCand = %q, %v", v, err)
		}
	})
	if err := s.DeleteRange(1, 5); err != nil {
		t.Fatal(err)
	}
	check("DeleteRange", func(c *Store) {
		wantIndexes(t, c, 6, 20)
		wantMissing(t, c, 5)
	})
}

// cloner takes crash clones of a crashable MemFS before every filesystem
// operation that goes through the errorfs wrapper, while armed: one for
// each percentage of unsynced data kept. It never injects an error.
type cloner struct {
	mem      *vfs.MemFS
	rng      *rand.Rand
	percents []int

	mu     sync.Mutex
	armed  bool
	clones []*vfs.MemFS
}

func (c *cloner) MaybeError(errorfs.Op) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.armed {
		for _, p := range c.percents {
			c.clones = append(c.clones, c.mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: p, RNG: c.rng}))
		}
	}
	return nil
}

func (c *cloner) String() string { return "cloner" }

func (c *cloner) arm(on bool) []*vfs.MemFS {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = on
	return c.clones
}

// TestStoreLogsAtomicAcrossCrash crashes at every filesystem operation of
// one StoreLogs call and checks that each crashed state holds either none
// or all of the batch, never a part of it. The large batch exceeds half
// the memtable, which Pebble writes as a flushable batch (more operations,
// more crash points). It keeps either no or all unsynced data: a torn WAL
// chunk makes Pebble's recovery try every single-bit flip of it
// (bitflip.CheckSliceForBitFlip), about 0.1 s per torn 32 KB chunk, and the
// small batch already covers torn tails.
func TestStoreLogsAtomicAcrossCrash(t *testing.T) {
	for _, tc := range []struct {
		name     string
		count    uint64
		size     int
		percents []int
	}{
		{"small", 50, 100, []int{0, 30, 70}},
		{"large", 140, 4 << 10, []int{0, 100}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := vfs.NewCrashableMem()
			cl := &cloner{mem: mem, rng: rand.New(rand.NewPCG(1, 2)), percents: tc.percents}
			s, err := Open("raft", Options{FS: errorfs.Wrap(mem, cl)})
			if err != nil {
				t.Fatal(err)
			}
			defer closeStore(t, s)
			if err := s.StoreLogs(entries(1, 10, 1)); err != nil {
				t.Fatal(err)
			}
			batch := entries(11, 10+tc.count, 1)
			for _, e := range batch {
				e.Data = bytes.Repeat([]byte{byte(e.Index)}, tc.size)
			}
			cl.arm(true)
			if err := s.StoreLogs(batch); err != nil {
				t.Fatal(err)
			}
			clones := cl.arm(false)
			clones = append(clones, mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0}))
			if len(clones) < 3 {
				t.Fatalf("only %d crash points; the wrapper saw no operations", len(clones))
			}
			old, whole := 0, 0
			for i, fs := range clones {
				c := openMem(t, fs)
				last, err := c.LastIndex()
				if err != nil {
					t.Fatal(err)
				}
				switch last {
				case 10:
					old++
					wantMissing(t, c, 11)
					if i == len(clones)-1 {
						t.Fatalf("the state after StoreLogs returned lacks the batch")
					}
				case 10 + tc.count:
					whole++
					for _, e := range batch {
						wantLog(t, c, e)
					}
				default:
					t.Fatalf("crash point %d: LastIndex %d: a partial batch survived", i, last)
				}
				wantLog(t, c, entry(10, 1))
				closeStore(t, c)
			}
			if old == 0 {
				t.Fatalf("no crash point before the batch: the test did not crash early enough")
			}
			t.Logf("%d crash points: %d without the batch, %d with all of it", len(clones), old, whole)
		})
	}
}

// TestPebbleFatalIsAnError makes the WAL fail under a commit. Pebble then
// calls Logger.Fatalf, which by default would exit the process; here the
// write must return ErrFatal, and so must everything after it.
func TestPebbleFatalIsAnError(t *testing.T) {
	mem := vfs.NewMem()
	var failing sync.Mutex
	fail := false
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		failing.Lock()
		defer failing.Unlock()
		if fail && op.Kind.ReadOrWrite() == errorfs.OpIsWrite {
			return errorfs.ErrInjected
		}
		return nil
	})
	s, err := Open("raft", Options{FS: errorfs.Wrap(mem, inj)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs(entries(1, 3, 1)); err != nil {
		t.Fatal(err)
	}
	failing.Lock()
	fail = true
	failing.Unlock()
	err = s.StoreLogs(entries(4, 6, 1))
	if !errors.Is(err, ErrFatal) {
		t.Fatalf("StoreLogs with a failing WAL: %v, want ErrFatal", err)
	}
	if _, err := s.LastIndex(); !errors.Is(err, ErrFatal) {
		t.Fatalf("LastIndex after a fatal error: %v, want ErrFatal", err)
	}
	// Close may report Pebble's own trouble too; it must not hang or exit.
	if err := s.Close(); err == nil {
		t.Fatalf("Close after a fatal error returned nil")
	}
}
