package pebble

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"

	pdb "github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/raftsnap/testbed/engines"
)

func TestWriteGetDeleteAppliedAndReopen(t *testing.T) {
	fs := vfs.NewMem()
	e := mustOpen(t, fs)

	if a, err := e.Applied(); err != nil || !a.Equal(engines.Applied{}) {
		t.Fatalf("new engine Applied = %+v, %v; want zero", a, err)
	}
	if _, found, err := e.Get([]byte("a")); err != nil || found {
		t.Fatalf("Get on new engine: found=%v err=%v", found, err)
	}

	mustWrite(t, e, at(1, 1, "cfg1"), "a", "1", "b", "2", "c", "3")
	// Ops apply in order: the later put of b wins, and c is deleted.
	mustWrite(t, e, at(2, 1, "cfg2"), "b", "20", "c", "", "b", "21", "zz", "26")
	// Deleting an absent key is not an error.
	mustWrite(t, e, at(3, 2, ""), "absent", "")

	want := state{
		pairs:   []pair{{"a", "1"}, {"b", "21"}, {"zz", "26"}},
		applied: at(3, 2, ""),
	}
	if got := mustState(t, e); !got.equal(want) {
		t.Fatalf("state = %v\nwant %v", got, want)
	}

	v, found, err := e.Get([]byte("b"))
	if err != nil || !found || string(v) != "21" {
		t.Fatalf("Get(b) = %q, %v, %v", v, found, err)
	}
	// Get returns a copy: scribbling on it changes nothing stored.
	copy(v, "XX")
	if v2, _, _ := e.Get([]byte("b")); string(v2) != "21" {
		t.Fatalf("Get(b) after modifying a returned value = %q", v2)
	}
	if _, found, err := e.Get([]byte("c")); err != nil || found {
		t.Fatalf("deleted key c: found=%v err=%v", found, err)
	}

	mustWrite(t, e, at(4, 2, "cfg4"), "d", "4")
	want = state{pairs: []pair{{"a", "1"}, {"b", "21"}, {"d", "4"}, {"zz", "26"}}, applied: at(4, 2, "cfg4")}
	mustClose(t, e)
	e = mustOpen(t, fs)
	if got := mustState(t, e); !got.equal(want) {
		t.Fatalf("after reopen state = %v\nwant %v", got, want)
	}
	// And once more after a flush, so the data comes from sstables.
	if err := e.db.Flush(); err != nil {
		t.Fatal(err)
	}
	mustClose(t, e)
	e = mustOpen(t, fs)
	defer mustClose(t, e)
	if got := mustState(t, e); !got.equal(want) {
		t.Fatalf("after flush and reopen state = %v\nwant %v", got, want)
	}
}

