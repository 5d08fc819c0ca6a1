package pebble

import (
	"bytes"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/raftsnap/testbed/engines"
)

const (
	benchPairs    = 250_000
	benchKeyLen   = 16
	benchValueLen = 100
)

// benchData returns benchPairs sorted, distinct, seeded-random keys and
// random values, as one flat buffer per kind.
func benchData() (keys, values [][]byte) {
	rng := rand.New(rand.NewPCG(1, 2))
	keyBuf := make([]byte, benchPairs*benchKeyLen)
	for i := range keyBuf {
		keyBuf[i] = byte(rng.Uint32())
	}
	valueBuf := make([]byte, benchPairs*benchValueLen)
	for i := range valueBuf {
		valueBuf[i] = byte(rng.Uint32())
	}
	keys = make([][]byte, benchPairs)
	values = make([][]byte, benchPairs)
	for i := range keys {
		keys[i] = keyBuf[i*benchKeyLen : (i+1)*benchKeyLen]
		values[i] = valueBuf[i*benchValueLen : (i+1)*benchValueLen]
	}
	slices.SortFunc(keys, bytes.Compare)
	keys = slices.CompactFunc(keys, bytes.Equal)
	return keys, values[:len(keys)]
}

// benchSource yields the pairs without allocating and samples the heap now
// and then, to catch an install whose memory grows with the pair count.
type benchSource struct {
	keys, values [][]byte
	i            int
	peakHeap     uint64
}

func (s *benchSource) Next() bool {
	if s.i%8192 == 0 {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		s.peakHeap = max(s.peakHeap, ms.HeapInuse)
	}
	s.i++
	return s.i <= len(s.keys)
}
func (s *benchSource) Key() []byte   { return s.keys[s.i-1] }
func (s *benchSource) Value() []byte { return s.values[s.i-1] }
func (s *benchSource) Err() error    { return nil }

func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// BenchmarkInstall installs 250k random 16-byte keys with 100-byte values on
// disk. Run with -benchtime=1x; MB/s counts key and value bytes.
func BenchmarkInstall(b *testing.B) {
	keys, values := benchData()
	b.SetBytes(int64(len(keys) * (benchKeyLen + benchValueLen)))
	for b.Loop() {
		b.StopTimer()
		e, err := Open(b.TempDir(), Options{})
		if err != nil {
			b.Fatal(err)
		}
		src := &benchSource{keys: keys, values: values}
		base := heapInuse()
		b.StartTimer()
		if err := e.Install(src, engines.Applied{Index: 1, Term: 1}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		b.ReportMetric(float64(int64(src.peakHeap)-int64(base))/(1<<20), "peak-extra-heap-MiB")
		if err := e.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkViewIterate streams every pair of a view of the installed data.
func BenchmarkViewIterate(b *testing.B) {
	keys, values := benchData()
	e, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	if err := e.Install(&benchSource{keys: keys, values: values}, engines.Applied{Index: 1, Term: 1}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(keys) * (benchKeyLen + benchValueLen)))
	b.ReportAllocs()
	for b.Loop() {
		v, err := e.View()
		if err != nil {
			b.Fatal(err)
		}
		it, err := v.Iter()
		if err != nil {
			b.Fatal(err)
		}
		n, sum := 0, 0
		for it.Next() {
			sum += len(it.Key()) + len(it.Value())
			n++
		}
		if err := it.Err(); err != nil || n != len(keys) {
			b.Fatalf("iterated %d of %d pairs, err %v", n, len(keys), err)
		}
		it.Close()
		v.Close()
	}
}
