package scenarios

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/raftsnap/testbed/sim"
)

// crashFixture builds a filesystem with synced and unsynced data in many
// files: directories synced once, then files whose first blocks are
// synced and whose later blocks are not, and files created after the last
// directory sync.
func crashFixture(t *testing.T) *vfs.MemFS {
	t.Helper()
	fs := vfs.NewCrashableMem()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	syncDir := func(path string) {
		d, err := fs.OpenDir(path)
		must(err)
		must(d.Sync())
		must(d.Close())
	}
	fill := func(seed, n int) []byte { return bytes.Repeat([]byte{byte(seed)}, n) }
	for _, dir := range []string{"engine", "raft", "snapshots"} {
		must(fs.MkdirAll(dir, 0o755))
		for i := range 6 {
			f, err := fs.Create(fs.PathJoin(dir, fmt.Sprintf("%06d.log", i)), vfs.WriteCategoryUnspecified)
			must(err)
			_, err = f.Write(fill(i+1, 2*crashBlockSize))
			must(err)
			must(f.Sync())
			_, err = f.Write(fill(i+100, 3*crashBlockSize+17))
			must(err)
			must(f.Close())
		}
		syncDir(dir)
		f, err := fs.Create(fs.PathJoin(dir, "late"), vfs.WriteCategoryUnspecified)
		must(err)
		_, err = f.Write(fill(7, crashBlockSize))
		must(err)
		must(f.Close())
	}
	syncDir("/")
	return fs
}

// dumpFS lists every file of fs with its contents, in path order.
func dumpFS(t *testing.T, fs vfs.FS) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	var walk func(dir string)
	walk = func(dir string) {
		names, err := fs.List(dir)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(names)
		for _, name := range names {
			path := fs.PathJoin(dir, name)
			if dir == "/" {
				path = name
			}
			st, err := fs.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.IsDir() {
				walk(path)
				continue
			}
			f, err := fs.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			out[path] = data
		}
	}
	walk("/")
	return out
}

func describe(files map[string][]byte) string {
	var b strings.Builder
	for _, k := range sortedKeys(files) {
		fmt.Fprintf(&b, "%s:%x\n", k, sim.Seed(0).Child(string(files[k])))
	}
	return b.String()
}

// A power loss is a function of the crash's seed: the same filesystem and
// seed give the same surviving data every time, and another seed other
// data.
func TestPowerLossCloneIsAFunctionOfItsSeed(t *testing.T) {
	fs := crashFixture(t)
	first := ""
	for i := range 20 {
		clone, err := powerLossClone(fs, 50, sim.Seed(7))
		if err != nil {
			t.Fatal(err)
		}
		got := describe(dumpFS(t, clone))
		if i == 0 {
			first = got
		} else if got != first {
			t.Fatalf("clone %d differs from the first on the same seed:\n%s\nvs\n%s", i, got, first)
		}
	}
	other, err := powerLossClone(fs, 50, sim.Seed(8))
	if err != nil {
		t.Fatal(err)
	}
	if describe(dumpFS(t, other)) == first {
		t.Fatal("seeds 7 and 8 kept the same data")
	}
}

// Pebble's own CrashClone hands one generator's draws to files in Go's
// random map order, so one seed keeps different data from run to run: the
// reason powerLossClone exists. If a Pebble upgrade makes this test fail,
// powerLossClone can go.
func TestPebbleCrashCloneDependsOnMapOrder(t *testing.T) {
	fs := crashFixture(t)
	seen := map[string]bool{}
	for range 20 {
		clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(7, 7))})
		seen[describe(dumpFS(t, clone))] = true
	}
	if len(seen) < 2 {
		t.Fatal("Pebble's CrashClone kept the same data 20 times on one seed: is it deterministic now?")
	}
}

