package scenarios

import (
	"errors"
	"fmt"
	"reflect"
	"slices"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/raftsnap/testbed/sim"
)

// crashBlockSize is the granularity at which Pebble's MemFS.CrashClone
// keeps or drops unsynced file data; powerLossClone keeps it.
const crashBlockSize = 4096

// powerLossClone returns what fs holds after a power loss now: everything
// synced, and each unsynced directory entry and each 4 KiB block of
// unsynced file data kept with probability keepPercent.
//
// It is Pebble's MemFS.CrashClone (v2.1.7) with one difference: every keep
// or drop is a hash of (seed, path, block) instead of the next draw of one
// generator. CrashClone walks directories with Go's map iteration, whose
// order is random in every run, so the same generator hands its draws to
// different files each time: a power loss with 0 < keepPercent < 100 kept
// different data on the same seed (swarm/Pebble 336: a node restarted with
// log entry 325 in one run and without it in the next). At 0 and 100 no
// draw decides anything, and CrashClone is used as it is.
//
// MemFS exports no way to see what is synced, so the state is read
// through reflection (TestMemFSHasTheShapePowerLossCloneReads pins it);
// the caller must make sure nothing writes to fs meanwhile (the world
// quiesces first). The clone is written through MemFS's own API and then
// synced whole, as CrashClone's is.
func powerLossClone(fs *vfs.MemFS, keepPercent int, seed sim.Seed) (*vfs.MemFS, error) {
	if keepPercent <= 0 || keepPercent >= 100 {
		return fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: min(max(keepPercent, 0), 100), RNG: seed.Rand("crash-clone")}), nil
	}
	root, err := memRoot(fs)
	if err != nil {
		return nil, err
	}
	keep := func(path string, block uint64) bool {
		return seed.Child(path).Hash(block)%100 < uint64(keepPercent)
	}
	out := vfs.NewCrashableMem()
	if err := cloneMemDir(root, "", out, keep); err != nil {
		return nil, fmt.Errorf("scenarios: power-loss clone: %w", err)
	}
	return out, nil
}

// entryBlock is the block number that keys the keep-or-drop of a
// directory entry that was never synced, as opposed to its data blocks.
const entryBlock = ^uint64(0)

// cloneMemDir writes into out the crash state of directory node dir
// (a reflect.Value of *vfs.memNode, as are all nodes here) at path.
func cloneMemDir(dir reflect.Value, path string, out *vfs.MemFS, keep func(string, uint64) bool) error {
	synced, current := memChildren(dir, "syncedChildren"), memChildren(dir, "children")
	chosen := map[string]reflect.Value{}
	for name, child := range synced {
		chosen[name] = child
	}
	for _, name := range sortedKeys(current) {
		if keep(out.PathJoin(path, name), entryBlock) {
			chosen[name] = current[name]
		}
	}
	for _, name := range sortedKeys(chosen) {
		child, childPath := chosen[name], out.PathJoin(path, name)
		if child.Elem().FieldByName("isDir").Bool() {
			if err := out.MkdirAll(childPath, 0o755); err != nil {
				return err
			}
			if err := cloneMemDir(child, childPath, out, keep); err != nil {
				return err
			}
			continue
		}
		mu := child.Elem().FieldByName("mu")
		data := slices.Clone(mu.FieldByName("syncedData").Bytes())
		unsynced := mu.FieldByName("data").Bytes()
		for i := 0; i < len(unsynced); i += crashBlockSize {
			if !keep(childPath, uint64(i/crashBlockSize)) {
				continue
			}
			block := unsynced[i:min(i+crashBlockSize, len(unsynced))]
			if grow := i + len(block) - len(data); grow > 0 {
				data = append(data, make([]byte, grow)...)
			}
			copy(data[i:], block)
		}
		if err := writeSynced(out, childPath, data); err != nil {
			return err
		}
	}
	d, err := out.OpenDir(dirPath(path))
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

func dirPath(path string) string {
	if path == "" {
		return "/"
	}
	return path
}

func writeSynced(out *vfs.MemFS, path string, data []byte) error {
	f, err := out.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	return errors.Join(err, f.Sync(), f.Close())
}

// memRoot returns the root node of fs, a reflect.Value of *vfs.memNode.
func memRoot(fs *vfs.MemFS) (reflect.Value, error) {
	root := reflect.ValueOf(fs).Elem().FieldByName("root")
	if !root.IsValid() || root.IsNil() {
		return reflect.Value{}, errors.New("scenarios: vfs.MemFS has no root node (has Pebble's MemFS changed?)")
	}
	return root, nil
}

// memChildren reads a directory node's map field (children or
// syncedChildren; the latter is nil until the directory is first synced).
func memChildren(dir reflect.Value, field string) map[string]reflect.Value {
	m := dir.Elem().FieldByName(field)
	out := map[string]reflect.Value{}
	if m.IsNil() {
		return out
	}
	it := m.MapRange()
	for it.Next() {
		out[it.Key().String()] = it.Value()
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
