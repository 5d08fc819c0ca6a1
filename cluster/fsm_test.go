package cluster

import (
	"bytes"
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"

	"github.com/raftsnap/testbed/engines/pebble"
	"github.com/raftsnap/testbed/snapshot"
)

func newTestFSM(t *testing.T) *FSM {
	t.Helper()
	e, err := pebble.Open("db", pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	f, err := NewFSM(e, FSMHooks{})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func applySet(t *testing.T, f *FSM, index uint64, key, value string) {
	t.Helper()
	resp := f.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: Command{Op: OpSet, Key: []byte(key), Value: []byte(value)}.Encode()})
	if err, ok := resp.(error); ok {
		t.Fatal(err)
	}
}

func snapshotBytes(t *testing.T, f *FSM) []byte {
	t.Helper()
	s, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	var buf bytes.Buffer
	if err := s.Persist(&memSink{Buffer: &buf}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type memSink struct{ *bytes.Buffer }

func (memSink) ID() string    { return "mem" }
func (memSink) Cancel() error { return nil }
func (memSink) Close() error  { return nil }

func TestEntriesAtOrBelowTheAppliedIndexAreSkippedAfterRestart(t *testing.T) {
	f := newTestFSM(t)
	applySet(t, f, 5, "k", "v5")
	resp := f.Apply(&raft.Log{Index: 5, Term: 1, Type: raft.LogCommand, Data: Command{Op: OpSet, Key: []byte("k"), Value: []byte("replayed")}.Encode()})
	if _, ok := resp.(Replayed); !ok {
		t.Fatalf("replayed entry got %#v, want Replayed", resp)
	}
	if v, _, _ := f.Get([]byte("k")); string(v) != "v5" {
		t.Fatalf("replayed entry changed the state: %q", v)
	}
}

// hashicorp/raft restores every snapshot it is sent, even one older than
// what the state machine applied (README, known upstream bugs). The state
// machine must not move backwards, and must still refuse a damaged stream.
func TestRestoreOfAnOlderSnapshotKeepsTheNewerState(t *testing.T) {
	f := newTestFSM(t)
	applySet(t, f, 3, "a", "old")
	older := snapshotBytes(t, f)
	applySet(t, f, 7, "a", "new")
	applySet(t, f, 8, "b", "added")

	var kept bool
	f.hooks.Restored = func(_ snapshot.Header, k bool, _ error) { kept = k }
	if err := f.Restore(nopCloser{bytes.NewReader(older)}); err != nil {
		t.Fatal(err)
	}
	if !kept || f.Applied().Index != 8 {
		t.Fatalf("kept %v, applied %d; want the newer state at 8 kept", kept, f.Applied().Index)
	}
	if v, _, _ := f.Get([]byte("a")); string(v) != "new" {
		t.Fatalf("state moved backwards: a=%q", v)
	}
	damaged := bytes.Clone(older)
	damaged[len(damaged)-2] ^= 0xff
	if err := f.Restore(nopCloser{bytes.NewReader(damaged)}); !errors.Is(err, snapshot.ErrChecksum) {
		t.Fatalf("damaged older snapshot: got %v, want ErrChecksum", err)
	}
}

func TestRestoreOfANewerSnapshotInstallsIt(t *testing.T) {
	donor := newTestFSM(t)
	applySet(t, donor, 9, "x", "donor")
	stream := snapshotBytes(t, donor)
	f := newTestFSM(t)
	applySet(t, f, 2, "stale", "gone-after-install")
	if err := f.Restore(nopCloser{bytes.NewReader(stream)}); err != nil {
		t.Fatal(err)
	}
	if f.Applied().Index != 9 {
		t.Fatalf("applied %d, want 9", f.Applied().Index)
	}
	if _, found, _ := f.Get([]byte("stale")); found {
		t.Fatal("a key absent from the snapshot survived the install")
	}
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }
