package sim

import "testing/synctest"

// Quiescer makes real system calls harmless to a run's determinism.
//
// Virtual time cannot see a system call: a bubble goroutine blocked in one
// (a bbolt page write, a file copy) is running as far as synctest knows.
// With GOMAXPROCS=1 the runtime hands the only P to another goroutine when
// a system call lasts longer than a sysmon tick (20 µs to 10 ms of wall
// time), so whether the goroutines that were runnable at that instant run
// before or after the call returns depends on how fast the disk answered.
// On a loaded machine a leader's first log write took long enough that its
// replicators ran first and sent an empty AppendEntries instead of one
// with the leader's no-op entry: the same seed, two different runs (CI,
// seed 1 of snapshot-install).
//
// Quiesce, called right before such a call, waits until every other
// goroutine of the bubble is durably blocked (synctest.Wait), so that
// nothing else can run while the call is in progress, however long it
// takes. The caller must not hold a lock that another goroutine may be
// waiting for: a goroutine blocked on a sync.Mutex is not durably blocked,
// and Quiesce would wait for it forever.
type Quiescer struct {
	// gate serialises callers: synctest.Wait panics if two goroutines of
	// one bubble call it at once. Blocking on a channel made inside the
	// bubble is durable, so a goroutine waiting for the gate does not hold
	// up the holder's synctest.Wait.
	gate chan struct{}
}

// NewQuiescer returns a Quiescer for the calling goroutine's bubble; it
// must be called inside the bubble.
func NewQuiescer() *Quiescer { return &Quiescer{gate: make(chan struct{}, 1)} }

// Quiesce returns once every other goroutine of the bubble is durably
// blocked. The gate is released before returning rather than after the
// caller's system call: a caller may quiesce again from inside the call
// (a crash taken in the middle of an engine install copies the node's
// files). A goroutine let through the gate meanwhile does nothing but wait
// in synctest.Wait until the caller blocks.
func (q *Quiescer) Quiesce() {
	q.gate <- struct{}{}
	synctest.Wait()
	<-q.gate
}
