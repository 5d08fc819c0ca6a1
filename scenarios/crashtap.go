package scenarios

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftsnap/testbed/engines"
	"github.com/raftsnap/testbed/faults"
)

// CrashPoint is a step of the snapshot path at which a crash tap kills a
// node.
type CrashPoint string

const (
	// CrashPersist is while the node writes a snapshot it built into its
	// snapshot store (FSMSnapshot.Persist), after After bytes.
	CrashPersist CrashPoint = "persist"
	// CrashSend is while the node, leading, reads a stored snapshot to
	// stream it to a follower, after After bytes.
	CrashSend CrashPoint = "send"
	// CrashReceive is while the node copies an InstallSnapshot body into
	// its snapshot store, after After bytes.
	CrashReceive CrashPoint = "receive"
	// CrashRestore is while the node's engine installs a snapshot
	// (Engine.Install), after After pairs.
	CrashRestore CrashPoint = "restore"
	// CrashInstalled is right after an install committed (the state
	// machine's Restored hook), before raft records the snapshot as applied
	// and compacts its log.
	CrashInstalled CrashPoint = "installed"
	// CrashBarrier is at a zero-copy local snapshot's durability barrier,
	// before the engine syncs (engines.Syncer): the engine's unsynced
	// writes are still at the mercy of a power loss. On a checkpoint store
	// it is before the checkpoint, or after it and before its completion
	// marker (tapEngine.Checkpoint).
	CrashBarrier CrashPoint = "barrier"
	// CrashReferenced is right after a zero-copy local snapshot's
	// reference became durable (on a checkpoint store, its checkpoint was
	// marked complete), before raft compacts its log.
	CrashReferenced CrashPoint = "referenced"
)

// CrashPoints lists every crash point, in the order of the snapshot path.
func CrashPoints() []CrashPoint {
	return []CrashPoint{CrashBarrier, CrashPersist, CrashReferenced, CrashSend, CrashReceive, CrashRestore, CrashInstalled}
}

// CrashTap is a crash planned at a point of the snapshot path. At At it is
// armed on the node Target resolves to then; it fires the next time that
// node reaches Point, once After bytes (or pairs) of that step have gone
// through. A step that ends before After fires it at its end, just before
// the step completes (the sink's Close, the install's commit). A tap that
// has not fired when the safety phase ends is disarmed and traced as
// crash-point-unfired.
//
// Firing crashes the node synchronously on the goroutine doing the step
// (World.CrashNow): what the node does afterwards reaches neither the
// network nor the state it restarts from. The node restarts after Down, or
// at the liveness phase if that comes first.
type CrashTap struct {
	At     time.Duration
	Target faults.Target
	// Lagging, instead of Target, picks the live node whose state machine
	// is furthest behind when the tap is armed: the one a partition cut
	// off, whichever node that turned out to be.
	Lagging bool
	Point   CrashPoint
	// After counts bytes, or pairs for CrashRestore; CrashInstalled has no
	// count.
	After int64
	// PowerLoss also drops unsynced writes on a Pebble node: each unsynced
	// block is lost with probability UnsyncedDataPercent/100 (as for
	// faults.KindPowerLoss). Other engines get a process crash.
	PowerLoss           bool
	UnsyncedDataPercent int
	Down                time.Duration
}

func (t CrashTap) String() string {
	unit := "B"
	if t.Point == CrashRestore {
		unit = " pairs"
	}
	crash := "process"
	if t.PowerLoss {
		crash = fmt.Sprintf("power-loss unsynced=%d%%", t.UnsyncedDataPercent)
	}
	target := t.Target.String()
	if t.Lagging {
		target = "lagging"
	}
	after := fmt.Sprintf(" after=%d%s", t.After, unit)
	switch t.Point {
	case CrashInstalled, CrashBarrier, CrashReferenced:
		after = ""
	}
	return fmt.Sprintf("t=%v crash-point=%s target=%s%s %s down=%v", t.At, t.Point, target, after, crash, t.Down)
}

// errCrashed is what a tapped step returns to the instance that a tap has
// just crashed, so that the dead instance abandons the step at once.
var errCrashed = errors.New("scenarios: node crashed by a crash tap")

