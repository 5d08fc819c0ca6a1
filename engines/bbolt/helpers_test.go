package bbolt

import (
	"bytes"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/raftsnap/testbed/engines"
	bolt "go.etcd.io/bbolt"
)

// kv is one pair of expected contents.
type kv struct{ key, value []byte }

// openTest opens a fresh engine in a temporary directory and closes it at
// the end of the test.
func openTest(t *testing.T, opts Options) (*Engine, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "db")
	return openAt(t, path, opts), path
}

func openAt(t *testing.T, path string, opts Options) *Engine {
	t.Helper()
	e, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// genPairs returns n sorted pairs whose keys carry prefix and whose values
// carry tag, so that two generations of contents differ in every value.
func genPairs(n int, prefix, tag string) []kv {
	out := make([]kv, n)
	for i := range out {
		out[i] = kv{
			key:   fmt.Appendf(nil, "%s%06d", prefix, i),
			value: fmt.Appendf(nil, "%s-value-%d-%s", tag, i, bytes.Repeat([]byte{'x'}, i%50)),
		}
	}
	return out
}

// writePairs writes pairs in batches of 100, the last batch recording
// applied.
func writePairs(t *testing.T, e *Engine, pairs []kv, applied engines.Applied) {
	t.Helper()
	for start := 0; ; start += 100 {
		end := min(start+100, len(pairs))
		b := engines.Batch{Applied: applied}
		for _, p := range pairs[start:end] {
			b.Put(p.key, p.value)
		}
		if err := e.Write(b); err != nil {
			t.Fatalf("Write: %v", err)
		}
		if end == len(pairs) {
			return
		}
	}
}

// readAll copies every pair of a view.
func readAll(t *testing.T, v engines.View) []kv {
	t.Helper()
	it, err := v.Iter()
	if err != nil {
		t.Fatalf("Iter: %v", err)
	}
	defer it.Close()
	var out []kv
	for it.Next() {
		out = append(out, kv{bytes.Clone(it.Key()), bytes.Clone(it.Value())})
	}
	if err := it.Err(); err != nil {
		t.Fatalf("iterator: %v", err)
	}
	return out
}

// snapshot returns the engine's whole contents and Applied, read from one
// view.
func snapshot(t *testing.T, e engines.Engine) ([]kv, engines.Applied) {
	t.Helper()
	v, err := e.View()
	if err != nil {
		t.Fatalf("View: %v", err)
	}
	defer v.Close()
	return readAll(t, v), v.Applied()
}

func equalPairs(a, b []kv) bool {
	return slices.EqualFunc(a, b, func(x, y kv) bool {
		return bytes.Equal(x.key, y.key) && bytes.Equal(x.value, y.value)
	})
}

// checkState fails unless e holds exactly want and wantApplied.
func checkState(t *testing.T, e engines.Engine, want []kv, wantApplied engines.Applied) {
	t.Helper()
	got, applied := snapshot(t, e)
	if !equalPairs(got, want) {
		t.Fatalf("contents: got %d pairs, want %d (first difference at %d)", len(got), len(want), firstDiff(got, want))
	}
	if !applied.Equal(wantApplied) {
		t.Fatalf("view Applied = %+v, want %+v", applied, wantApplied)
	}
	a, err := e.Applied()
	if err != nil {
		t.Fatalf("Applied: %v", err)
	}
	if !a.Equal(wantApplied) {
		t.Fatalf("Applied() = %+v, want %+v", a, wantApplied)
	}
}

func firstDiff(a, b []kv) int {
	for i := range min(len(a), len(b)) {
		if !bytes.Equal(a[i].key, b[i].key) || !bytes.Equal(a[i].value, b[i].value) {
			return i
		}
	}
	return min(len(a), len(b))
}

// stagingBuckets lists the top-level staging buckets of an open engine.
func stagingBuckets(t *testing.T, e *Engine) []string {
	t.Helper()
	var names []string
	err := e.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			if bytes.HasPrefix(name, stagingPrefix) {
				names = append(names, string(name))
			}
			return nil
		})
	})
	if err != nil {
		t.Fatalf("list buckets: %v", err)
	}
	return names
}

// sliceIter is an install source over pairs. If failAt >= 0 it stops after
// failAt pairs with failErr. Key and Value are handed out in a buffer that
// is overwritten on every Next, as a streaming decoder's would be, so an
// engine that keeps them past Next installs garbage.
type sliceIter struct {
	pairs   []kv
	pos     int
	failAt  int
	failErr error
	err     error
	buf     []byte
	klen    int
}

func newSliceIter(pairs []kv) *sliceIter { return &sliceIter{pairs: pairs, pos: -1, failAt: -1} }

func (s *sliceIter) Next() bool {
	if s.err != nil || s.pos >= len(s.pairs) {
		return false
	}
	s.pos++
	if s.pos == s.failAt {
		s.err = s.failErr
		return false
	}
	if s.pos >= len(s.pairs) {
		return false
	}
	p := s.pairs[s.pos]
	clear(s.buf)
	s.buf = append(append(s.buf[:0], p.key...), p.value...)
	s.klen = len(p.key)
	return true
}

func (s *sliceIter) Key() []byte   { return s.buf[:s.klen:s.klen] }
func (s *sliceIter) Value() []byte { return s.buf[s.klen:] }
func (s *sliceIter) Err() error    { return s.err }
