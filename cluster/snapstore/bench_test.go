package snapstore

import (
	"io"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// BenchmarkSnapshot writes a 16 MB snapshot in 32 KB writes and reads it
// back through the verifying reader, on a memory FS.
func BenchmarkSnapshot(b *testing.B) {
	const size = 16 << 20
	chunk := randomData(9, 32<<10)
	s, err := New(vfs.NewMem(), "snaps", 1)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	for range b.N {
		sink, err := s.Create(1, 1, 1, testConfig, 0, nil)
		if err != nil {
			b.Fatal(err)
		}
		for written := 0; written < size; written += len(chunk) {
			if _, err := sink.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
		if err := sink.Close(); err != nil {
			b.Fatal(err)
		}
		_, rc, err := s.Open(sink.ID())
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.Copy(io.Discard, rc); err != nil || n != size {
			b.Fatalf("read %d bytes, %v", n, err)
		}
		rc.Close()
	}
}
