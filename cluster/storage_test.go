package cluster

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/raftsnap/testbed/engines"
	"github.com/raftsnap/testbed/engines/bbolt"
)

// CustomStorage opens the caller's engine in Dir/engine beside the log and
// snapshot stores, and a copy of Dir taken at any instant (a crash) opens
// again with everything written so far.
func TestCustomStorageOpensTheCallersEngineAndSurvivesACopy(t *testing.T) {
	opened := 0
	open := func(dir string) (engines.Engine, error) {
		opened++
		return bbolt.Open(filepath.Join(dir, "mine.db"), bbolt.Options{NoSync: true})
	}
	dir := t.TempDir()
	st, err := CustomStorage{Dir: filepath.Join(dir, "a"), OpenEngine: open, NoSync: true}.Open()
	if err != nil {
		t.Fatal(err)
	}
	b := engines.Batch{Applied: engines.Applied{Index: 7, Term: 2}}
	b.Put([]byte("k"), []byte("v"))
	if err := st.Engine.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := st.Stable.SetUint64([]byte("CurrentTerm"), 2); err != nil {
		t.Fatal(err)
	}
	if err := CopyDir(filepath.Join(dir, "a"), filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := CustomStorage{Dir: filepath.Join(dir, "b"), OpenEngine: open, NoSync: true}.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	v, ok, err := again.Engine.Get([]byte("k"))
	if err != nil || !ok || string(v) != "v" {
		t.Fatalf("copy lost the write: %q %v %v", v, ok, err)
	}
	if a, err := again.Engine.Applied(); err != nil || a.Index != 7 {
		t.Fatalf("applied %+v, %v", a, err)
	}
	if term, err := again.Stable.GetUint64([]byte("CurrentTerm")); err != nil || term != 2 {
		t.Fatalf("term %d, %v", term, err)
	}
	if opened != 2 {
		t.Fatalf("factory called %d times, want 2", opened)
	}
}

func TestCustomStorageNeedsAFactory(t *testing.T) {
	if _, err := (CustomStorage{Dir: t.TempDir()}).Open(); !errors.Is(err, ErrNoEngineFactory) {
		t.Fatalf("got %v, want ErrNoEngineFactory", err)
	}
	nilEngine := func(string) (engines.Engine, error) { return nil, nil }
	if _, err := (CustomStorage{Dir: t.TempDir(), OpenEngine: nilEngine}).Open(); !errors.Is(err, ErrNoEngineFactory) {
		t.Fatalf("factory returning no engine: got %v, want ErrNoEngineFactory", err)
	}
}
