package pebble

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftsnap/testbed/engines"
)

type pair struct{ key, value string }

// srcIter is an install source over pairs; it fails with err once it has
// yielded failAt pairs (failAt < 0: never). It reuses one buffer for Key and
// Value and scrambles it on every Next, so an engine that keeps the slices
// without copying them is caught.
type srcIter struct {
	pairs  []pair
	failAt int
	err    error
	i      int
	buf    []byte
	k, v   []byte
	failed bool
}

func source(pairs []pair) *srcIter { return &srcIter{pairs: pairs, failAt: -1} }

func (s *srcIter) Next() bool {
	for i := range s.buf {
		s.buf[i] = 0xAA
	}
	if s.failAt >= 0 && s.i == s.failAt {
		s.failed = true
		return false
	}
	if s.i >= len(s.pairs) {
		return false
	}
	p := s.pairs[s.i]
	s.i++
	s.buf = append(append(s.buf[:0], p.key...), p.value...)
	s.k, s.v = s.buf[:len(p.key)], s.buf[len(p.key):]
	return true
}

func (s *srcIter) Key() []byte   { return s.k }
func (s *srcIter) Value() []byte { return s.v }
func (s *srcIter) Err() error {
	if s.failed {
		return s.err
	}
	return nil
}

// state is everything an engine holds, as the engine interface shows it.
type state struct {
	pairs   []pair
	applied engines.Applied
}

func (s state) equal(o state) bool {
	return slices.Equal(s.pairs, o.pairs) && s.applied.Equal(o.applied)
}

func (s state) String() string {
	return fmt.Sprintf("applied=%d/%d/%q pairs(%d)=%v", s.applied.Index, s.applied.Term, s.applied.Config, len(s.pairs), s.pairs)
}

// readView returns every pair of v and its Applied.
func readView(v engines.View) (state, error) {
	it, err := v.Iter()
	if err != nil {
		return state{}, err
	}
	var s state
	for it.Next() {
		s.pairs = append(s.pairs, pair{string(it.Key()), string(it.Value())})
	}
	err = errors.Join(it.Err(), it.Close())
	s.applied = v.Applied()
	return s, err
}

// readState reads e's contents through a fresh view and checks that
// Engine.Applied agrees with the view's.
func readState(e engines.Engine) (state, error) {
	v, err := e.View()
	if err != nil {
		return state{}, err
	}
	s, err := readView(v)
	if err = errors.Join(err, v.Close()); err != nil {
		return state{}, err
	}
	a, err := e.Applied()
	if err != nil {
		return state{}, err
	}
	if !a.Equal(s.applied) {
		return state{}, fmt.Errorf("Applied() = %+v, view says %+v", a, s.applied)
	}
	return s, nil
}

func mustState(t testing.TB, e engines.Engine) state {
	t.Helper()
	s, err := readState(e)
	if err != nil {
		t.Fatalf("read state: %v", err)
	}
	return s
}

// mustWrite writes puts (value "" means delete) at applied.
func mustWrite(t testing.TB, e engines.Engine, applied engines.Applied, kvs ...string) {
	t.Helper()
	var b engines.Batch
	for i := 0; i+1 < len(kvs); i += 2 {
		if kvs[i+1] == "" {
			b.Delete([]byte(kvs[i]))
		} else {
			b.Put([]byte(kvs[i]), []byte(kvs[i+1]))
		}
	}
	b.Applied = applied
	if err := e.Write(b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func mustInstall(t testing.TB, e engines.Engine, applied engines.Applied, pairs []pair) {
	t.Helper()
	if err := e.Install(source(pairs), applied); err != nil {
		t.Fatalf("install: %v", err)
	}
}

func mustOpen(t testing.TB, fs vfs.FS) *Engine {
	t.Helper()
	e, err := Open("db", Options{FS: fs})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return e
}

func mustClose(t testing.TB, e *Engine) {
	t.Helper()
	if err := e.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// stagingLeftovers lists whatever is under the staging directory of the
// engine in dir.
func stagingLeftovers(fs vfs.FS, dir string) ([]string, error) {
	names, err := fs.List(fs.PathJoin(dir, stagingDirName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return names, err
}

func at(index, term uint64, config string) engines.Applied {
	a := engines.Applied{Index: index, Term: term}
	if config != "" {
		a.Config = []byte(config)
	}
	return a
}

// sortedPairs returns n pairs with keys "<prefix>NNNNNN" and values derived
// from tag, in key order.
func sortedPairs(prefix, tag string, n int) []pair {
	ps := make([]pair, n)
	for i := range ps {
		ps[i] = pair{fmt.Sprintf("%s%06d", prefix, i), fmt.Sprintf("%s-value-%d", tag, i)}
	}
	slices.SortFunc(ps, func(a, b pair) int { return bytes.Compare([]byte(a.key), []byte(b.key)) })
	return ps
}