// ArmCrash arms tap on node id, replacing any tap armed there. The world
// must have crash taps enabled (EnableCrashTaps) before the node started.
func (w *World) ArmCrash(id raft.ServerID, tap CrashTap) {
	w.mu.Lock()
	armed := !w.healed && w.nodes[id] != nil && !w.nodes[id].removed
	if armed {
		t := tap
		w.nodes[id].tap = &t
	}
	w.mu.Unlock()
	if armed {
		w.Trace.Record(string(id), "crash-point-armed", tap.String())
	}
}

// EnableCrashTaps wraps the engine and snapshot store of every node started
// from now on in the crash taps, so that ArmCrash can act on them. Worlds
// without taps keep their stores unwrapped, and so their behaviour exactly.
func (w *World) EnableCrashTaps() { w.crashTaps = true }

// fireTap crashes node id if a tap for point is armed on it and inc is its
// running instance; detail says where in the step. It runs on the node's
// own goroutine, so it only takes the crash-instant copy of the node's state
// (World.CrashNow) and leaves stopping the dead instance, and restarting the
// node, to a goroutine of its own.
func (w *World) fireTap(id raft.ServerID, inc int, point CrashPoint, detail string) bool {
	var t CrashTap
	claim := func(s *slot) bool {
		if s.tap == nil || s.tap.Point != point {
			return false
		}
		t, s.tap = *s.tap, nil
		w.stats.Faults["crash-point/"+string(point)]++
		return true
	}
	powerLoss := func() (bool, int) { return t.PowerLoss && w.takesPowerLoss(id), 100 - t.UnsyncedDataPercent }
	down := func() time.Duration { return t.Down }
	note := func() { w.Trace.Record(string(id), "crash-point", fmt.Sprintf("%s %s", t, detail)) }
	return w.crashInBackground(id, inc, claim, note, powerLoss, down, true)
}

// failStop crashes node id from inside its own I/O (see simDisk.failStop)
// and restarts it a second later. It reports whether it crashed the node:
// not while the node is starting or already down.
func (w *World) failStop(id raft.ServerID) bool {
	w.mu.Lock()
	inc := w.nodes[id].incarnation
	w.mu.Unlock()
	note := func() { w.Trace.Record(string(id), "fail-stop", "injected I/O error in a file Pebble owns") }
	processCrash := func() (bool, int) { return false, 100 }
	down := func() time.Duration { return time.Second }
	return w.crashInBackground(id, inc, nil, note, processCrash, down, false)
}

// crashInBackground crashes instance inc of node id now, from whatever
// goroutine is running (World.CrashNow), and leaves stopping the dead
// instance and restarting the node after down() to a goroutine of its own,
// which the liveness phase waits for. It does nothing and reports false if
// inc is no longer running, the liveness phase has begun, or claim (run
// under w.mu, nil for none) declines; note records why, before the crash.
// quiesce is passed on to crashNow: false only from inside Pebble's I/O.
func (w *World) crashInBackground(id raft.ServerID, inc int, claim func(*slot) bool, note func(),
	crash func() (powerLoss bool, keepPercent int), down func() time.Duration, quiesce bool) bool {
	w.mu.Lock()
	s := w.nodes[id]
	if s.incarnation != inc || s.node == nil || w.healed || (claim != nil && !claim(s)) {
		w.mu.Unlock()
		return false
	}
	// Registered under mu, which StartLiveness takes before waiting for
	// these goroutines: none is added once the wait has begun.
	w.background.Add(1)
	w.mu.Unlock()
	note()
	powerLoss, keepPercent := crash()
	stop, err := w.crashNow(id, powerLoss, keepPercent, quiesce)
	if err != nil {
		w.Trace.Record(string(id), "crash-error", w.errText(err))
		stop = func() error { return nil }
	}
	wait := down()
	go func() {
		defer w.background.Done()
		if err := stop(); err != nil {
			w.Trace.Record(string(id), "shutdown-error", err.Error())
		}
		select {
		case <-w.healedCh:
			return // the liveness phase restarts every node that is down
		case <-time.After(wait):
		}
		if w.Node(id) == nil && !w.removed(id) {
			if err := w.Restart(id); err != nil {
				w.Trace.Record(string(id), "restart-error", w.errText(err))
			}
		}
	}()
	return true
}