func TestBadInputIsRejectedBeforeAnythingIsWritten(t *testing.T) {
	e := mustOpen(t, vfs.NewMem())
	defer mustClose(t, e)
	mustWrite(t, e, at(1, 1, "c"), "k", "v")
	before := mustState(t, e)

	big := make([]byte, engines.MaxKeyLen+1)
	cases := []struct {
		name string
		ops  []engines.Op
		want error
	}{
		{"empty key put", []engines.Op{{Kind: engines.OpPut, Key: []byte("ok"), Value: []byte("1")}, {Kind: engines.OpPut, Key: nil, Value: []byte("x")}}, engines.ErrEmptyKey},
		{"empty key delete", []engines.Op{{Kind: engines.OpPut, Key: []byte("ok"), Value: []byte("1")}, {Kind: engines.OpDelete, Key: []byte{}}}, engines.ErrEmptyKey},
		{"key too large", []engines.Op{{Kind: engines.OpPut, Key: []byte("ok"), Value: []byte("1")}, {Kind: engines.OpPut, Key: big, Value: []byte("x")}}, engines.ErrTooLarge},
		{"value too large", []engines.Op{{Kind: engines.OpPut, Key: []byte("ok"), Value: []byte("1")}, {Kind: engines.OpPut, Key: []byte("v"), Value: make([]byte, engines.MaxValueLen+1)}}, engines.ErrTooLarge},
		{"unknown op", []engines.Op{{Kind: engines.OpPut, Key: []byte("ok"), Value: []byte("1")}, {Kind: 0, Key: []byte("v")}}, ErrUnknownOp},
	}
	for _, c := range cases {
		err := e.Write(engines.Batch{Ops: c.ops, Applied: at(9, 9, "")})
		if !errors.Is(err, c.want) {
			t.Errorf("%s: Write error = %v, want %v", c.name, err, c.want)
		}
	}
	if got := mustState(t, e); !got.equal(before) {
		t.Fatalf("rejected batches changed the state: %v\nwant %v", got, before)
	}

	if _, _, err := e.Get(nil); !errors.Is(err, engines.ErrEmptyKey) {
		t.Errorf("Get(empty) error = %v, want ErrEmptyKey", err)
	}
	if _, _, err := e.Get(big); !errors.Is(err, engines.ErrTooLarge) {
		t.Errorf("Get(too large) error = %v, want ErrTooLarge", err)
	}
	if err := e.Install(source([]pair{{"a", "1"}, {"", "2"}}), at(9, 9, "")); !errors.Is(err, engines.ErrEmptyKey) {
		t.Errorf("Install with empty key error = %v, want ErrEmptyKey", err)
	}
	if err := e.Install(source([]pair{{"a", "1"}, {string(big), "2"}}), at(9, 9, "")); !errors.Is(err, engines.ErrTooLarge) {
		t.Errorf("Install with too large key error = %v, want ErrTooLarge", err)
	}
	if got := mustState(t, e); !got.equal(before) {
		t.Fatalf("rejected installs changed the state: %v\nwant %v", got, before)
	}

	// A key exactly at the limit is accepted.
	maxKey := bytes.Repeat([]byte{'k'}, engines.MaxKeyLen)
	mustWrite(t, e, at(2, 1, ""), string(maxKey), "at the limit")
	if v, found, err := e.Get(maxKey); err != nil || !found || string(v) != "at the limit" {
		t.Fatalf("Get(max key) = %q, %v, %v", v, found, err)
	}
}

func TestAppliedEncoding(t *testing.T) {
	for _, a := range []engines.Applied{{}, at(1, 2, ""), at(1<<63, 1<<40, "configuration bytes")} {
		b, err := encodeApplied(a)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeApplied(b)
		if err != nil || !got.Equal(a) {
			t.Fatalf("round trip of %+v = %+v, %v", a, got, err)
		}
		if len(a.Config) > 0 {
			b[len(b)-1] ^= 0xFF
			if got.Config[len(got.Config)-1] != a.Config[len(a.Config)-1] {
				t.Fatalf("decoded config shares memory with the record")
			}
		}
	}
	good, _ := encodeApplied(at(7, 3, "cfg"))
	garbage := map[string][]byte{
		"empty":             nil,
		"truncated header":  good[:10],
		"truncated config":  good[:len(good)-1],
		"trailing bytes":    append(append([]byte(nil), good...), 0),
		"unknown version":   append([]byte{2}, good[1:]...),
		"huge config count": append(append([]byte(nil), good[:17]...), 0xFF, 0xFF, 0xFF, 0xFF, 'c', 'f', 'g'),
	}
	for name, b := range garbage {
		if _, err := decodeApplied(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: decode error = %v, want ErrCorrupt", name, err)
		}
	}
}

func TestCorruptAppliedIsReportedNotPanicked(t *testing.T) {
	e := mustOpen(t, vfs.NewMem())
	defer mustClose(t, e)
	if err := e.db.Set(metaKey, []byte("garbage"), pdb.Sync); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Applied(); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Applied error = %v, want ErrCorrupt", err)
	}
	if _, err := e.View(); !errors.Is(err, ErrCorrupt) {
		t.Errorf("View error = %v, want ErrCorrupt", err)
	}
}

