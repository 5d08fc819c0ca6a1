package sim

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Transport is one node's endpoint on a [Network]. It implements
// raft.Transport with the optional raft.WithClose, raft.WithPreVote and
// raft.WithPeers. AppendEntries can be pipelined (see
// [Transport.AppendEntriesPipeline]) and heartbeats use raft's heartbeat
// fast path, as with raft's NetworkTransport.
type Transport struct {
	net      *Network
	id       raft.ServerID
	consumer chan raft.RPC
	closed   atomic.Bool

	hbMu sync.Mutex
	hbFn func(raft.RPC)
}

var (
	_ raft.Transport   = (*Transport)(nil)
	_ raft.WithClose   = (*Transport)(nil)
	_ raft.WithPreVote = (*Transport)(nil)
	_ raft.WithPeers   = (*Transport)(nil)
)

// ErrBadResponse is returned when a node answered an RPC with a response of
// the wrong type.
var ErrBadResponse = errors.New("sim: unexpected response type")

// Consumer returns the channel raft receives incoming RPCs on.
func (t *Transport) Consumer() <-chan raft.RPC { return t.consumer }

// LocalAddr returns the node's address, which is its id.
func (t *Transport) LocalAddr() raft.ServerAddress { return raft.ServerAddress(t.id) }

// AppendEntries sends args to target. AppendEntries without entries sent by
// raft's heartbeat loop count as the separate kind "Heartbeat": raft sends
// them from another goroutine than the replication ones, so they get their
// own per-link counter (DESIGN.md rule 3).
func (t *Transport) AppendEntries(_ raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	kind := kindAppendEntries
	if isHeartbeat(args) {
		kind = kindHeartbeat
	}
	return roundTripInto(t, kind, target, args, resp)
}

// isHeartbeat is the test raft's NetworkTransport uses for its fast path.
func isHeartbeat(a *raft.AppendEntriesRequest) bool {
	return a.Term != 0 && (len(a.Addr) > 0 || len(a.Leader) > 0) &&
		a.PrevLogEntry == 0 && a.PrevLogTerm == 0 && len(a.Entries) == 0 && a.LeaderCommitIndex == 0
}

// RequestVote sends args to target.
func (t *Transport) RequestVote(_ raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	return roundTripInto(t, kindRequestVote, target, args, resp)
}

// RequestPreVote sends args to target.
func (t *Transport) RequestPreVote(_ raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	return roundTripInto(t, kindRequestPreVote, target, args, resp)
}

// TimeoutNow sends args to target.
func (t *Transport) TimeoutNow(_ raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	return roundTripInto(t, kindTimeoutNow, target, args, resp)
}

// InstallSnapshot sends args to target and streams data to the target's
// RPC Reader as the target reads it, never holding more than the reader's
// buffer. data is not touched after InstallSnapshot returns.
func (t *Transport) InstallSnapshot(_ raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	out, err := t.roundTrip(kindInstallSnapshot, target, args, data, args.Size)
	if err != nil {
		return err
	}
	r, ok := out.(*raft.InstallSnapshotResponse)
	if !ok {
		return ErrBadResponse
	}
	*resp = *r
	return nil
}

func roundTripInto[Req any, Resp any](t *Transport, kind rpcKind, target raft.ServerAddress, args *Req, resp *Resp) error {
	out, err := t.roundTrip(kind, target, args, nil, 0)
	if err != nil {
		return err
	}
	r, ok := out.(*Resp)
	if !ok || r == nil {
		return ErrBadResponse
	}
	*resp = *r
	return nil
}

// EncodePeer encodes addr.
func (t *Transport) EncodePeer(_ raft.ServerID, addr raft.ServerAddress) []byte { return []byte(addr) }

// DecodePeer decodes what EncodePeer encoded.
func (t *Transport) DecodePeer(b []byte) raft.ServerAddress { return raft.ServerAddress(b) }

// SetHeartbeatHandler installs raft's heartbeat fast path: heartbeats are
// handled by cb on the sender's goroutine instead of the consumer channel.
func (t *Transport) SetHeartbeatHandler(cb func(raft.RPC)) {
	t.hbMu.Lock()
	t.hbFn = cb
	t.hbMu.Unlock()
}

