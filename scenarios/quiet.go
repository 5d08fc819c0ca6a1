package scenarios

import (
	"github.com/hashicorp/raft"

	"github.com/raftsnap/testbed/cluster"
	"github.com/raftsnap/testbed/engines"
	"github.com/raftsnap/testbed/sim"
)

// quietStores makes every call into a node's stores that may write to a
// real disk wait until the rest of the bubble is durably blocked (see
// sim.Quiescer): engine writes, installs and closes, log and stable store
// writes, and the closing of everything Open opened. bbolt nodes write
// real files; Pebble nodes write to memory and would not need it, but
// every node goes through the same points so that one seed takes the
// same path on either engine (Differential). Reads are left alone: bbolt
// reads are memory-mapped and make no system calls.
//
// It wraps outermost, over planted bugs and crash taps, so that no
// wrapper's lock is held while waiting.
func quietStores(q *sim.Quiescer, st *cluster.Stores) {
	st.Engine = &quietEngine{Engine: st.Engine, q: q}
	st.Logs = &quietLogs{LogStore: st.Logs, q: q}
	st.Stable = &quietStable{StableStore: st.Stable, q: q}
	for i, c := range st.Closers {
		st.Closers[i] = func() error { q.Quiesce(); return c() }
	}
}

type quietEngine struct {
	engines.Engine
	q *sim.Quiescer
}

func (e *quietEngine) Write(b engines.Batch) error {
	e.q.Quiesce()
	return e.Engine.Write(b)
}

func (e *quietEngine) Install(src engines.Iterator, applied engines.Applied) error {
	e.q.Quiesce()
	return e.Engine.Install(src, applied)
}

func (e *quietEngine) Close() error {
	e.q.Quiesce()
	return e.Engine.Close()
}

type quietLogs struct {
	raft.LogStore
	q *sim.Quiescer
}

func (l *quietLogs) StoreLog(log *raft.Log) error {
	l.q.Quiesce()
	return l.LogStore.StoreLog(log)
}

func (l *quietLogs) StoreLogs(logs []*raft.Log) error {
	l.q.Quiesce()
	return l.LogStore.StoreLogs(logs)
}

func (l *quietLogs) DeleteRange(min, max uint64) error {
	l.q.Quiesce()
	return l.LogStore.DeleteRange(min, max)
}

func (l *quietLogs) IsMonotonic() bool { return isMonotonic(l.LogStore) }

// isMonotonic reports what a wrapped log store declares, for wrappers to
// pass on: raft drops its whole log after an install only for a monotonic
// store, and a wrapper that hid it would send raft down another path.
func isMonotonic(l raft.LogStore) bool {
	m, ok := l.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

type quietStable struct {
	raft.StableStore
	q *sim.Quiescer
}

func (s *quietStable) Set(key, val []byte) error {
	s.q.Quiesce()
	return s.StableStore.Set(key, val)
}

func (s *quietStable) SetUint64(key []byte, val uint64) error {
	s.q.Quiesce()
	return s.StableStore.SetUint64(key, val)
}

// Sync is the zero-copy store's durability barrier, a real fsync on a
// bbolt node.
func (e *quietEngine) Sync() error {
	e.q.Quiesce()
	return engines.Sync(e.Engine)
}

// Checkpoint, OpenCheckpoint and RestoreCheckpoint forward a checkpoint
// store's engine capability (engines.Checkpointer); the two that write
// wait as writes do.
func (e *quietEngine) Checkpoint(dir string) error {
	e.q.Quiesce()
	return engines.Checkpoint(e.Engine, dir)
}

func (e *quietEngine) OpenCheckpoint(dir string) (engines.View, error) {
	return engines.OpenCheckpoint(e.Engine, dir)
}

func (e *quietEngine) RestoreCheckpoint(dir string) error {
	e.q.Quiesce()
	return engines.RestoreCheckpoint(e.Engine, dir)
}