// TestViewIsPointInTime takes a view over contents spread across sstables
// and the memtable, then writes, deletes and installs; the view must still
// show exactly the old contents and position, on every Iter, including from
// another goroutine.
func TestViewIsPointInTime(t *testing.T) {
	e := mustOpen(t, vfs.NewMem())
	defer mustClose(t, e)
	mustInstall(t, e, at(10, 2, "old"), sortedPairs("k", "installed", 50))
	mustWrite(t, e, at(11, 2, "old"), "k000001", "rewritten", "k000002", "", "extra", "x")
	if err := e.db.Flush(); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, e, at(12, 2, "old"), "k000003", "in memtable", "k000004", "")
	old := mustState(t, e)

	v, err := e.View()
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, e, at(13, 3, "new"), "k000005", "after view", "k000006", "", "zzz", "new")
	if got, err := readView(v); err != nil || !got.equal(old) {
		t.Fatalf("view after writes = %v, %v\nwant %v", got, err, old)
	}
	mustInstall(t, e, at(20, 4, "installed"), sortedPairs("n", "new", 30))
	mustWrite(t, e, at(21, 4, "installed"), "n000001", "")
	if err := e.db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Compact(t.Context(), []byte("a"), []byte("z"), true); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if got, err := readView(v); err != nil || !got.equal(old) {
				t.Errorf("view after install, flush and compaction = %v, %v\nwant %v", got, err, old)
			}
		})
	}
	// Writes go on while the view is read elsewhere.
	for i := range 20 {
		mustWrite(t, e, at(uint64(22+i), 4, "installed"), "w", strings.Repeat("x", i+1))
	}
	wg.Wait()

	// The engine itself moved on.
	now := mustState(t, e)
	if now.applied.Index != 41 || len(now.pairs) != 30 {
		t.Fatalf("engine after install and writes: %v", now)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Iter(); !errors.Is(err, engines.ErrClosed) {
		t.Fatalf("Iter on closed view error = %v, want ErrClosed", err)
	}
	if err := v.Close(); !errors.Is(err, engines.ErrClosed) {
		t.Fatalf("second view Close error = %v, want ErrClosed", err)
	}
}

// TestPebbleSnapshotIsEmptiedByExcise records why views are iterators: a
// pebble.Snapshot open across an IngestAndExcise loses the excised keys,
// while an Iterator created at the same moment keeps them. If Pebble changes
// this, the test says so (and Snapshot might then be used instead).
func TestPebbleSnapshotIsEmptiedByExcise(t *testing.T) {
	e := mustOpen(t, vfs.NewMem())
	defer mustClose(t, e)
	mustInstall(t, e, at(1, 1, ""), sortedPairs("k", "old", 10))
	mustWrite(t, e, at(2, 1, ""), "m1", "in memtable")

	snap := e.db.NewSnapshot()
	defer snap.Close()
	v, err := e.View()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	mustInstall(t, e, at(3, 1, ""), sortedPairs("n", "new", 10))
	// The ingest overlapped the memtable, so it was queued as a flushable
	// whose excise only reaches the LSM when it is flushed.
	if err := e.db.Flush(); err != nil {
		t.Fatal(err)
	}

	visible := 0
	for _, k := range []string{"k000000", "k000005", "m1"} {
		_, closer, err := snap.Get(dataKey([]byte(k)))
		if err == nil {
			visible++
			closer.Close()
		} else if !errors.Is(err, pdb.ErrNotFound) {
			t.Fatal(err)
		}
	}
	if visible != 0 {
		t.Errorf("pebble.Snapshot kept %d of 3 excised keys: Pebble no longer empties snapshots on excise", visible)
	}
	got, err := readView(v)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.pairs) != 11 || got.applied.Index != 2 {
		t.Fatalf("iterator-based view lost data across the excise: %v", got)
	}
}

func TestInstallReplacesEverything(t *testing.T) {
	fs := vfs.NewMem()
	// Tiny tables so that the install spans many staged sstables.
	e, err := Open("db", Options{FS: fs, InstallFileSize: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, e, at(1, 1, ""), "a", "1", "k000003", "old", "zzzz", "z")
	if err := e.db.Flush(); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, e, at(2, 1, ""), "b", "2", "k000005", "old")

	want := state{pairs: sortedPairs("k", "new", 2000), applied: at(100, 7, "config")}
	mustInstall(t, e, want.applied, want.pairs)
	if got := mustState(t, e); !got.equal(want) {
		t.Fatalf("after install: %d pairs, applied %+v; want %d pairs, applied %+v", len(got.pairs), got.applied, len(want.pairs), want.applied)
	}
	for _, k := range []string{"a", "b", "zzzz"} {
		if _, found, err := e.Get([]byte(k)); err != nil || found {
			t.Errorf("key %q absent from the source survived the install (found=%v, err=%v)", k, found, err)
		}
	}
	if names, err := stagingLeftovers(fs, "db"); err != nil || len(names) != 0 {
		t.Errorf("staging leftovers after install: %v, %v", names, err)
	}
	mustClose(t, e)
	e = mustOpen(t, fs)
	if got := mustState(t, e); !got.equal(want) {
		t.Fatalf("install did not survive reopen")
	}

	// An empty source leaves no keys at all.
	mustInstall(t, e, at(200, 8, ""), nil)
	if got, want := mustState(t, e), (state{applied: at(200, 8, "")}); !got.equal(want) {
		t.Fatalf("after empty install: %v", got)
	}
	mustClose(t, e)
}