func (t *Transport) heartbeatHandler() func(raft.RPC) {
	t.hbMu.Lock()
	defer t.hbMu.Unlock()
	return t.hbFn
}

// Close closes the endpoint: its calls fail with raft.ErrTransportShutdown
// and the node becomes unreachable. Calls in flight run to their end.
func (t *Transport) Close() error {
	t.closed.Store(true)
	return nil
}

// Connect restores the link from this node to peer (t is ignored).
func (t *Transport) Connect(peer raft.ServerAddress, _ raft.Transport) {
	t.net.Unblock(t.id, raft.ServerID(peer))
}

// Disconnect cuts the link from this node to peer.
func (t *Transport) Disconnect(peer raft.ServerAddress) {
	t.net.Block(t.id, raft.ServerID(peer))
}

// DisconnectAll cuts the links from this node to every node known now.
func (t *Transport) DisconnectAll() {
	for _, id := range t.net.Nodes() {
		if id != t.id {
			t.net.Block(t.id, id)
		}
	}
}

// Purposes of the hashed choices about one message; each is a different
// word in the hash so that the choices are independent.
const (
	pDelay uint64 = iota + 1
	pReorder
	pReorderDelay
	pLoss
	pDup
	pDupDelay
	pDupReorder
	pDupReorderDelay
	pDupLoss
	pReplyDelay
	pReplyReorder
	pReplyReorderDelay
	pReplyLoss
	pCut
	pCutAt
	pCorrupt
	pCorruptAt
	pCorruptMask
	pStall
	pStallAt
	pTimeoutJitter
)

// call is one RPC in flight. It is used by one goroutine only.
type call struct {
	n        *Network
	kind     rpcKind
	src, dst raft.ServerID
	seq      uint64 // per-(link, kind) counter: the key of every choice
	seed     Seed   // the (link, kind) seed
	fwd, rev LinkOptions
	deadline time.Time
	timer    *time.Timer
	name     string // see label
	// A pipelined request is delivered in order after the one sent before
	// it on its pipeline (after is closed when that one arrives or is
	// dropped), unless the reorder fault delays it, and closes arrived
	// when its own fate is decided. Both are nil for other calls.
	after, arrived chan struct{}
}

func (c *call) h(purpose uint64) uint64 { return c.seed.Hash(c.seq, purpose) }

// label names the call in the trace and in errors, e.g.
// "AppendEntries n1->n2 #7". It is built once per call.
func (c *call) label() string {
	if c.name == "" {
		c.name = c.kind.String() + " " + string(c.src) + "->" + string(c.dst) + " #" + strconv.FormatUint(c.seq, 10)
	}
	return c.name
}

func (c *call) timeoutErr() error { return fmt.Errorf("%w: %s", ErrTimeout, c.label()) }

// deadlineC returns a channel that fires at the call's deadline.
func (c *call) deadlineC() <-chan time.Time {
	if c.timer == nil {
		c.timer = time.NewTimer(time.Until(c.deadline))
	}
	return c.timer.C
}

func (c *call) stopTimer() {
	if c.timer != nil {
		c.timer.Stop()
	}
}

// wait sleeps d in virtual time and reports true, or sleeps until the
// deadline and reports false if that comes first.
func (c *call) wait(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	left := time.Until(c.deadline)
	if d < left {
		time.Sleep(d)
		return true
	}
	time.Sleep(left)
	return false
}

// expire waits out the call: the message was dropped and the caller, as over
// a real network, learns of it only by its timeout.
func (c *call) expire() error {
	time.Sleep(time.Until(c.deadline))
	return c.timeoutErr()
}

// delay returns a message's one-way delay, and whether the reorder fault
// gave it an extra one.
func (c *call) delay(o *LinkOptions, pd, pr, prd uint64) (time.Duration, bool) {
	var d time.Duration
	if o.DelayMax > o.DelayMin {
		d = between(c.h(pd), o.DelayMin, o.DelayMax)
	} else {
		d = o.DelayMin
	}
	if o.ReorderProbability > 0 && chance(c.h(pr), o.ReorderProbability) {
		d += between(c.h(prd), 0, o.ReorderDelayMax)
		c.n.counters[c.kind].reordered.Add(1)
		return d, true
	}
	return d, false
}

