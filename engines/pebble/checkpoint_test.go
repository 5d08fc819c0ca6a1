package pebble

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/raftsnap/testbed/engines"
	"github.com/raftsnap/testbed/engines/enginetest"
)

func writeAt(t *testing.T, e *Engine, index uint64, kv ...string) {
	t.Helper()
	b := engines.Batch{Applied: engines.Applied{Index: index, Term: 1}}
	for i := 0; i+1 < len(kv); i += 2 {
		b.Put([]byte(kv[i]), []byte(kv[i+1]))
	}
	if err := e.Write(b); err != nil {
		t.Fatal(err)
	}
}

func viewState(t *testing.T, v engines.View) (uint64, map[string]string) {
	t.Helper()
	pairs, err := enginetest.Collect(v)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range pairs {
		out[string(p.Key)] = string(p.Value)
	}
	return v.Applied().Index, out
}

func engineState(t *testing.T, e engines.Engine) (uint64, map[string]string) {
	t.Helper()
	v, err := e.View()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	return viewState(t, v)
}

// A checkpoint holds exactly the state at the moment it was taken, also
// after the engine moved on, and a restore brings the engine back to it.
func TestCheckpointKeepsItsStateAndRestoresIt(t *testing.T) {
	fs := vfs.NewMem()
	e, err := Open("engine", Options{FS: fs, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	writeAt(t, e, 1, "a", "1", "b", "1")
	// A bulk install puts sstables under the checkpoint (hard links).
	if err := e.Install(enginetest.SliceIterator([]enginetest.Pair{{Key: []byte("c"), Value: []byte("3")}, {Key: []byte("d"), Value: []byte("4")}}), engines.Applied{Index: 5, Term: 1}); err != nil {
		t.Fatal(err)
	}
	writeAt(t, e, 6, "e", "6")
	if err := e.Checkpoint("ckpt"); err != nil {
		t.Fatal(err)
	}
	writeAt(t, e, 7, "c", "changed", "f", "7")

	v, err := e.OpenCheckpoint("ckpt")
	if err != nil {
		t.Fatal(err)
	}
	idx, got := viewState(t, v)
	want := map[string]string{"c": "3", "d": "4", "e": "6"}
	if idx != 6 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("checkpoint view: index %d %v, want 6 %v", idx, got, want)
	}
	live, err := e.View()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.RestoreCheckpoint("ckpt"); !errors.Is(err, ErrViewsOpen) {
		t.Fatalf("restore with a view of the engine open: %v, want ErrViewsOpen", err)
	}
	if err := live.Close(); err != nil {
		t.Fatal(err)
	}
	// A reader of the checkpoint itself does not stand in the way.
	if err := e.RestoreCheckpoint("ckpt"); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if idx, got := engineState(t, e); idx != 6 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after restore: index %d %v, want 6 %v", idx, got, want)
	}
	writeAt(t, e, 8, "g", "8")
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	// The checkpoint is untouched by the restored engine's writes, and the
	// engine reopens restored.
	e, err = Open("engine", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	want["g"] = "8"
	if idx, got := engineState(t, e); idx != 8 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("reopened: index %d %v, want 8 %v", idx, got, want)
	}
	v, err = e.OpenCheckpoint("ckpt")
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	delete(want, "g")
	if idx, got := viewState(t, v); idx != 6 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("checkpoint after restore: index %d %v, want 6 %v", idx, got, want)
	}
}
