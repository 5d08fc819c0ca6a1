package snapshot_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"sync"
	"testing"
	"time"

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

var benchSizes = []int{250_000, 1_000_000}

// genSource yields n pairs with sorted random keys and random values from a
// fixed seed, without holding the values in memory.
type genSource struct {
	keys  [][]byte
	value []byte
	rng   *rand.Rand
	i     int
}

func newGenSource(n int) *genSource {
	rng := rand.New(rand.NewPCG(uint64(n), 42))
	keys := make([][]byte, n)
	arena := make([]byte, n*benchKeyLen)
	for i := range keys {
		k := arena[i*benchKeyLen : (i+1)*benchKeyLen]
		for j := 0; j < benchKeyLen; j += 8 {
			binary.LittleEndian.PutUint64(k[j:], rng.Uint64())
		}
		keys[i] = k
	}
	slices.SortFunc(keys, bytes.Compare)
	keys = slices.CompactFunc(keys, func(a, b []byte) bool { return bytes.Equal(a, b) })
	return &genSource{keys: keys, value: make([]byte, benchValueLen), rng: rng}
}

func (g *genSource) Next() bool {
	if g.i >= len(g.keys) {
		return false
	}
	for j := 0; j+8 <= benchValueLen; j += 8 {
		binary.LittleEndian.PutUint64(g.value[j:], g.rng.Uint64())
	}
	g.i++
	return true
}
func (g *genSource) Key() []byte   { return g.keys[g.i-1] }
func (g *genSource) Value() []byte { return g.value }
func (g *genSource) Err() error    { return nil }
func (g *genSource) rewind()       { g.i = 0 }
func (g *genSource) bytes() int64  { return int64(len(g.keys)) * (benchKeyLen + benchValueLen) }

type benchEngine struct {
	name string
	open func(dir string) (engines.Engine, error)
}

var benchEngines = []benchEngine{
	{"bbolt", func(dir string) (engines.Engine, error) {
		return bbolt.Open(filepath.Join(dir, "bolt.db"), bbolt.Options{})
	}},
	{"pebble", func(dir string) (engines.Engine, error) {
		return pebble.Open(filepath.Join(dir, "pebble"), pebble.Options{})
	}},
}

// loaded caches one loaded engine per (engine, size) for the whole benchmark
// binary, so that set-up is paid once and never timed.
var loaded = struct {
	sync.Mutex
	m map[string]*loadedEngine
}{m: map[string]*loadedEngine{}}

type loadedEngine struct {
	engine engines.Engine
	bytes  int64
	// streamPath is a file holding the encoded snapshot of the contents.
	// Installs read it from disk, as raft restores from its snapshot store;
	// holding it in the heap would also let the GC pace its collections to
	// that much extra garbage and inflate every peak-heap figure.
	streamPath string
}

func load(b *testing.B, be benchEngine, n int) *loadedEngine {
	loaded.Lock()
	defer loaded.Unlock()
	key := fmt.Sprintf("%s/%d", be.name, n)
	if le, ok := loaded.m[key]; ok {
		return le
	}
	dir, err := makeDir(key)
	if err != nil {
		b.Fatal(err)
	}
	e, err := be.open(dir)
	if err != nil {
		b.Fatal(err)
	}
	src := newGenSource(n)
	if err := e.Install(src, engines.Applied{Index: 1, Term: 1}); err != nil {
		b.Fatal(err)
	}
	streamPath := filepath.Join(dir, "snapshot.stream")
	f, err := os.Create(streamPath)
	if err != nil {
		b.Fatal(err)
	}
	streamView(b, e, f)
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	le := &loadedEngine{engine: e, bytes: src.bytes(), streamPath: streamPath}
	loaded.m[key] = le
	return le
}

// openTarget opens an empty engine to install into.
func openTarget(b *testing.B, be benchEngine, name string) engines.Engine {
	dir, err := makeDir(name)
	if err != nil {
		b.Fatal(err)
	}
	target, err := be.open(dir)
	if err != nil {
		b.Fatal(err)
	}
	return target
}

// benchDirs are removed when the benchmark binary exits (TestMain).
var benchDirs []string

func makeDir(name string) (string, error) {
	dir, err := mkdirTemp("snapbench-")
	if err == nil {
		benchDirs = append(benchDirs, dir)
	}
	return dir, err
}

// heapPeak samples the live heap while a measured section runs and reports
// how far it rose above the heap at the section's start.
type heapPeak struct {
	stop  chan struct{}
	done  chan struct{}
	base  uint64
	peak  uint64
	probe []metrics.Sample
}

const heapMetric = "/memory/classes/heap/objects:bytes"

func startHeapPeak() *heapPeak {
	runtime.GC()
	h := &heapPeak{stop: make(chan struct{}), done: make(chan struct{}), probe: []metrics.Sample{{Name: heapMetric}}}
	h.base = h.read()
	h.peak = h.base
	go func() {
		defer close(h.done)
		t := time.NewTicker(200 * time.Microsecond)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.C:
				h.peak = max(h.peak, h.read())
			}
		}
	}()
	return h
}

func (h *heapPeak) read() uint64 {
	metrics.Read(h.probe)
	return h.probe[0].Value.Uint64()
}

// finish stops sampling and returns the rise in MiB.
func (h *heapPeak) finish() float64 {
	close(h.stop)
	<-h.done
	h.peak = max(h.peak, h.read())
	return float64(h.peak-h.base) / (1 << 20)
}

func streamView(b *testing.B, e engines.Engine, w io.Writer) {
	v, err := e.View()
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	it, err := v.Iter()
	if err != nil {
		b.Fatal(err)
	}
	defer it.Close()
	if _, err := snapshot.Encode(w, snapshot.HeaderFor(v.Applied()), it); err != nil {
		b.Fatal(err)
	}
}

// rawIterate reads every key and value byte of a view through a CRC32C:
// the least work any checksummed stream can do.
func rawIterate(b *testing.B, e engines.Engine) uint32 {
	v, err := e.View()
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	it, err := v.Iter()
	if err != nil {
		b.Fatal(err)
	}
	defer it.Close()
	var crc uint32
	table := crc32.MakeTable(crc32.Castagnoli)
	for it.Next() {
		crc = crc32.Update(crc, table, it.Key())
		crc = crc32.Update(crc, table, it.Value())
	}
	if err := it.Err(); err != nil {
		b.Fatal(err)
	}
	return crc
}

// BenchmarkSnapshot measures the streaming snapshot path: stream (view ->
// encoded stream, to a discarding sink) beside raw iteration of the same
// engine, and install (encoded stream -> decoder -> atomic install).
func BenchmarkSnapshot(b *testing.B) {
	for _, be := range benchEngines {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("stream/%s/keys=%d", be.name, n), func(b *testing.B) {
				le := load(b, be, n)
				b.SetBytes(le.bytes)
				// One unmeasured pass of each, so that neither the stream
				// nor the raw pass below pays for a cold page cache.
				streamView(b, le.engine, io.Discard)
				rawIterate(b, le.engine)
				// Stream and raw passes alternate, each timed on its own,
				// so that the machine's noise falls on both alike.
				peak := startHeapPeak()
				var rawSecs float64
				b.ResetTimer()
				for range b.N {
					streamView(b, le.engine, io.Discard)
					b.StopTimer()
					start := time.Now()
					rawIterate(b, le.engine)
					rawSecs += time.Since(start).Seconds()
					b.StartTimer()
				}
				b.StopTimer()
				b.ReportMetric(peak.finish(), "peak-heap-MiB")
				streamSecs := b.Elapsed().Seconds()
				mb := float64(le.bytes) * float64(b.N) / 1e6
				b.ReportMetric(mb/rawSecs, "raw-MB/s")
				b.ReportMetric(rawSecs/streamSecs, "stream/raw")
			})
		}
	}
	for _, be := range benchEngines {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("install/%s/keys=%d", be.name, n), func(b *testing.B) {
				le := load(b, be, n)
				target := openTarget(b, be, "install")
				defer target.Close()
				b.SetBytes(le.bytes)
				peak := startHeapPeak()
				b.ResetTimer()
				for range b.N {
					f, err := os.Open(le.streamPath)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := snapshot.Restore(target, f); err != nil {
						b.Fatal(err)
					}
					f.Close()
				}
				b.StopTimer()
				b.ReportMetric(peak.finish(), "peak-heap-MiB")
			})
		}
	}
}

// BenchmarkSeedBuffered measures the seed design's approach for
// comparison: the whole snapshot is built in one in-memory buffer (its
// Cursor<Vec<u8>>), and install inserts into the live keyspace in
// 10,000-pair batches (not atomic, and stale keys survive).
func BenchmarkSeedBuffered(b *testing.B) {
	for _, be := range benchEngines {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("stream/%s/keys=%d", be.name, n), func(b *testing.B) {
				le := load(b, be, n)
				b.SetBytes(le.bytes)
				peak := startHeapPeak()
				b.ResetTimer()
				for range b.N {
					var buf bytes.Buffer
					streamView(b, le.engine, &buf)
				}
				b.StopTimer()
				b.ReportMetric(peak.finish(), "peak-heap-MiB")
			})
			b.Run(fmt.Sprintf("install/%s/keys=%d", be.name, n), func(b *testing.B) {
				le := load(b, be, n)
				target := openTarget(b, be, "seed-install")
				defer target.Close()
				b.SetBytes(le.bytes)
				peak := startHeapPeak()
				b.ResetTimer()
				for range b.N {
					// The seed reads the whole snapshot into memory first.
					buffered, err := os.ReadFile(le.streamPath)
					if err != nil {
						b.Fatal(err)
					}
					dec, err := snapshot.NewDecoder(bytes.NewReader(buffered))
					if err != nil {
						b.Fatal(err)
					}
					var batch engines.Batch
					for dec.Next() {
						batch.Put(bytes.Clone(dec.Key()), bytes.Clone(dec.Value()))
						if len(batch.Ops) == 10_000 {
							if err := target.Write(batch); err != nil {
								b.Fatal(err)
							}
							batch = engines.Batch{}
						}
					}
					if err := target.Write(batch); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				b.ReportMetric(peak.finish(), "peak-heap-MiB")
			})
		}
	}
}

// BenchmarkView measures taking (and releasing) a point-in-time view, which
// must cost microseconds whatever the engine holds.
func BenchmarkView(b *testing.B) {
	for _, be := range benchEngines {
		for _, n := range []int{1_000, 1_000_000} {
			b.Run(fmt.Sprintf("%s/keys=%d", be.name, n), func(b *testing.B) {
				le := load(b, be, n)
				b.ResetTimer()
				for range b.N {
					v, err := le.engine.View()
					if err != nil {
						b.Fatal(err)
					}
					v.Close()
				}
			})
		}
	}
}
