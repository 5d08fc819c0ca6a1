package sim

import (
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
)

// An InstallSnapshot body travels as a rendezvous between two goroutines:
// the receiver's Read hands its buffer to the sender's call goroutine, which
// reads the sender's data straight into it, applies the stream faults and
// hands back the count. So the body is never buffered by the network, the
// sender's data is only ever read by the goroutine that called
// InstallSnapshot (and never after it returns), and every wait (stall,
// bandwidth, partition) happens on that goroutine with the call's deadline.

type readResult struct {
	n   int
	err error
}

type bodyStream struct {
	reqs chan []byte     // receiver -> sender: a buffer to fill
	reps chan readResult // sender -> receiver: how it was filled
	done chan struct{}   // closed when the sender stops serving
	// abort is what reads return once done is closed; written before
	// close(done), read after <-done.
	abort error
}

type bodyReader struct {
	s   *bodyStream
	err error // sticky
}

func (r *bodyReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	// Only one case can be ready at a time: the sender either waits for a
	// buffer or has closed done, and once it holds our buffer it either
	// answers or closes done, never both.
	select {
	case r.s.reqs <- p:
	case <-r.s.done:
		r.err = r.s.abort
		return 0, r.err
	}
	select {
	case res := <-r.s.reps:
		if res.err != nil {
			r.err = res.err
		}
		return res.n, res.err
	case <-r.s.done:
		r.err = r.s.abort
		return 0, r.err
	}
}

// streamPlan says where the faults of one body fall; -1 means none.
type streamPlan struct {
	cutAt, corruptAt, stallAt int64
	mask                      byte
	stall                     time.Duration
}

func (c *call) planStream(size int64, injected []StreamFault) streamPlan {
	p := streamPlan{cutAt: -1, corruptAt: -1, stallAt: -1}
	o := &c.fwd
	offset := func(purpose uint64) int64 {
		if size <= 0 {
			return 0
		}
		return int64(c.h(purpose) % uint64(size))
	}
	if o.SnapshotCutProbability > 0 && chance(c.h(pCut), o.SnapshotCutProbability) {
		p.cutAt = offset(pCutAt)
	}
	if o.SnapshotCorruptProbability > 0 && chance(c.h(pCorrupt), o.SnapshotCorruptProbability) {
		p.corruptAt = offset(pCorruptAt)
	}
	if o.SnapshotStallProbability > 0 && chance(c.h(pStall), o.SnapshotStallProbability) {
		p.stallAt = offset(pStallAt)
		p.stall = o.SnapshotStallDuration
	}
	for _, f := range injected {
		off := max(f.Offset, 0)
		switch f.Kind {
		case StreamCut:
			p.cutAt = off
		case StreamCorrupt:
			p.corruptAt = off
		case StreamStall:
			p.stallAt = off
			p.stall = f.Stall
		}
	}
	p.mask = byte(c.h(pCorruptMask)%255) + 1
	return p
}

// stream delivers an InstallSnapshot request whose body is read from body,
// then serves the receiver's reads until its reply or the deadline.
func (c *call) stream(ep *Transport, rpc raft.RPC, respCh chan raft.RPCResponse, body io.Reader, size int64, injected []StreamFault) (r raft.RPCResponse, err error) {
	n := c.n
	s := &bodyStream{reqs: make(chan []byte), reps: make(chan readResult), done: make(chan struct{})}
	defer func() {
		s.abort = err
		if s.abort == nil {
			s.abort = io.ErrClosedPipe
		}
		close(s.done)
	}()
	rpc.Reader = &bodyReader{s: s}
	if !c.dispatch(ep, rpc) {
		return r, c.timeoutErr()
	}
	plan := c.planStream(size, injected)
	rate := c.fwd.SnapshotBytesPerSecond
	start := time.Now()
	stalled := false
	var pos int64
	for {
		var p []byte
		select {
		case r = <-respCh:
			return r, nil
		case <-c.deadlineC():
			return r, c.timeoutErr()
		case p = <-s.reqs:
		}
		if plan.stallAt >= 0 && !stalled && pos >= plan.stallAt {
			stalled = true
			n.streamStalls.Add(1)
			c.traceStreamFault("stall", pos, plan.stall.String())
			if !c.wait(plan.stall) {
				return r, c.timeoutErr()
			}
		}
		if plan.cutAt >= 0 && pos >= plan.cutAt {
			n.streamCuts.Add(1)
			c.traceStreamFault("cut", pos, "")
			err := fmt.Errorf("%w: %s at byte %d", ErrStreamCut, c.label(), pos)
			s.reps <- readResult{0, err}
			return r, err
		}
		limit := int64(len(p))
		if plan.cutAt > pos {
			limit = min(limit, plan.cutAt-pos)
		}
		if !stalled && plan.stallAt > pos {
			limit = min(limit, plan.stallAt-pos)
		}
		if !c.holdStream() {
			return r, c.timeoutErr()
		}
		nr, rerr := body.Read(p[:limit])
		if plan.corruptAt >= pos && plan.corruptAt < pos+int64(nr) {
			p[plan.corruptAt-pos] ^= plan.mask
			n.streamCorruptions.Add(1)
			c.traceStreamFault("corrupt", plan.corruptAt, "mask="+strconv.Itoa(int(plan.mask)))
		}
		pos += int64(nr)
		n.snapshotBytes.Add(uint64(nr))
		if rate > 0 {
			due := start.Add(time.Duration(pos/rate)*time.Second + time.Duration((pos%rate)*int64(time.Second)/rate))
			if !c.wait(time.Until(due)) {
				return r, c.timeoutErr()
			}
		}
		s.reps <- readResult{nr, rerr}
	}
}

// holdStream waits while the stream's link is cut or an end is paused: a
// connection over a partition stalls rather than loses bytes.
func (c *call) holdStream() bool {
	n := c.n
	for {
		n.mu.Lock()
		held := n.blockedLocked(c.src, c.dst) || n.paused[c.src] || n.paused[c.dst]
		ch := n.changed
		n.mu.Unlock()
		if !held {
			return true
		}
		select {
		case <-ch:
		case <-c.deadlineC():
			return false
		}
	}
}

func (c *call) traceStreamFault(what string, at int64, extra string) {
	if c.n.trace == nil {
		return
	}
	d := what + " " + c.label() + " at=" + strconv.FormatInt(at, 10)
	if extra != "" {
		d += " " + extra
	}
	c.n.trace.Record(string(c.src), "stream-fault", d)
}
