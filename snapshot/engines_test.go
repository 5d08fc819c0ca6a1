package snapshot_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/raftsnap/testbed/engines"
	"github.com/raftsnap/testbed/engines/bbolt"
	"github.com/raftsnap/testbed/engines/pebble"
	"github.com/raftsnap/testbed/snapshot"
)

type testEngine struct {
	name string
	open func(t *testing.T) engines.Engine
}

var testEngines = []testEngine{
	{"bbolt", func(t *testing.T) engines.Engine {
		e, err := bbolt.Open(filepath.Join(t.TempDir(), "bolt.db"), bbolt.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		return e
	}},
	{"pebble", func(t *testing.T) engines.Engine {
		e, err := pebble.Open("db", pebble.Options{FS: vfs.NewMem()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		return e
	}},
}

type kv struct{ k, v string }

func fill(t *testing.T, e engines.Engine, n int, prefix string, applied engines.Applied) {
	t.Helper()
	var b engines.Batch
	for i := range n {
		b.Put([]byte(fmt.Sprintf("%s%06d", prefix, i)), bytes.Repeat([]byte{byte(i)}, i%300))
	}
	b.Applied = applied
	if err := e.Write(b); err != nil {
		t.Fatal(err)
	}
}

func contents(t *testing.T, e engines.Engine) ([]kv, engines.Applied) {
	t.Helper()
	v, err := e.View()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	it, err := v.Iter()
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out []kv
	for it.Next() {
		out = append(out, kv{string(it.Key()), string(it.Value())})
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return out, v.Applied()
}

func snapshotOf(t *testing.T, e engines.Engine) []byte {
	t.Helper()
	v, err := e.View()
	if err != nil {
		t.Fatal(err)
	}
	s := snapshot.NewFSMSnapshot(v)
	defer s.Release()
	var buf bytes.Buffer
	if err := s.Persist(&bufferSink{Buffer: &buf}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// bufferSink is a raft.SnapshotSink over a buffer.
type bufferSink struct {
	*bytes.Buffer
	cancelled, closed bool
}

func (s *bufferSink) ID() string    { return "buffer" }
func (s *bufferSink) Cancel() error { s.cancelled = true; return nil }
func (s *bufferSink) Close() error  { s.closed = true; return nil }

func TestASnapshotBuiltOnOneEngineInstallsOnTheOtherWithIdenticalContents(t *testing.T) {
	for _, from := range testEngines {
		for _, to := range testEngines {
			t.Run(from.name+"->"+to.name, func(t *testing.T) {
				src, dst := from.open(t), to.open(t)
				applied := engines.Applied{Index: 42, Term: 7, Config: []byte("config")}
				fill(t, src, 3000, "key-", applied)
				fill(t, dst, 500, "stale-", engines.Applied{Index: 3, Term: 1})
				stream := snapshotOf(t, src)
				h, err := snapshot.Restore(dst, bytes.NewReader(stream))
				if err != nil {
					t.Fatal(err)
				}
				if !h.Applied().Equal(applied) {
					t.Fatalf("header %+v, want %+v", h, applied)
				}
				want, wantApplied := contents(t, src)
				got, gotApplied := contents(t, dst)
				if fmt.Sprint(got) != fmt.Sprint(want) || !gotApplied.Equal(wantApplied) {
					t.Fatalf("contents differ after install: %d pairs vs %d, applied %+v vs %+v", len(got), len(want), gotApplied, wantApplied)
				}
				if again := snapshotOf(t, dst); !bytes.Equal(again, stream) {
					t.Fatal("the installed engine's snapshot is not byte-identical to the one installed")
				}
			})
		}
	}
}

func TestABadStreamLeavesTheEngineExactlyAsItWas(t *testing.T) {
	for _, te := range testEngines {
		t.Run(te.name, func(t *testing.T) {
			donor := te.open(t)
			fill(t, donor, 2000, "new-", engines.Applied{Index: 90, Term: 4})
			good := snapshotOf(t, donor)
			flipped := bytes.Clone(good)
			flipped[len(flipped)*2/3] ^= 0x01
			bad := map[string]struct {
				stream []byte
				want   error
			}{
				"truncated":    {good[:len(good)-20], snapshot.ErrTruncated},
				"bit flipped":  {flipped, snapshot.ErrChecksum},
				"trailing":     {append(bytes.Clone(good), 'x'), snapshot.ErrTrailingData},
				"not a stream": {[]byte("definitely not a snapshot"), snapshot.ErrBadMagic},
			}
			for name, c := range bad {
				t.Run(name, func(t *testing.T) {
					e := te.open(t)
					fill(t, e, 700, "old-", engines.Applied{Index: 12, Term: 2, Config: []byte("c")})
					before, beforeApplied := contents(t, e)
					_, err := snapshot.Restore(e, bytes.NewReader(c.stream))
					if !errors.Is(err, c.want) {
						t.Fatalf("got %v, want %v", err, c.want)
					}
					after, afterApplied := contents(t, e)
					if fmt.Sprint(after) != fmt.Sprint(before) || !afterApplied.Equal(beforeApplied) {
						t.Fatalf("engine changed by a failed install: %d pairs -> %d", len(before), len(after))
					}
				})
			}
		})
	}
}

func TestPersistCancelsTheSinkOnError(t *testing.T) {
	e := testEngines[0].open(t)
	fill(t, e, 5000, "k", engines.Applied{Index: 1, Term: 1})
	v, err := e.View()
	if err != nil {
		t.Fatal(err)
	}
	s := snapshot.NewFSMSnapshot(v)
	defer s.Release()
	sink := &failingSink{}
	if err := s.Persist(sink); err == nil || !sink.cancelled || sink.closed {
		t.Fatalf("persist into a failing sink: err %v, cancelled %v, closed %v", err, sink.cancelled, sink.closed)
	}
}

type failingSink struct{ bufferSink }

func (f *failingSink) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }
