package bbolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"sync"
	"testing"

	"github.com/raftsnap/testbed/engines"
	bolt "go.etcd.io/bbolt"
)

func TestViewIsPointInTime(t *testing.T) {
	e, _ := openTest(t, Options{NoSync: true, StagingTxBytes: 4 << 10})
	old := genPairs(2000, "k", "old")
	oldApplied := engines.Applied{Index: 10, Term: 1, Config: []byte("old")}
	writePairs(t, e, old, oldApplied)

	v, err := e.View()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()

	newer := genPairs(3000, "k", "new")
	newApplied := engines.Applied{Index: 20, Term: 2, Config: []byte("new")}
	changed := make(chan error, 1)
	go func() {
		b := engines.Batch{Applied: engines.Applied{Index: 11, Term: 1}}
		b.Put([]byte("k000001"), []byte("overwritten"))
		b.Put([]byte("zzz"), []byte("added"))
		b.Delete([]byte("k000002"))
		if err := e.Write(b); err != nil {
			changed <- err
			return
		}
		changed <- e.Install(newSliceIter(newer), newApplied)
	}()

	// Read the view on this goroutine while the other one changes
	// everything, then once more afterwards.
	during := readAll(t, v)
	if err := <-changed; err != nil {
		t.Fatalf("concurrent changes: %v", err)
	}
	after := readAll(t, v)
	for name, got := range map[string][]kv{"during": during, "after": after} {
		if !equalPairs(got, old) {
			t.Fatalf("view read %s the changes: %d pairs, first difference at %d", name, len(got), firstDiff(got, old))
		}
	}
	if !v.Applied().Equal(oldApplied) {
		t.Fatalf("view Applied = %+v, want %+v", v.Applied(), oldApplied)
	}
	// The engine itself moved on.
	checkState(t, e, newer, newApplied)

	// A view may also be read from another goroutine than the one that
	// took it.
	v2, err := e.View()
	if err != nil {
		t.Fatal(err)
	}
	result := make(chan []kv)
	go func() { result <- readAll(t, v2) }()
	if got := <-result; !equalPairs(got, newer) {
		t.Fatalf("view read on another goroutine: %d pairs, want %d", len(got), len(newer))
	}
	if err := v2.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestInstallReplacesEverything(t *testing.T) {
	e, path := openTest(t, Options{NoSync: true, StagingTxBytes: 4 << 10})
	old := genPairs(1000, "a", "old")
	old = append(old, genPairs(500, "m", "old")...)
	writePairs(t, e, old, engines.Applied{Index: 3, Term: 1})

	// Overlaps the old keys partly (the "m" prefix), drops the "a" keys.
	src := append(genPairs(700, "m", "new"), genPairs(800, "z", "new")...)
	applied := engines.Applied{Index: 99, Term: 4, Config: []byte("members")}
	if err := e.Install(newSliceIter(src), applied); err != nil {
		t.Fatalf("Install: %v", err)
	}
	checkState(t, e, src, applied)
	if _, found, _ := e.Get([]byte("a000000")); found {
		t.Fatal("key absent from the source survived the install")
	}
	if s := stagingBuckets(t, e); len(s) != 0 {
		t.Fatalf("staging buckets left: %q", s)
	}

	// Writes land on the installed data, and everything survives a reopen.
	b := engines.Batch{Applied: engines.Applied{Index: 100, Term: 4, Config: []byte("members")}}
	b.Put([]byte("m000000"), []byte("after"))
	if err := e.Write(b); err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(src)
	want[0] = kv{[]byte("m000000"), []byte("after")}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e2 := openAt(t, path, Options{})
	checkState(t, e2, want, b.Applied)

	// An empty source empties the engine.
	empty := engines.Applied{Index: 200, Term: 5}
	if err := e2.Install(newSliceIter(nil), empty); err != nil {
		t.Fatalf("Install of nothing: %v", err)
	}
	checkState(t, e2, nil, empty)
}

func TestFailedInstallLeavesEngineUntouched(t *testing.T) {
	var commits int
	e, _ := openTest(t, Options{NoSync: true, StagingTxBytes: 4 << 10, OnInstallCommit: func(bool) { commits++ }})
	old := genPairs(1500, "k", "old")
	oldApplied := engines.Applied{Index: 10, Term: 2, Config: []byte("old")}
	writePairs(t, e, old, oldApplied)
	newer := genPairs(3000, "k", "new")
	newApplied := engines.Applied{Index: 50, Term: 3}

	errSource := errors.New("source broke")
	failing := newSliceIter(newer)
	failing.failAt, failing.failErr = 2500, errSource

	outOfOrder := slices.Clone(newer)
	outOfOrder[2000], outOfOrder[2001] = outOfOrder[2001], outOfOrder[2000]
	duplicate := slices.Clone(newer)
	duplicate[2001].key = duplicate[2000].key

	cases := []struct {
		name string
		src  engines.Iterator
		want error
	}{
		{"source error", failing, errSource},
		{"out of order", newSliceIter(outOfOrder), engines.ErrKeyOrder},
		{"duplicate key", newSliceIter(duplicate), engines.ErrKeyOrder},
	}
	for _, c := range cases {
		commits = 0
		err := e.Install(c.src, newApplied)
		if !errors.Is(err, c.want) {
			t.Fatalf("%s: Install error %v, want %v", c.name, err, c.want)
		}
		// The failure came after several staging commits, so the test
		// exercises the clean-up and not just an early return.
		if commits < 3 {
			t.Fatalf("%s: only %d install commits before the failure", c.name, commits)
		}
		checkState(t, e, old, oldApplied)
		if s := stagingBuckets(t, e); len(s) != 0 {
			t.Fatalf("%s: staging buckets left: %q", c.name, s)
		}
	}
	// And the engine still installs fine afterwards.
	if err := e.Install(newSliceIter(newer), newApplied); err != nil {
		t.Fatal(err)
	}
	checkState(t, e, newer, newApplied)
}

func TestConcurrentInstalls(t *testing.T) {
	e, _ := openTest(t, Options{NoSync: true, StagingTxBytes: 4 << 10})
	a := genPairs(2000, "a", "A")
	b := genPairs(2000, "b", "B")
	appliedA := engines.Applied{Index: 1}
	appliedB := engines.Applied{Index: 2}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Go(func() { errs[0] = e.Install(newSliceIter(a), appliedA) })
	wg.Go(func() { errs[1] = e.Install(newSliceIter(b), appliedB) })
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	got, applied := snapshot(t, e)
	switch {
	case applied.Equal(appliedA) && equalPairs(got, a):
	case applied.Equal(appliedB) && equalPairs(got, b):
	default:
		t.Fatalf("after two concurrent installs: %d pairs with Applied %+v, neither install's state", len(got), applied)
	}
	if s := stagingBuckets(t, e); len(s) != 0 {
		t.Fatalf("staging buckets left: %q", s)
	}
}

// crashCopy is the database file as a process killed at one step of an
// install would leave it.
type crashCopy struct {
	path string
	// afterSwap says whether the copy was taken once the swap committed.
	afterSwap bool
	step      string
}

// crashCopier copies the file of an open engine; a killed process keeps
// exactly what bbolt committed, which is what the file holds between
// transactions.
type crashCopier struct {
	t       *testing.T
	src     string
	dir     string
	swapped bool
	copies  []crashCopy
}

func (c *crashCopier) copy(step string) {
	c.t.Helper()
	data, err := os.ReadFile(c.src)
	if err != nil {
		c.t.Fatalf("copy database: %v", err)
	}
	path := filepath.Join(c.dir, fmt.Sprintf("crash-%03d", len(c.copies)))
	if err := os.WriteFile(path, data, 0o600); err != nil {
		c.t.Fatalf("copy database: %v", err)
	}
	c.copies = append(c.copies, crashCopy{path: path, afterSwap: c.swapped, step: step})
}

// copyingIter copies the database every `every` pairs, and once more when
// the source is exhausted, just before the final staging flush and swap.
type copyingIter struct {
	engines.Iterator
	copier *crashCopier
	every  int
	n      int
}

func (it *copyingIter) Next() bool {
	ok := it.Iterator.Next()
	if ok {
		it.n++
		if it.n%it.every == 0 {
			it.copier.copy(fmt.Sprintf("source pair %d", it.n))
		}
	} else {
		it.copier.copy("source exhausted")
	}
	return ok
}

func TestInstallCrashAtEveryStep(t *testing.T) {
	dir := t.TempDir()
	copier := &crashCopier{t: t, src: filepath.Join(dir, "db"), dir: t.TempDir()}
	commits := 0
	// NoSync: a killed process leaves what reached the page cache, which
	// is what os.ReadFile sees, synced or not.
	e := openAt(t, copier.src, Options{
		NoSync:         true,
		StagingTxBytes: 4 << 10,
		OnInstallCommit: func(swapped bool) {
			commits++
			copier.swapped = copier.swapped || swapped
			copier.copy(fmt.Sprintf("install commit %d (swapped=%v)", commits, swapped))
		},
	})
	old := genPairs(2000, "k", "old")
	oldApplied := engines.Applied{Index: 100, Term: 3, Config: []byte("old-config")}
	writePairs(t, e, old, oldApplied)
	// Half the keys shared with different values, half new: any mix of the
	// two generations is visible.
	newer := append(genPairs(1000, "k", "new"), genPairs(2000, "n", "new")...)
	newApplied := engines.Applied{Index: 200, Term: 4, Config: []byte("new-config")}

	src := &copyingIter{Iterator: newSliceIter(newer), copier: copier, every: 250}
	if err := e.Install(src, newApplied); err != nil {
		t.Fatalf("Install: %v", err)
	}
	copier.copy("after Install returned")
	t.Logf("%d install commits, %d crash copies", commits, len(copier.copies))
	if commits < 20 {
		t.Fatalf("only %d install commits: the test would not cover many steps", commits)
	}

	withLeftovers := 0
	for _, c := range copier.copies {
		if hasStaging(t, c.path) {
			withLeftovers++
		}
		ce, err := Open(c.path, Options{NoSync: true})
		if err != nil {
			t.Fatalf("%s: open crash copy: %v", c.step, err)
		}
		got, applied := snapshot(t, ce)
		isOld := equalPairs(got, old) && applied.Equal(oldApplied)
		isNew := equalPairs(got, newer) && applied.Equal(newApplied)
		switch {
		case !isOld && !isNew:
			t.Errorf("%s: crash leaves a mix: %d pairs, Applied %+v", c.step, len(got), applied)
		case c.afterSwap && !isNew:
			t.Errorf("%s: crash after the swap committed lost the install", c.step)
		case !c.afterSwap && !isOld:
			t.Errorf("%s: crash before the swap committed shows the install", c.step)
		}
		if s := stagingBuckets(t, ce); len(s) != 0 {
			t.Errorf("%s: Open left staging buckets %q", c.step, s)
		}
		if err := ce.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(c.path); err != nil {
			t.Fatal(err)
		}
	}
	// Most copies were taken mid-install, and Open had leftovers to remove.
	if withLeftovers < 10 {
		t.Fatalf("only %d of %d crash copies held a staging bucket", withLeftovers, len(copier.copies))
	}
}

// hasStaging reports whether the file at path holds a staging bucket, read
// without the clean-up Open does.
func hasStaging(t *testing.T, path string) bool {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("open %s read-only: %v", path, err)
	}
	defer db.Close()
	found := false
	err = db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			found = found || bytes.HasPrefix(name, stagingPrefix)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// benchPairs returns about n sorted pairs of random 16-byte keys (from a
// fixed seed) with 100-byte values, and their total size in bytes.
func benchPairs(n int) ([]kv, int64) {
	rng := rand.New(rand.NewPCG(1, 2))
	pairs := make([]kv, n)
	keys := make([]byte, 16*n)
	values := make([]byte, 100*n)
	for i := range pairs {
		k := keys[16*i : 16*i+16]
		binary.LittleEndian.PutUint64(k, rng.Uint64())
		binary.LittleEndian.PutUint64(k[8:], rng.Uint64())
		v := values[100*i : 100*i+100]
		for j := 0; j < len(v); j += 8 {
			var w [8]byte
			binary.LittleEndian.PutUint64(w[:], rng.Uint64())
			copy(v[j:], w[:])
		}
		pairs[i] = kv{k, v}
	}
	slices.SortFunc(pairs, func(x, y kv) int { return bytes.Compare(x.key, y.key) })
	pairs = slices.CompactFunc(pairs, func(x, y kv) bool { return bytes.Equal(x.key, y.key) })
	return pairs, int64(len(pairs)) * 116
}

// BenchmarkInstall measures install throughput of 250k random 16-byte keys
// with 100-byte values into a fresh engine, fsync on. It also reports the
// live heap the install adds.
func BenchmarkInstall(b *testing.B) {
	pairs, size := benchPairs(250_000)
	b.SetBytes(size)
	// The live heap as marked by the most recent GC, sampled after every
	// commit: unlike HeapAlloc it leaves out garbage the pacer has not
	// collected yet, and GCs land at arbitrary points, mid-commit included.
	liveHeap := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	readLive := func() uint64 {
		metrics.Read(liveHeap)
		return liveHeap[0].Value.Uint64()
	}
	runtime.GC()
	base := readLive()
	var peak uint64
	sample := func(bool) { peak = max(peak, readLive()) }
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		e, err := Open(filepath.Join(b.TempDir(), "db"), Options{OnInstallCommit: sample})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := e.Install(&plainIter{pairs: pairs, pos: -1}, engines.Applied{Index: 1}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := e.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(peak-min(peak, base))/(1<<20), "MiB-live-heap-peak")
}

// BenchmarkViewIter measures streaming every pair of a view of 250k pairs.
func BenchmarkViewIter(b *testing.B) {
	pairs, size := benchPairs(250_000)
	e, err := Open(filepath.Join(b.TempDir(), "db"), Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	if err := e.Install(&plainIter{pairs: pairs, pos: -1}, engines.Applied{Index: 1}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		v, err := e.View()
		if err != nil {
			b.Fatal(err)
		}
		it, err := v.Iter()
		if err != nil {
			b.Fatal(err)
		}
		var n int64
		for it.Next() {
			n += int64(len(it.Key()) + len(it.Value()))
		}
		if it.Err() != nil || n != size {
			b.Fatalf("streamed %d bytes, want %d (err %v)", n, size, it.Err())
		}
		it.Close()
		v.Close()
	}
}

// plainIter hands out the pairs' own slices, costing the benchmark nothing.
type plainIter struct {
	pairs []kv
	pos   int
}

func (p *plainIter) Next() bool    { p.pos++; return p.pos < len(p.pairs) }
func (p *plainIter) Key() []byte   { return p.pairs[p.pos].key }
func (p *plainIter) Value() []byte { return p.pairs[p.pos].value }
func (p *plainIter) Err() error    { return nil }

// BenchmarkCheckpointByCopy measures what a checkpoint of a bbolt engine
// would cost, for the decision not to offer one (README, Zero-copy local
// snapshots): bbolt shares no immutable files between states, so the only
// exact past state it can keep is a copy of its whole file, taken in a read
// transaction (Tx.CopyFile, the same copy as Tx.WriteTo) and synced. It
// reports time and bytes written per checkpoint.
func BenchmarkCheckpointByCopy(b *testing.B) {
	for _, n := range []int{1_000_000, 4_000_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			pairs, _ := benchPairs(n)
			dir := b.TempDir()
			e, err := Open(filepath.Join(dir, "db"), Options{NoSync: true, InitialMmapSize: 2 << 30})
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			if err := e.Install(&plainIter{pairs: pairs, pos: -1}, engines.Applied{Index: 1}); err != nil {
				b.Fatal(err)
			}
			pairs = nil
			var written int64
			b.ResetTimer()
			for i := range b.N {
				path := filepath.Join(dir, fmt.Sprintf("checkpoint-%d", i))
				err := e.db.View(func(tx *bolt.Tx) error {
					written = tx.Size()
					if err := tx.CopyFile(path, 0o600); err != nil {
						return err
					}
					f, err := os.Open(path)
					if err != nil {
						return err
					}
					return errors.Join(f.Sync(), f.Close())
				})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := os.Remove(path); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/checkpoint")
			b.ReportMetric(float64(written), "bytes-written/op")
		})
	}
}
