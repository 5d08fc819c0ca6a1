package snapshot_test

import (
	"os"
	"testing"
)

func mkdirTemp(prefix string) (string, error) { return os.MkdirTemp("", prefix) }

// TestMain removes the directories benchmarks filled, since benchmark data
// outlives any one sub-benchmark's b.TempDir.
func TestMain(m *testing.M) {
	code := m.Run()
	loaded.Lock()
	for _, le := range loaded.m {
		le.engine.Close()
	}
	loaded.Unlock()
	for _, d := range benchDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}
