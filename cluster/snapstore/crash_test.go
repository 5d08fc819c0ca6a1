package snapstore

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// cloner takes crash clones of a crashable MemFS before every filesystem
// operation that goes through the errorfs wrapper, while armed: one for
// each percentage of unsynced data kept. It never injects an error.
type cloner struct {
	mem      *vfs.MemFS
	rng      *rand.Rand
	percents []int

	mu     sync.Mutex
	armed  bool
	ops    []string
	clones []crashPoint
}

type crashPoint struct {
	fs      *vfs.MemFS
	before  string // the operation about to run
	percent int
}

func (c *cloner) MaybeError(op errorfs.Op) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.armed {
		desc := fmt.Sprintf("%v %s", op.Kind, op.Path)
		c.ops = append(c.ops, desc)
		for _, p := range c.percents {
			c.clones = append(c.clones, crashPoint{c.mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: p, RNG: c.rng}), desc, p})
		}
	}
	return nil
}

func (c *cloner) String() string { return "cloner" }

func (c *cloner) arm(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = on
}

// TestCrashDuringSnapshot crashes at every filesystem operation of
// Create, Write and Close of a second snapshot while a first, complete one
// exists, keeping none, some (seeded) or all of the unsynced data. Each
// crashed state, reopened with New, must list either the first snapshot
// alone or both (or, when Close reaps with retain 1, the second alone),
// every listed snapshot must read back exactly its bytes, and the directory
// must hold nothing but the listed snapshots. The state after Close returned must hold the
// second snapshot even if nothing unsynced survives.
func TestCrashDuringSnapshot(t *testing.T) {
	for _, retain := range []int{2, 1} {
		t.Run(fmt.Sprintf("retain=%d", retain), func(t *testing.T) {
			crashDuringSnapshot(t, retain)
		})
	}
}

func crashDuringSnapshot(t *testing.T, retain int) {
	mem := vfs.NewCrashableMem()
	cl := &cloner{mem: mem, rng: rand.New(rand.NewPCG(42, uint64(retain))), percents: []int{0, 10, 50, 90, 100}}
	fs := errorfs.Wrap(mem, cl)
	s, err := New(fs, "node/snaps", retain)
	if err != nil {
		t.Fatal(err)
	}
	data := map[string][]byte{}
	first := randomData(10, 150_000)
	firstID := writeSnapshot(t, s, 1, 100, first)
	data[firstID] = first

	second := randomData(11, 200_000) // several bufio flushes and MemFS blocks
	cl.arm(true)
	secondID := writeSnapshot(t, s, 1, 200, second)
	cl.arm(false)
	data[secondID] = second
	after := crashPoint{mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0}), "(Close returned)", 0}

	allowed := [][]string{{firstID}, {secondID, firstID}}
	if retain == 1 {
		allowed = append(allowed, []string{secondID})
	}
	seen := map[string]int{}
	for i, cp := range append(cl.clones, after) {
		where := fmt.Sprintf("crash point %d, before %s, %d%% unsynced kept", i, cp.before, cp.percent)
		c, err := New(cp.fs, "node/snaps", retain)
		if err != nil {
			t.Fatalf("%s: New: %v", where, err)
		}
		ids := listIDs(t, c)
		if !slices.ContainsFunc(allowed, func(a []string) bool { return slices.Equal(a, ids) }) {
			t.Fatalf("%s: List = %v, want one of %v", where, ids, allowed)
		}
		seen[strings.Join(ids, ",")]++
		for _, id := range ids {
			meta, got, err := readSnapshot(t, c, id)
			if err != nil {
				t.Fatalf("%s: listed snapshot %s does not read back: %v", where, id, err)
			}
			if !bytes.Equal(got, data[id]) || meta.Size != int64(len(data[id])) {
				t.Fatalf("%s: listed snapshot %s reads back %d bytes that differ from the %d written", where, id, len(got), len(data[id]))
			}
		}
		// Nothing else survives: no tmp or del directory (New removes
		// them) and no half-published snapshot that List hides but
		// nothing ever removes.
		if names, want := dirNames(t, cp.fs, "node/snaps"), slices.Sorted(slices.Values(ids)); !slices.Equal(names, want) {
			t.Fatalf("%s: directory holds %v after New, want only the listed %v", where, names, want)
		}
	}
	afterIDs := listIDs(t, newStore2(t, after.fs, retain))
	if len(afterIDs) == 0 || afterIDs[0] != secondID {
		t.Fatalf("after Close returned, a crash keeping only synced data lists %v: the second snapshot was not durable", afterIDs)
	}
	if seen[firstID] == 0 {
		t.Fatalf("no crash point showed the state before the second snapshot: %v", seen)
	}
	t.Logf("%d operations, %d crash states: %v", len(cl.ops), len(cl.clones)+1, seen)
}

func newStore2(t *testing.T, fs vfs.FS, retain int) *Store {
	t.Helper()
	s, err := New(fs, "node/snaps", retain)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