// tapEngine counts the pairs an Install takes from its source, for
// CrashRestore.
type tapEngine struct {
	engines.Engine
	w   *World
	id  raft.ServerID
	inc int
}

// Sync fires CrashBarrier before the durability barrier syncs the engine.
func (e *tapEngine) Sync() error {
	if e.w.fireTap(e.id, e.inc, CrashBarrier, "before sync") {
		return errCrashed
	}
	return engines.Sync(e.Engine)
}

// Checkpoint fires CrashBarrier in a checkpoint store's local snapshot,
// either before the checkpoint (the engine's writes still unsynced, as at
// the zero-copy store's barrier) or after it and before the store writes
// its completion marker (a complete checkpoint that no marker vouches
// for); which one is hashed from (seed, node, incarnation, checkpoint), so
// that runs on the other stores keep their plans.
func (e *tapEngine) Checkpoint(dir string) error {
	before := e.w.Seed.Child(fmt.Sprintf("checkpoint-tap/%s/%d/%s", e.id, e.inc, dir)).Hash(0)%2 == 0
	if before && e.w.fireTap(e.id, e.inc, CrashBarrier, "before checkpoint") {
		return errCrashed
	}
	if err := engines.Checkpoint(e.Engine, dir); err != nil {
		return err
	}
	if !before && e.w.fireTap(e.id, e.inc, CrashBarrier, "checkpoint written, before its marker") {
		return errCrashed
	}
	return nil
}

func (e *tapEngine) OpenCheckpoint(dir string) (engines.View, error) {
	return engines.OpenCheckpoint(e.Engine, dir)
}

func (e *tapEngine) RestoreCheckpoint(dir string) error {
	return engines.RestoreCheckpoint(e.Engine, dir)
}

func (e *tapEngine) Install(src engines.Iterator, applied engines.Applied) error {
	return e.Engine.Install(&tapIterator{Iterator: src, e: e}, applied)
}

// tapIterator fires CrashRestore after the armed number of pairs, or when
// the source runs out first. The crash is taken when it fires (the node's
// state is copied then, before the install commits); the old instance then
// installs on, on state nobody reads, as every crashed instance goes on
// until it is stopped. (Failing its install instead would make raft panic,
// and end the simulator, when the install is an operator's Raft.Restore:
// raft panics on any error of the state machine's restore of a user
// restore.)
type tapIterator struct {
	engines.Iterator
	e     *tapEngine
	pairs int64
	fired bool
}

func (it *tapIterator) Next() bool {
	w, id := it.e.w, it.e.id
	if after, ok := w.armedAfter(id, CrashRestore); ok && !it.fired && it.pairs >= after {
		it.fire(fmt.Sprintf("%d pairs in", it.pairs))
	}
	if !it.Iterator.Next() {
		if _, ok := w.armedAfter(id, CrashRestore); ok && it.Iterator.Err() == nil {
			it.fire(fmt.Sprintf("at end of source, %d pairs in", it.pairs))
		}
		return false
	}
	it.pairs++
	return true
}

func (it *tapIterator) fire(detail string) {
	it.fired = it.e.w.fireTap(it.e.id, it.e.inc, CrashRestore, detail)
}

// armedAfter returns the After of the tap armed on id for point.
func (w *World) armedAfter(id raft.ServerID, point CrashPoint) (int64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if t := w.nodes[id].tap; t != nil && t.Point == point {
		return t.After, true
	}
	return 0, false
}

// tapSnapshots returns, when crash taps are on, the wrapper around a
// node's guarded snapshot store that counts the bytes of each snapshot
// written or read; nil otherwise.
func (w *World) tapSnapshots(id raft.ServerID, inc int) func(raft.SnapshotStore) raft.SnapshotStore {
	if !w.crashTaps {
		return nil
	}
	return func(s raft.SnapshotStore) raft.SnapshotStore {
		return &tapStore{SnapshotStore: s, w: w, id: id, inc: inc}
	}
}

// tapStore is the outermost snapshot store raft sees. Raft writes into a
// sink in two ways: FSMSnapshot.Persist calls Write (CrashPersist), and
// installSnapshot copies the InstallSnapshot body with io.Copy, which calls
// the sink's ReadFrom (CrashReceive). Readers of stored snapshots are the
// leader's replication (CrashSend) and start-up recovery, which fires
// nothing because the node is not running yet.
type tapStore struct {
	raft.SnapshotStore
	w   *World
	id  raft.ServerID
	inc int
}