// waitFor waits for ch to close and reports true, or reports false at the
// deadline. A closed ch wins over a deadline that is due at the same time.
func (c *call) waitFor(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
	}
	select {
	case <-ch:
		return true
	case <-c.deadlineC():
		return false
	}
}

// decided closes arrived, once: the request of a pipelined call reached
// its target or will never reach it.
func (c *call) decided() {
	if c.arrived != nil {
		close(c.arrived)
		c.arrived = nil
	}
}

// roundTrip carries one RPC: request leg, delivery, reply leg.
func (t *Transport) roundTrip(kind rpcKind, target raft.ServerAddress, args any, body io.Reader, size int64) (any, error) {
	c, injected, err := t.begin(kind, target, size)
	if err != nil {
		return nil, err
	}
	return t.finish(c, args, body, size, injected)
}

// begin starts a call on the caller's goroutine: it takes the call's place
// in its link's sequence, which keys every random choice about it, and
// sets its deadline.
func (t *Transport) begin(kind rpcKind, target raft.ServerAddress, size int64) (*call, []StreamFault, error) {
	n := t.net
	if t.closed.Load() {
		return nil, nil, raft.ErrTransportShutdown
	}
	c := &call{n: n, kind: kind, src: t.id, dst: raft.ServerID(target)}
	var injected []StreamFault
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, nil, raft.ErrTransportShutdown
	}
	fwd := n.linkLocked(c.src, c.dst)
	c.seq = fwd.seq[kind]
	fwd.seq[kind]++
	c.seed = fwd.seeds[kind]
	c.fwd = n.optionsLocked(fwd)
	c.rev = n.optionsLocked(n.linkLocked(c.dst, c.src))
	if kind == kindInstallSnapshot {
		injected, fwd.injected = fwd.injected, nil
	}
	n.inflight.Add(1)
	n.mu.Unlock()

	// A sub-microsecond hashed jitter keeps timeouts off the instants of
	// raft's own fixed-period timers: two goroutines woken at the same
	// instant run in an order that is not reliably reproducible.
	c.deadline = time.Now().Add(n.timeout(kind, size) + time.Duration(c.h(pTimeoutJitter)%uint64(TimeoutJitterMax)))
	n.counters[kind].sent.Add(1)
	if n.trace != nil {
		n.trace.Record(string(c.src), "send", c.label())
	}
	return c, injected, nil
}

// finish carries a call that begin started to its end.
func (t *Transport) finish(c *call, args any, body io.Reader, size int64, injected []StreamFault) (any, error) {
	n := t.net
	defer n.inflight.Done()
	defer c.stopTimer()
	defer c.decided()
	cnt := &n.counters[c.kind]
	resp, err := c.run(args, body, size, injected)
	if err != nil {
		cnt.failed.Add(1)
		if errors.Is(err, ErrTimeout) {
			cnt.timedOut.Add(1)
		}
		if n.trace != nil {
			n.trace.Record(string(c.src), "fail", c.label()+" "+failure(err))
		}
		return nil, err
	}
	cnt.replied.Add(1)
	if n.trace != nil {
		n.trace.Record(string(c.src), "reply", c.label()+" "+describe(resp))
	}
	return resp, nil
}

// failure names why a call failed, without repeating the call's label.
func failure(err error) string {
	switch {
	case errors.Is(err, ErrTimeout):
		return "timeout"
	case errors.Is(err, ErrStreamCut):
		return "stream cut"
	default:
		return err.Error()
	}
}

func (n *Network) timeout(kind rpcKind, size int64) time.Duration {
	if kind != kindInstallSnapshot {
		return n.opts.RPCTimeout
	}
	mib := (max(size, 0) + 1<<20 - 1) >> 20
	return n.opts.SnapshotTimeoutBase + time.Duration(mib)*n.opts.SnapshotTimeoutPerMiB
}

