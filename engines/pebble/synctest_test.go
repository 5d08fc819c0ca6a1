package pebble

import (
	"bytes"
	"fmt"
	"runtime/debug"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftsnap/testbed/engines"
)

// TestSeveralSynctestBubblesInOneProcess guards DESIGN.md rule 10: a
// dependency that keeps channels in a global pool (as Pebble's row-block
// sstable writer does) makes the second bubble that flushes die with "send on
// synctest channel from outside bubble". Each bubble opens an engine, writes,
// flushes, installs, reads a view and closes; synctest.Test also fails if the
// engine leaves a goroutine behind.
func TestSeveralSynctestBubblesInOneProcess(t *testing.T) {
	// A garbage collection between bubbles empties sync.Pools and hides the
	// problem; the test allocates only a few MiB.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	for round := range 3 {
		synctest.Test(t, func(t *testing.T) {
			e := mustOpen(t, vfs.NewMem())
			// Enough data for several blocks per table: a table of one block
			// never reaches the writers' block-write path.
			var b engines.Batch
			for i := range 2000 {
				b.Put(fmt.Appendf(nil, "w%06d", i), bytes.Repeat([]byte{'v'}, 100))
			}
			b.Applied = at(1, 1, "")
			if err := e.Write(b); err != nil {
				t.Fatal(err)
			}
			if err := e.db.Flush(); err != nil {
				t.Fatal(err)
			}
			want := state{pairs: sortedPairs("k", "bubble"+strings.Repeat("-", 100), 2000), applied: at(uint64(10+round), 1, "cfg")}
			mustInstall(t, e, want.applied, want.pairs)
			mustWrite(t, e, want.applied, "k000001", "")
			if err := e.db.Flush(); err != nil {
				t.Fatal(err)
			}
			want.pairs = append(want.pairs[:1], want.pairs[2:]...)
			if got := mustState(t, e); !got.equal(want) {
				t.Fatalf("round %d: state %v", round, got)
			}
			mustClose(t, e)
		})
	}
}