func (s *tapStore) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := s.SnapshotStore.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		return nil, err
	}
	return &tapSink{SnapshotSink: sink, store: s}, nil
}

func (s *tapStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	meta, rc, err := s.SnapshotStore.Open(id)
	if err != nil {
		return meta, rc, err
	}
	return meta, &tapReader{ReadCloser: rc, store: s}, nil
}

// tapSink counts the bytes written into one sink. Which step it serves is
// known from the first byte: a Write is a persist, a ReadFrom a receive.
type tapSink struct {
	raft.SnapshotSink
	store   *tapStore
	point   CrashPoint
	written int64
	crashed bool
}

func (k *tapSink) Write(p []byte) (int, error) {
	if k.point == "" {
		k.point = CrashPersist
	}
	return k.write(p)
}

// ReadFrom copies r in 32 KiB reads, as io.Copy does for a writer without
// ReadFrom, so that tapping changes no read the network sees.
func (k *tapSink) ReadFrom(r io.Reader) (int64, error) {
	if k.point == "" {
		k.point = CrashReceive
	}
	var total int64
	buf := make([]byte, 32<<10)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			m, werr := k.write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// write passes p on, firing the tap at exactly the armed byte count.
func (k *tapSink) write(p []byte) (int, error) {
	if k.crashed {
		return 0, errCrashed
	}
	if after, ok := k.store.w.armedAfter(k.store.id, k.point); ok && k.written+int64(len(p)) > after {
		head := max(after-k.written, 0)
		n, err := k.SnapshotSink.Write(p[:head])
		k.written += int64(n)
		if err != nil {
			return n, err
		}
		if k.store.w.fireTap(k.store.id, k.store.inc, k.point, fmt.Sprintf("%d bytes in", k.written)) {
			k.crashed = true
			return n, errCrashed
		}
		m, err := k.SnapshotSink.Write(p[head:])
		k.written += int64(m)
		return n + m, err
	}
	n, err := k.SnapshotSink.Write(p)
	k.written += int64(n)
	return n, err
}

// Close fires a tap whose byte count the stream never reached, just before
// the snapshot would be published (for a zero-copy local snapshot, which
// writes no bytes, just before its reference is).
func (k *tapSink) Close() error {
	if k.crashed {
		return errCrashed
	}
	if k.point == "" {
		// Nothing written: a zero-copy store's local snapshot, whose
		// persist (its barrier) ends here.
		k.point = CrashPersist
	}
	if _, ok := k.store.w.armedAfter(k.store.id, k.point); ok &&
		k.store.w.fireTap(k.store.id, k.store.inc, k.point, fmt.Sprintf("at close, %d bytes in", k.written)) {
		k.crashed = true
		_ = k.SnapshotSink.Cancel()
		return errCrashed
	}
	return k.SnapshotSink.Close()
}

// tapReader counts the bytes read from a stored snapshot, for CrashSend.
// The crash is taken when it fires; the old instance then reads on, on
// state nobody reads and through an endpoint already closed, as every
// crashed instance goes on until it is stopped. (Failing its read instead
// would make raft panic, and end the simulator, when the read is an
// operator's Raft.Restore restoring what it stored.)
type tapReader struct {
	io.ReadCloser
	store *tapStore
	read  int64
	fired bool
}

func (r *tapReader) Read(p []byte) (int, error) {
	w, id := r.store.w, r.store.id
	if after, ok := w.armedAfter(id, CrashSend); ok && !r.fired && r.read+int64(len(p)) > after {
		if head := max(after-r.read, 0); head > 0 {
			p = p[:head]
		} else {
			r.fire(fmt.Sprintf("%d bytes in", r.read))
		}
	}
	n, err := r.ReadCloser.Read(p)
	r.read += int64(n)
	if err == io.EOF && !r.fired {
		if _, ok := w.armedAfter(id, CrashSend); ok {
			r.fire(fmt.Sprintf("at end, %d bytes in", r.read))
		}
	}
	return n, err
}

func (r *tapReader) fire(detail string) {
	r.fired = r.store.w.fireTap(r.store.id, r.store.inc, CrashSend, detail)
}
