package cluster

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"unsafe"

	"github.com/hashicorp/raft"
)

// ErrFutureLeaked is returned by Node.Await for a future that raft left
// unanswered when the node shut down. hashicorp/raft v1.8.0 hands committed
// entries and their futures to its state machine goroutine through a
// buffered channel, and that goroutine returns on shutdown without
// answering what is still queued; the futures of Apply, Barrier and
// configuration changes carry no shutdown channel, so their Error would
// block forever (README, known upstream bugs).
var ErrFutureLeaked = errors.New("cluster: raft shut down without answering the future (hashicorp/raft future leak)")

// futures tracks the futures a node's callers wait on through Await, so
// that Shutdown can answer those raft leaves unanswered.
type futures struct {
	mu      sync.Mutex
	pending map[raft.Future]struct{}
	stopped bool
	leaked  int
}

// Await waits for f, a future of this node's raft, and returns its error.
// If the node shuts down and raft leaves f unanswered, Await returns
// ErrFutureLeaked instead of blocking forever: without this, a client
// waiting on such a future (or the goroutine it left waiting) would block a
// simulated run forever.
func (n *Node) Await(f raft.Future) error {
	if !n.futures.add(f) {
		// Already shut down: an unanswered f stays so.
		if answered(f) {
			return f.Error()
		}
		return ErrFutureLeaked
	}
	err := f.Error()
	n.futures.remove(f)
	if errors.Is(err, errReleased) {
		return ErrFutureLeaked
	}
	return err
}

// errReleased is what Shutdown answers a leaked future with.
var errReleased = fmt.Errorf("released at shutdown: %w", raft.ErrRaftShutdown)

func (fs *futures) add(f raft.Future) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.stopped {
		return false
	}
	if fs.pending == nil {
		fs.pending = map[raft.Future]struct{}{}
	}
	fs.pending[f] = struct{}{}
	return true
}

func (fs *futures) remove(f raft.Future) {
	fs.mu.Lock()
	delete(fs.pending, f)
	fs.mu.Unlock()
}

// releaseAll answers, with errReleased, every pending future raft has not
// answered. It must run only once raft's goroutines have all returned:
// then nothing else can answer them. It returns how many it answered.
func (fs *futures) releaseAll() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.stopped = true
	n := 0
	for f := range fs.pending {
		if release(f) {
			n++
		}
	}
	fs.leaked += n
	return n
}

// Leaked reports how many futures raft left unanswered when this node shut
// down (see ErrFutureLeaked).
func (n *Node) Leaked() int {
	n.futures.mu.Lock()
	defer n.futures.mu.Unlock()
	return n.futures.leaked
}

// deferErrorFields finds the response channel and flag that every raft
// future embeds (raft.deferError's errCh and responded). raft exports no
// way to answer a future, and the leak is raft's: reaching into the
// future is this workaround's whole purpose. It reports false for a future
// of another shape (such as raft's errorFuture, which never blocks).
func deferErrorFields(f raft.Future) (errCh chan error, responded *bool, ok bool) {
	v := reflect.ValueOf(f)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return nil, nil, false
	}
	s := v.Elem()
	ch, flag := s.FieldByName("errCh"), s.FieldByName("responded")
	if !ch.IsValid() || !flag.IsValid() || ch.Type() != reflect.TypeFor[chan error]() || flag.Kind() != reflect.Bool {
		return nil, nil, false
	}
	errCh = *(*chan error)(unsafe.Pointer(ch.UnsafeAddr()))
	responded = (*bool)(unsafe.Pointer(flag.UnsafeAddr()))
	return errCh, responded, errCh != nil
}

// answered reports whether raft has answered f.
func answered(f raft.Future) bool {
	_, responded, ok := deferErrorFields(f)
	return !ok || *responded
}

// release answers f with errReleased if raft has not answered it, the way
// raft's own respond does, and reports whether it did.
func release(f raft.Future) bool {
	errCh, responded, ok := deferErrorFields(f)
	if !ok || *responded {
		return false
	}
	errCh <- errReleased // buffered (one slot), and nobody else sends now
	close(errCh)
	*responded = true
	return true
}
