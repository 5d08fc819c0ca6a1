package sim

import (
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// maxPipelined is how many AppendEntries a pipeline holds in flight before
// AppendEntries blocks, as raft's NetworkTransport (rpcMaxPipeline).
const maxPipelined = 128

// AppendEntriesPipeline opens a pipeline of AppendEntries to target, as
// raft's NetworkTransport does over one connection: raft sends without
// waiting for replies and reads the replies in the order it sent. Each
// request is its own call with its own timeout, delay and fate (loss,
// partitions, pauses, duplicates, like any AppendEntries); requests reach
// the target in the order they were sent, as on a connection, except that
// one the reorder fault delays is overtaken by later ones. A request that
// fails (lost, blocked, timed out) completes its future with the error and
// an empty response, which makes raft abort the pipeline and fall back to
// one AppendEntries at a time, as a broken connection does. With
// NetworkOptions.NoPipelining it returns raft.ErrPipelineReplicationNotSupported.
func (t *Transport) AppendEntriesPipeline(_ raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	if t.net.noPipelining.Load() {
		return nil, raft.ErrPipelineReplicationNotSupported
	}
	if t.closed.Load() {
		return nil, raft.ErrTransportShutdown
	}
	p := &pipeline{
		t:          t,
		target:     target,
		inprogress: make(chan *appendFuture, maxPipelined),
		done:       make(chan raft.AppendFuture, maxPipelined),
		shutdown:   make(chan struct{}),
		broken:     make(chan struct{}),
	}
	go p.decode()
	return p, nil
}

type pipeline struct {
	t          *Transport
	target     raft.ServerAddress
	inprogress chan *appendFuture
	done       chan raft.AppendFuture
	// last is closed when the request sent last arrives or is dropped;
	// used by the sending goroutine only.
	last chan struct{}

	closeOnce sync.Once
	shutdown  chan struct{}
	// broken is closed when a request fails: as on a connection that
	// broke, every later send fails at once (raft then stops pipelining
	// and closes the pipeline). Without it a sender blocked on a full
	// pipeline after raft's decoder stopped reading waited forever.
	breakOnce sync.Once
	broken    chan struct{}
}

// errPipelineBroken is returned by sends on a pipeline one of whose
// requests failed.
var errPipelineBroken = errors.New("sim: pipeline broken by a failed AppendEntries")

// AppendEntries sends args down the pipeline; resp is filled in before the
// future completes. It blocks while maxPipelined requests are in flight.
func (p *pipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	if isClosedCh(p.shutdown) {
		return nil, raft.ErrPipelineShutdown
	}
	if isClosedCh(p.broken) {
		return nil, errPipelineBroken
	}
	c, _, err := p.t.begin(kindAppendEntries, p.target, 0)
	if err != nil {
		return nil, err
	}
	p.t.net.pipelined.Add(1)
	c.after, c.arrived = p.last, make(chan struct{})
	p.last = c.arrived
	f := &appendFuture{start: time.Now(), args: args, resp: resp, ready: make(chan struct{})}
	go func() {
		out, err := p.t.finish(c, args, nil, 0, nil)
		if err == nil {
			if r, ok := out.(*raft.AppendEntriesResponse); ok && r != nil {
				*resp = *r
			} else {
				err = ErrBadResponse
			}
		}
		f.err = err
		if err != nil {
			p.breakOnce.Do(func() { close(p.broken) })
		}
		close(f.ready)
	}()
	select {
	case p.inprogress <- f:
		return f, nil
	default:
	}
	select {
	case p.inprogress <- f:
		return f, nil
	case <-p.shutdown:
		return nil, raft.ErrPipelineShutdown
	case <-p.broken:
		return nil, errPipelineBroken
	}
}

// decode hands completed futures to raft in the order they were sent, as
// a connection delivers replies.
func (p *pipeline) decode() {
	for {
		if isClosedCh(p.shutdown) {
			return
		}
		var f *appendFuture
		select {
		case f = <-p.inprogress:
		case <-p.shutdown:
			return
		}
		select {
		case <-f.ready:
		case <-p.shutdown:
			return
		}
		if isClosedCh(p.shutdown) {
			return
		}
		select {
		case p.done <- f:
		case <-p.shutdown:
			return
		}
	}
}

// Consumer returns the channel of completed futures, in send order.
func (p *pipeline) Consumer() <-chan raft.AppendFuture { return p.done }

// Close stops the pipeline. Requests in flight run to their end (their
// calls are bounded by their timeouts) but are no longer handed to raft.
func (p *pipeline) Close() error {
	p.closeOnce.Do(func() { close(p.shutdown) })
	return nil
}

// appendFuture is one pipelined AppendEntries.
type appendFuture struct {
	start time.Time
	args  *raft.AppendEntriesRequest
	resp  *raft.AppendEntriesResponse
	ready chan struct{}
	err   error // set before ready is closed
}

func (f *appendFuture) Error() error {
	<-f.ready
	return f.err
}

func (f *appendFuture) Start() time.Time                      { return f.start }
func (f *appendFuture) Request() *raft.AppendEntriesRequest   { return f.args }
func (f *appendFuture) Response() *raft.AppendEntriesResponse { return f.resp }

func isClosedCh(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