func (c *call) run(args any, body io.Reader, size int64, injected []StreamFault) (any, error) {
	d, reordered := c.delay(&c.fwd, pDelay, pReorder, pReorderDelay)
	if !c.wait(d) {
		return nil, c.timeoutErr()
	}
	if c.after != nil && !reordered && !c.waitFor(c.after) {
		return nil, c.timeoutErr()
	}
	ep, ok := c.arrive(c.src, c.dst, c.fwd.LossProbability, pLoss, legRequest)
	c.decided()
	if !ok {
		return nil, c.expire()
	}
	if c.kind != kindInstallSnapshot && c.fwd.DuplicateProbability > 0 && chance(c.h(pDup), c.fwd.DuplicateProbability) {
		c.duplicate(args)
	}
	if c.n.trace != nil {
		c.n.trace.Record(string(c.dst), "recv", c.label()+" "+describe(args))
	}
	respCh := make(chan raft.RPCResponse, 1)
	rpc := raft.RPC{Command: args, RespChan: respCh}
	var r raft.RPCResponse
	if c.kind == kindInstallSnapshot {
		var err error
		if r, err = c.stream(ep, rpc, respCh, body, size, injected); err != nil {
			return nil, err
		}
	} else {
		if !c.dispatch(ep, rpc) {
			return nil, c.timeoutErr()
		}
		select {
		case r = <-respCh:
		default:
			select {
			case r = <-respCh:
			case <-c.deadlineC():
				return nil, c.timeoutErr()
			}
		}
	}
	// A reply made after the replying endpoint closed comes from an
	// instance that crashed after the request reached it (World.CrashNow
	// closes the endpoint at the crash instant, and the old instance runs
	// on until it is stopped): it is never sent, because nothing a crashed
	// process does after the crash may reach another node. Delivering it
	// would let a leader count an entry as stored on a follower whose
	// restarted state does not have it.
	if ep.closed.Load() {
		c.n.counters[c.kind].unreachable.Add(1)
		if c.n.trace != nil {
			c.n.trace.Record(string(c.src), "drop", c.label()+" "+string(legReply)+"crashed")
		}
		return nil, c.expire()
	}
	if d, _ := c.delay(&c.rev, pReplyDelay, pReplyReorder, pReplyReorderDelay); !c.wait(d) {
		return nil, c.timeoutErr()
	}
	if _, ok := c.arrive(c.dst, c.src, c.rev.LossProbability, pReplyLoss, legReply); !ok {
		return nil, c.expire()
	}
	if r.Error != nil {
		return nil, r.Error
	}
	return r.Response, nil
}

// leg says which message of a call is arriving; its text prefixes the
// reason in "drop" trace events.
type leg string

const (
	legRequest   leg = ""
	legDuplicate leg = "duplicate "
	legReply     leg = "reply "
)

// arrive decides the fate of a message from -> to when it arrives: it is
// held while either end is paused, then dropped by a partition, at random,
// or (requests only) because to has no open endpoint. It returns to's
// endpoint and true if the message gets through.
func (c *call) arrive(from, to raft.ServerID, lossProbability float64, lossPurpose uint64, l leg) (*Transport, bool) {
	n := c.n
	var blocked bool
	var ep *Transport
	for {
		n.mu.Lock()
		if len(n.paused) > 0 && (n.paused[from] || n.paused[to]) {
			ch := n.changed
			n.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-c.deadlineC():
				return nil, false
			}
		}
		blocked = n.blockedLocked(from, to)
		ep = n.endpoints[to]
		n.mu.Unlock()
		break
	}
	cnt := &n.counters[c.kind]
	var reason string
	switch {
	case blocked:
		reason = "partition"
		cnt.blocked.Add(1)
	case lossProbability > 0 && chance(c.h(lossPurpose), lossProbability):
		reason = "loss"
		cnt.lost.Add(1)
	case l != legReply && (ep == nil || ep.closed.Load()):
		reason = "unreachable"
		cnt.unreachable.Add(1)
	default:
		if l != legReply {
			cnt.delivered.Add(1)
		}
		return ep, true
	}
	if n.trace != nil {
		n.trace.Record(string(c.src), "drop", c.label()+" "+string(l)+reason)
	}
	return nil, false
}

