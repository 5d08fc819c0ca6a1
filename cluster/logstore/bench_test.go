package logstore

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

// BenchmarkStoreLogs measures synced appends of batches of 1 KB entries,
// as a leader's log sees them, on a memory FS and on the real disk.
func BenchmarkStoreLogs(b *testing.B) {
	for _, fsName := range []string{"mem", "disk"} {
		for _, batch := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/batch=%d", fsName, batch), func(b *testing.B) {
				opts, dir := Options{FS: vfs.NewMem()}, "raft"
				if fsName == "disk" {
					opts, dir = Options{}, b.TempDir()
				}
				s, err := Open(dir, opts)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				data := make([]byte, 1024)
				logs := make([]*raft.Log, batch)
				next := uint64(1)
				b.SetBytes(int64(batch * len(data)))
				b.ResetTimer()
				for range b.N {
					for i := range logs {
						logs[i] = &raft.Log{Index: next, Term: 1, Data: data}
						next++
					}
					if err := s.StoreLogs(logs); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkGetLog measures reads of entries just written (the replication
// path reads the log tail).
func BenchmarkGetLog(b *testing.B) {
	s, err := Open("raft", Options{FS: vfs.NewMem()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.StoreLogs(entries(1, 1000, 1)); err != nil {
		b.Fatal(err)
	}
	var l raft.Log
	b.ResetTimer()
	for i := range b.N {
		if err := s.GetLog(uint64(i%1000)+1, &l); err != nil {
			b.Fatal(err)
		}
	}
}