// What survives: all synced data and entries; of the unsynced, every 4 KiB
// block and directory entry with the given probability (none at 0, all at
// 100, as Pebble's CrashClone); a file is its synced data with some
// unsynced blocks laid over it.
func TestPowerLossCloneKeepsSyncedDataAndSomeUnsynced(t *testing.T) {
	fs := crashFixture(t)
	synced := dumpFS(t, fs.CrashClone(vfs.CrashCloneCfg{}))
	current := dumpFS(t, fs)
	for _, c := range []struct {
		keep int
		want map[string][]byte
	}{{0, synced}, {100, current}} {
		clone, err := powerLossClone(fs, c.keep, sim.Seed(1))
		if err != nil {
			t.Fatal(err)
		}
		if got := dumpFS(t, clone); !reflect.DeepEqual(got, c.want) {
			t.Errorf("keep %d%%: got\n%s\nwant\n%s", c.keep, describe(got), describe(c.want))
		}
	}
	// The hashed walk itself, keeping nothing and everything.
	root, err := memRoot(fs)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		keep bool
		want map[string][]byte
	}{{false, synced}, {true, current}} {
		out := vfs.NewCrashableMem()
		if err := cloneMemDir(root, "", out, func(string, uint64) bool { return c.keep }); err != nil {
			t.Fatal(err)
		}
		if got := dumpFS(t, out); !reflect.DeepEqual(got, c.want) {
			t.Errorf("walk keeping %v: got\n%s\nwant\n%s", c.keep, describe(got), describe(c.want))
		}
	}
	clone, err := powerLossClone(fs, 50, sim.Seed(3))
	if err != nil {
		t.Fatal(err)
	}
	got := dumpFS(t, clone)
	keptBlocks, droppedBlocks, lateKept := 0, 0, 0
	for path, data := range current {
		have, ok := got[path]
		base, wasSynced := synced[path]
		switch {
		case !wasSynced && ok:
			lateKept++
			continue
		case !wasSynced:
			continue
		case !ok:
			t.Fatalf("%s was synced and is gone", path)
		}
		if !bytes.HasPrefix(have, base[:min(len(base), len(have))]) || len(have) < len(base) {
			t.Fatalf("%s lost synced data", path)
		}
		for i := len(base); i < len(data); i += crashBlockSize {
			block := data[i:min(i+crashBlockSize, len(data))]
			switch {
			case i+len(block) <= len(have) && bytes.Equal(have[i:i+len(block)], block):
				keptBlocks++
			case i >= len(have) || bytes.Equal(have[i:min(i+len(block), len(have))], make([]byte, min(len(block), len(have)-i))):
				droppedBlocks++
			default:
				t.Fatalf("%s block %d is neither the written data nor a hole", path, i/crashBlockSize)
			}
		}
	}
	if keptBlocks == 0 || droppedBlocks == 0 {
		t.Fatalf("at 50%%: %d unsynced blocks kept, %d dropped; want some of each", keptBlocks, droppedBlocks)
	}
	t.Logf("at 50%%: %d unsynced blocks kept, %d dropped, %d of 3 unsynced files kept", keptBlocks, droppedBlocks, lateKept)
}

// powerLossClone reads MemFS's unexported state; this pins the shape it
// reads, so a Pebble upgrade that changes it fails here, not in a run.
func TestMemFSHasTheShapePowerLossCloneReads(t *testing.T) {
	root := reflect.ValueOf(vfs.NewCrashableMem()).Elem().FieldByName("root")
	if !root.IsValid() || root.Kind() != reflect.Pointer {
		t.Fatal("vfs.MemFS has no root pointer")
	}
	node := root.Type().Elem()
	bytesType := reflect.TypeFor[[]byte]()
	for _, f := range []struct {
		path []string
		want reflect.Type
	}{
		{[]string{"isDir"}, reflect.TypeFor[bool]()},
		{[]string{"children"}, reflect.MapOf(reflect.TypeFor[string](), root.Type())},
		{[]string{"syncedChildren"}, reflect.MapOf(reflect.TypeFor[string](), root.Type())},
		{[]string{"mu", "data"}, bytesType},
		{[]string{"mu", "syncedData"}, bytesType},
	} {
		typ := node
		for _, name := range f.path {
			field, ok := typ.FieldByName(name)
			if !ok {
				t.Fatalf("memNode has no field %s", strings.Join(f.path, "."))
			}
			typ = field.Type
		}
		if typ != f.want {
			t.Errorf("memNode.%s is %v, want %v", strings.Join(f.path, "."), typ, f.want)
		}
	}
}