// dispatch hands rpc to the target's raft, through the heartbeat fast path
// or the consumer channel. It reports false if the target did not take it
// before the deadline (for example because it has shut down). There is
// deliberately no "target closed" case (DESIGN.md rule 7).
func (c *call) dispatch(ep *Transport, rpc raft.RPC) bool {
	if c.kind == kindHeartbeat {
		if fn := ep.heartbeatHandler(); fn != nil {
			fn(rpc)
			return true
		}
	}
	select {
	case ep.consumer <- rpc:
		return true
	default:
	}
	select {
	case ep.consumer <- rpc:
		return true
	case <-c.deadlineC():
		return false
	}
}

// duplicate delivers args a second time, after its own delay, from a new
// goroutine that ends by the original call's deadline at the latest. The
// duplicate's reply is discarded.
func (c *call) duplicate(args any) {
	n := c.n
	n.counters[c.kind].duplicated.Add(1)
	d, _ := c.delay(&c.fwd, pDupDelay, pDupReorder, pDupReorderDelay)
	dup := &call{n: n, kind: c.kind, src: c.src, dst: c.dst, seq: c.seq, seed: c.seed, fwd: c.fwd, rev: c.rev, deadline: c.deadline}
	// The caller's own count keeps inflight above zero, so this Add cannot
	// race with Close's Wait.
	n.inflight.Add(1)
	go func() {
		defer n.inflight.Done()
		defer dup.stopTimer()
		if !dup.wait(d) {
			return
		}
		ep, ok := dup.arrive(dup.src, dup.dst, dup.fwd.LossProbability, pDupLoss, legDuplicate)
		if !ok {
			return
		}
		if n.trace != nil {
			n.trace.Record(string(dup.dst), "recv-dup", dup.label()+" "+describe(args))
		}
		dup.dispatch(ep, raft.RPC{Command: args, RespChan: make(chan raft.RPCResponse, 1)})
	}()
}

// describe renders a request or response compactly for the trace.
func describe(m any) string {
	b := make([]byte, 0, 64)
	u := func(name string, v uint64) {
		b = append(b, name...)
		b = append(b, '=')
		b = strconv.AppendUint(b, v, 10)
		b = append(b, ' ')
	}
	flag := func(name string, v bool) {
		b = append(b, name...)
		b = append(b, '=')
		b = strconv.AppendBool(b, v)
		b = append(b, ' ')
	}
	switch m := m.(type) {
	case *raft.AppendEntriesRequest:
		u("term", m.Term)
		u("prev", m.PrevLogEntry)
		u("prevterm", m.PrevLogTerm)
		u("n", uint64(len(m.Entries)))
		u("commit", m.LeaderCommitIndex)
	case *raft.AppendEntriesResponse:
		u("term", m.Term)
		u("last", m.LastLog)
		flag("ok", m.Success)
	case *raft.RequestVoteRequest:
		u("term", m.Term)
		u("last", m.LastLogIndex)
		u("lastterm", m.LastLogTerm)
		flag("transfer", m.LeadershipTransfer)
	case *raft.RequestVoteResponse:
		u("term", m.Term)
		flag("granted", m.Granted)
	case *raft.RequestPreVoteRequest:
		u("term", m.Term)
		u("last", m.LastLogIndex)
		u("lastterm", m.LastLogTerm)
	case *raft.RequestPreVoteResponse:
		u("term", m.Term)
		flag("granted", m.Granted)
	case *raft.InstallSnapshotRequest:
		u("term", m.Term)
		u("last", m.LastLogIndex)
		u("lastterm", m.LastLogTerm)
		u("size", uint64(m.Size))
	case *raft.InstallSnapshotResponse:
		u("term", m.Term)
		flag("ok", m.Success)
	case *raft.TimeoutNowRequest, *raft.TimeoutNowResponse:
	default:
		b = fmt.Appendf(b, "%T ", m)
	}
	return string(b[:max(len(b)-1, 0)])
}