func TestFailedInstallLeavesEngineUnchanged(t *testing.T) {
	fs := vfs.NewMem()
	e, err := Open("db", Options{FS: fs, InstallFileSize: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer mustClose(t, e)
	mustInstall(t, e, at(5, 1, "old"), sortedPairs("k", "old", 300))
	mustWrite(t, e, at(6, 1, "old"), "k000007", "rewritten", "x", "in memtable")
	before := mustState(t, e)

	sourceErr := errors.New("stream broke")
	newPairs := sortedPairs("n", "new", 1000)
	failing := source(newPairs)
	failing.failAt, failing.err = 700, sourceErr // after several staged tables
	unordered := append(sortedPairs("n", "new", 500), pair{"n000100", "again"})
	duplicate := append(sortedPairs("n", "new", 500), pair{"n000499", "again"})
	bigValue := append(sortedPairs("n", "new", 10), pair{"zz", strings.Repeat("v", engines.MaxValueLen+1)})

	cases := []struct {
		name string
		src  engines.Iterator
		want error
	}{
		{"source error", failing, sourceErr},
		{"keys out of order", source(unordered), engines.ErrKeyOrder},
		{"duplicate key", source(duplicate), engines.ErrKeyOrder},
		{"value too large", source(bigValue), engines.ErrTooLarge},
	}
	for _, c := range cases {
		err := e.Install(c.src, at(99, 9, "new"))
		if !errors.Is(err, c.want) {
			t.Errorf("%s: Install error = %v, want %v", c.name, err, c.want)
		}
		if got := mustState(t, e); !got.equal(before) {
			t.Errorf("%s: failed install changed the state", c.name)
		}
		if names, err := stagingLeftovers(fs, "db"); err != nil || len(names) != 0 {
			t.Errorf("%s: staging leftovers: %v, %v", c.name, names, err)
		}
	}
}

// TestFailedIngestLeavesEngineUnchanged makes the ingest itself fail (moving
// the staged tables into the DB directory) after they were written.
func TestFailedIngestLeavesEngineUnchanged(t *testing.T) {
	mem := vfs.NewMem()
	// Pebble falls back from a failed link to a copy: fail both.
	failLinks := &errorfs.Toggle{Injector: failWhen(func(op errorfs.Op) bool {
		return op.Kind == errorfs.OpLink || (op.Kind == errorfs.OpCreate && strings.HasSuffix(op.Path, ".sst") && !strings.Contains(op.Path, stagingDirName))
	})}
	fs := errorfs.Wrap(mem, failLinks)
	e := mustOpen(t, fs)
	defer mustClose(t, e)
	mustInstall(t, e, at(5, 1, "old"), sortedPairs("k", "old", 100))
	before := mustState(t, e)

	failLinks.On()
	err := e.Install(source(sortedPairs("n", "new", 100)), at(9, 9, ""))
	failLinks.Off()
	if !errors.Is(err, errInjected) {
		t.Fatalf("Install error = %v, want the injected link error", err)
	}
	if got := mustState(t, e); !got.equal(before) {
		t.Fatalf("failed ingest changed the state")
	}
	if names, err := stagingLeftovers(fs, "db"); err != nil || len(names) != 0 {
		t.Errorf("staging leftovers: %v, %v", names, err)
	}
	// The engine still works.
	mustInstall(t, e, at(10, 9, ""), sortedPairs("n", "new", 100))
}

func TestOpenRemovesStagingLeftovers(t *testing.T) {
	fs := vfs.NewMem()
	e := mustOpen(t, fs)
	mustWrite(t, e, at(1, 1, ""), "a", "1")
	want := mustState(t, e)
	mustClose(t, e)

	dir := fs.PathJoin("db", stagingDirName, "7")
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := fs.Create(fs.PathJoin(dir, "0.sst"), vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("half a table")); err != nil {
		t.Fatal(err)
	}
	f.Close()

	e = mustOpen(t, fs)
	defer mustClose(t, e)
	if names, err := stagingLeftovers(fs, "db"); err != nil || len(names) != 0 {
		t.Errorf("staging leftovers after Open: %v, %v", names, err)
	}
	if got := mustState(t, e); !got.equal(want) {
		t.Errorf("state after Open = %v, want %v", got, want)
	}
}

func TestCloseRules(t *testing.T) {
	e := mustOpen(t, vfs.NewMem())
	mustWrite(t, e, at(1, 1, ""), "a", "1")
	v, err := e.View()
	if err != nil {
		t.Fatal(err)
	}
	it, err := v.Iter()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); !errors.Is(err, ErrViewsOpen) {
		t.Fatalf("Close with an open view error = %v, want ErrViewsOpen", err)
	}
	// The engine is still usable.
	mustWrite(t, e, at(2, 1, ""), "b", "2")
	if !it.Next() || string(it.Key()) != "a" {
		t.Fatalf("view iterator after refused Close: %q", it.Key())
	}
	// Closing the view releases the iterator left open, which then reports
	// that it was cut short.
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if it.Next() || !errors.Is(it.Err(), engines.ErrClosed) {
		t.Fatalf("iterator of a closed view: Next true or Err = %v", it.Err())
	}
	mustClose(t, e)

	if err := e.Close(); !errors.Is(err, engines.ErrClosed) {
		t.Errorf("second Close error = %v", err)
	}
	if _, _, err := e.Get([]byte("a")); !errors.Is(err, engines.ErrClosed) {
		t.Errorf("Get after Close error = %v", err)
	}
	if err := e.Write(engines.Batch{Ops: []engines.Op{{Kind: engines.OpPut, Key: []byte("a"), Value: []byte("1")}}}); !errors.Is(err, engines.ErrClosed) {
		t.Errorf("Write after Close error = %v", err)
	}
	if _, err := e.Applied(); !errors.Is(err, engines.ErrClosed) {
		t.Errorf("Applied after Close error = %v", err)
	}
	if _, err := e.View(); !errors.Is(err, engines.ErrClosed) {
		t.Errorf("View after Close error = %v", err)
	}
	if err := e.Install(source(nil), at(3, 1, "")); !errors.Is(err, engines.ErrClosed) {
		t.Errorf("Install after Close error = %v", err)
	}
}

// TestFatalCommitErrorFailsEngineWithoutExiting makes the WAL write of a
// commit fail: Pebble calls Logger.Fatalf, whose default would exit the
// process. The engine must instead report ErrFailed, from then on.
func TestFatalCommitErrorFailsEngineWithoutExiting(t *testing.T) {
	mem := vfs.NewMem()
	failWAL := &errorfs.Toggle{Injector: failWhen(func(op errorfs.Op) bool {
		return strings.HasSuffix(op.Path, ".log") && op.Kind.ReadOrWrite() == errorfs.OpIsWrite
	})}
	e := mustOpen(t, errorfs.Wrap(mem, failWAL))
	mustWrite(t, e, at(1, 1, ""), "a", "1")

	failWAL.On()
	err := e.Write(engines.Batch{Ops: []engines.Op{{Kind: engines.OpPut, Key: []byte("b"), Value: []byte("2")}}, Applied: at(2, 1, "")})
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("Write with a failing WAL error = %v, want ErrFailed", err)
	}
	failWAL.Off()
	if _, _, err := e.Get([]byte("a")); !errors.Is(err, ErrFailed) {
		t.Fatalf("Get after a fatal error = %v, want ErrFailed", err)
	}
	// Close still releases what it can; its error carries ErrFailed.
	if err := e.Close(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Close after a fatal error = %v, want ErrFailed", err)
	}
}

var errInjected = errors.New("injected I/O error")

// failWhen is an errorfs injector failing the operations match selects.
func failWhen(match func(errorfs.Op) bool) errorfs.Injector {
	return errorfs.InjectorFunc(func(op errorfs.Op) error {
		if match(op) {
			return errInjected
		}
		return nil
	})
}
