package sim

import (
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// DefaultRPCTimeout is the timeout of every RPC but InstallSnapshot when
// NetworkOptions.RPCTimeout is zero.
const DefaultRPCTimeout = time.Second

// TimeoutJitterMax bounds the hashed jitter added to every RPC timeout. It
// keeps a timeout from firing at the very instant of one of raft's timers
// that a chain of fixed durations (timeouts, backoffs, the leader lease)
// started from the same origin: goroutines woken at one instant run in an
// order that does not reliably replay (DESIGN.md rule 9).
const TimeoutJitterMax = time.Microsecond

// LinkOptions model one direction of one link. The zero value is a perfect
// link: no delay, no loss, no duplicates, no snapshot stream faults.
type LinkOptions struct {
	// DelayMin and DelayMax bound the one-way delay of every message
	// (requests and replies), drawn uniformly from [DelayMin, DelayMax].
	DelayMin, DelayMax time.Duration
	// LossProbability is the chance that a message (a request or a reply)
	// is lost; the caller then waits for its RPC timeout and gets an error.
	LossProbability float64
	// DuplicateProbability is the chance that a request is delivered a
	// second time, after its own delay; the duplicate's reply is discarded.
	// InstallSnapshot is never duplicated: its body is a single stream.
	DuplicateProbability float64
	// ReorderProbability is the chance that a message gets an extra delay
	// drawn from [0, ReorderDelayMax], so that later messages overtake it.
	ReorderProbability float64
	ReorderDelayMax    time.Duration
	// SnapshotBytesPerSecond limits the throughput of InstallSnapshot
	// bodies; zero means unlimited (a body then takes no virtual time).
	SnapshotBytesPerSecond int64
	// SnapshotCutProbability is the chance that an InstallSnapshot body is
	// cut at a uniformly chosen offset: the receiver's read fails with
	// ErrStreamCut and the sender's call fails.
	SnapshotCutProbability float64
	// SnapshotCorruptProbability is the chance that one byte, at a uniformly
	// chosen offset, of an InstallSnapshot body is flipped on the way.
	// raft only checks the byte count, so the damage reaches the FSM.
	SnapshotCorruptProbability float64
	// SnapshotStallProbability is the chance that an InstallSnapshot body
	// stops for SnapshotStallDuration at a uniformly chosen offset.
	SnapshotStallProbability float64
	SnapshotStallDuration    time.Duration
}

// NetworkOptions configure a [Network]. The zero value is a perfect network
// with default timeouts.
type NetworkOptions struct {
	// Link is the model of every link that has no model of its own
	// (see [Network.SetLink]).
	Link LinkOptions
	// RPCTimeout bounds every call but InstallSnapshot, from the call to the
	// reply; zero means DefaultRPCTimeout. Every timeout also gets a hashed
	// jitter below TimeoutJitterMax.
	RPCTimeout time.Duration
	// SnapshotTimeoutBase plus SnapshotTimeoutPerMiB for every MiB of the
	// body bounds an InstallSnapshot call. Zero means 10 x RPCTimeout and
	// 1 s (enough for links of at least 1 MiB/s).
	SnapshotTimeoutBase   time.Duration
	SnapshotTimeoutPerMiB time.Duration
	// NoPipelining makes AppendEntriesPipeline unsupported, so raft sends
	// one AppendEntries at a time; by default it pipelines, as over raft's
	// NetworkTransport.
	NoPipelining bool
}

// StreamFaultKind names a fault of an InstallSnapshot body stream.
type StreamFaultKind uint8

const (
	// StreamCut ends the stream before the byte at Offset: the receiver's
	// read returns ErrStreamCut and the sender's call fails with it.
	StreamCut StreamFaultKind = iota + 1
	// StreamCorrupt flips bits of the byte at Offset.
	StreamCorrupt
	// StreamStall stops the stream for Stall before the byte at Offset.
	StreamStall
)

// StreamFault is one fault for the next InstallSnapshot body on a link; see
// [Network.InjectStreamFault].
type StreamFault struct {
	Kind   StreamFaultKind
	Offset int64         // bytes from the start of the body
	Stall  time.Duration // for StreamStall
}

var (
	// ErrTimeout is returned (wrapped) by a call whose request or reply
	// was lost, blocked or too slow.
	ErrTimeout = errors.New("sim: rpc timed out")
	// ErrStreamCut is returned (wrapped) to both ends of an InstallSnapshot
	// whose body stream was cut.
	ErrStreamCut = errors.New("sim: snapshot stream cut")
)

type rpcKind uint8

const (
	kindAppendEntries rpcKind = iota
	kindHeartbeat
	kindRequestVote
	kindRequestPreVote
	kindInstallSnapshot
	kindTimeoutNow
	numKinds
)

var kindNames = [numKinds]string{"AppendEntries", "Heartbeat", "RequestVote", "RequestPreVote", "InstallSnapshot", "TimeoutNow"}

func (k rpcKind) String() string { return kindNames[k] }

// KindStats counts what happened to the messages of one RPC kind.
type KindStats struct {
	Sent        uint64 `json:"sent"`        // calls made
	Delivered   uint64 `json:"delivered"`   // requests handed to the target, duplicates included
	Duplicated  uint64 `json:"duplicated"`  // requests delivered twice
	Reordered   uint64 `json:"reordered"`   // messages given an extra delay
	Lost        uint64 `json:"lost"`        // requests or replies lost at random
	Blocked     uint64 `json:"blocked"`     // requests or replies dropped by a partition
	Unreachable uint64 `json:"unreachable"` // requests to a node with no open transport
	Failed      uint64 `json:"failed"`      // calls that returned an error (timeouts included)
	TimedOut    uint64 `json:"timed_out"`   // calls that ended by their timeout
	Replied     uint64 `json:"replied"`     // calls that got their reply back
}

// Stats are the network's counters, for reports.
type Stats struct {
	Kinds             map[string]KindStats `json:"kinds"` // by RPC kind; Heartbeat is AppendEntries without entries sent by raft's heartbeat loop
	SnapshotBytes     uint64               `json:"snapshot_bytes"`
	StreamCuts        uint64               `json:"stream_cuts"`
	StreamCorruptions uint64               `json:"stream_corruptions"`
	StreamStalls      uint64               `json:"stream_stalls"`
	// Pipelined counts the AppendEntries sent through a pipeline (they are
	// also in Kinds["AppendEntries"]).
	Pipelined uint64 `json:"pipelined"`
}

type kindCounters struct {
	sent, delivered, duplicated, reordered, lost, blocked, unreachable, failed, timedOut, replied atomic.Uint64
}

type linkKey struct{ from, to raft.ServerID }

// link is the state of one direction of one link.
type link struct {
	seeds    [numKinds]Seed   // per-kind seed of this link's choices
	seq      [numKinds]uint64 // per-kind message counter
	opts     *LinkOptions     // nil: the network default
	injected []StreamFault    // for the next InstallSnapshot
}

// Network is the simulated network between raft nodes. Create it with
// [NewNetwork] inside the run's bubble (it belongs to that bubble); give each
// node the endpoint returned by [Network.Transport]; [Network.Close] it after
// the nodes have shut down, before the bubble ends.
//
// Partitions and pauses act on messages when they arrive: a message in flight
// when a partition starts is dropped, one in flight when it heals gets through.
// Shapes (Partition, Isolate, Bridge, OneWay) add cuts to the current ones;
// HealAll removes every cut. Flapping is driven by the caller: alternate a
// shape and HealAll over virtual time.
type Network struct {
	seed  Seed
	trace *Trace
	opts  NetworkOptions

	// inflight counts calls and duplicate deliveries, so Close can wait for
	// them; Add happens under mu while !closed.
	inflight sync.WaitGroup
	counters [numKinds]kindCounters

	snapshotBytes     atomic.Uint64
	streamCuts        atomic.Uint64
	streamCorruptions atomic.Uint64
	streamStalls      atomic.Uint64
	pipelined         atomic.Uint64
	noPipelining      atomic.Bool

	mu        sync.Mutex // never held across a wait (DESIGN.md rule 6)
	closed    bool
	endpoints map[raft.ServerID]*Transport
	links     map[linkKey]*link
	cut       map[linkKey]bool
	isolated  map[raft.ServerID]bool
	paused    map[raft.ServerID]bool
	// changed is closed and replaced whenever cuts or pauses change, to
	// wake messages held by a pause or a stalled stream.
	changed chan struct{}
}

// SetPipelining turns pipelined AppendEntries on or off for pipelines
// opened from now on (see NetworkOptions.NoPipelining).
func (n *Network) SetPipelining(on bool) { n.noPipelining.Store(!on) }

// NewNetwork returns a network whose random choices derive from seed and
// whose events go to trace (nil for none). Call it inside the run's bubble.
func NewNetwork(seed Seed, trace *Trace, opts NetworkOptions) *Network {
	if opts.RPCTimeout <= 0 {
		opts.RPCTimeout = DefaultRPCTimeout
	}
	if opts.SnapshotTimeoutBase <= 0 {
		opts.SnapshotTimeoutBase = 10 * opts.RPCTimeout
	}
	if opts.SnapshotTimeoutPerMiB <= 0 {
		opts.SnapshotTimeoutPerMiB = time.Second
	}
	n := &Network{
		seed:      seed,
		trace:     trace,
		opts:      opts,
		endpoints: make(map[raft.ServerID]*Transport),
		links:     make(map[linkKey]*link),
		cut:       make(map[linkKey]bool),
		isolated:  make(map[raft.ServerID]bool),
		paused:    make(map[raft.ServerID]bool),
		changed:   make(chan struct{}),
	}
	n.noPipelining.Store(opts.NoPipelining)
	return n
}

// Transport returns a new endpoint for the node id, whose address is its id.
// A previous endpoint of id is closed, so a restarted node gets a fresh one:
// messages that arrive from then on reach the new endpoint, as they would
// reach a restarted process at the same address.
func (n *Network) Transport(id raft.ServerID) *Transport {
	t := &Transport{net: n, id: id, consumer: make(chan raft.RPC)}
	n.mu.Lock()
	old := n.endpoints[id]
	n.endpoints[id] = t
	if n.closed {
		t.closed.Store(true)
	}
	n.mu.Unlock()
	if old != nil {
		old.closed.Store(true)
	}
	return t
}

// Close closes every endpoint and waits until every call and duplicate in
// flight has ended, which takes at most the longest timeout among them in
// virtual time. Calls made after Close fail at once with
// raft.ErrTransportShutdown.
func (n *Network) Close() error {
	n.mu.Lock()
	n.closed = true
	for _, t := range n.endpoints {
		t.closed.Store(true)
	}
	n.mu.Unlock()
	n.inflight.Wait()
	return nil
}

// SetLink gives the link from -> to its own model, replacing the default.
func (n *Network) SetLink(from, to raft.ServerID, o LinkOptions) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.linkLocked(from, to).opts = &o
}

// SetDefaultLink changes the model of every link without one of its own.
func (n *Network) SetDefaultLink(o LinkOptions) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.opts.Link = o
}

// InjectStreamFault adds f to the faults of the next InstallSnapshot body
// sent from -> to; it overrides a fault of the same kind drawn from the
// link's probabilities.
func (n *Network) InjectStreamFault(from, to raft.ServerID, f StreamFault) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := n.linkLocked(from, to)
	l.injected = append(l.injected, f)
}

// ClearStreamFaults drops the injected stream faults of the link from -> to
// that no InstallSnapshot has consumed yet, so a healed fault does not fire
// later.
func (n *Network) ClearStreamFaults(from, to raft.ServerID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.linkLocked(from, to).injected = nil
}

// Block cuts the link from -> to (one way: to -> from still works).
func (n *Network) Block(from, to raft.ServerID) {
	n.change("block", string(from)+"->"+string(to), func() { n.cut[linkKey{from, to}] = true })
}

// Unblock restores the link from -> to, unless an isolation still cuts it.
func (n *Network) Unblock(from, to raft.ServerID) {
	n.change("unblock", string(from)+"->"+string(to), func() { delete(n.cut, linkKey{from, to}) })
}

// Partition cuts both directions of every link between nodes of different
// groups. Nodes in no group keep all their links. Groups should be disjoint.
func (n *Network) Partition(groups ...[]raft.ServerID) {
	n.change("partition", describeGroups(groups), func() {
		for i, gi := range groups {
			for _, gj := range groups[i+1:] {
				for _, a := range gi {
					for _, b := range gj {
						if a != b {
							n.cut[linkKey{a, b}] = true
							n.cut[linkKey{b, a}] = true
						}
					}
				}
			}
		}
	})
}

// Bridge cuts both directions of every link between left and right except
// those of bridge, the one node that still talks to both sides.
func (n *Network) Bridge(bridge raft.ServerID, left, right []raft.ServerID) {
	n.change("bridge", string(bridge)+" "+describeGroups([][]raft.ServerID{left, right}), func() {
		for _, a := range left {
			for _, b := range right {
				if a != b && a != bridge && b != bridge {
					n.cut[linkKey{a, b}] = true
					n.cut[linkKey{b, a}] = true
				}
			}
		}
	})
}

// OneWay cuts every link from a node of from to a node of to, leaving the
// reverse direction working: an asymmetric partition.
func (n *Network) OneWay(from, to []raft.ServerID) {
	n.change("oneway", describeGroups([][]raft.ServerID{from, to}), func() {
		for _, a := range from {
			for _, b := range to {
				if a != b {
					n.cut[linkKey{a, b}] = true
				}
			}
		}
	})
}

// Isolate cuts every link to and from id, including links to nodes that
// join later.
func (n *Network) Isolate(id raft.ServerID) {
	n.change("isolate", string(id), func() { n.isolated[id] = true })
}

// HealAll removes every cut and isolation (pauses stay).
func (n *Network) HealAll() {
	n.change("heal", "all", func() {
		clear(n.cut)
		clear(n.isolated)
	})
}

// Pause stalls the node id as a stopped process would look from outside:
// messages to and from it are held until Resume or until their timeout.
// The node's own goroutines keep running.
func (n *Network) Pause(id raft.ServerID) {
	n.change("pause", string(id), func() { n.paused[id] = true })
}

// Resume ends a Pause; held messages then proceed.
func (n *Network) Resume(id raft.ServerID) {
	n.change("resume", string(id), func() { delete(n.paused, id) })
}

func (n *Network) change(kind, detail string, f func()) {
	n.mu.Lock()
	f()
	close(n.changed)
	n.changed = make(chan struct{})
	n.mu.Unlock()
	n.trace.Record("", kind, detail)
}

func describeGroups(groups [][]raft.ServerID) string {
	b := make([]byte, 0, 64)
	for i, g := range groups {
		if i > 0 {
			b = append(b, '|')
		}
		for j, id := range g {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, id...)
		}
	}
	return string(b)
}

// Stats returns the network's counters.
func (n *Network) Stats() Stats {
	s := Stats{
		Kinds:             make(map[string]KindStats, numKinds),
		SnapshotBytes:     n.snapshotBytes.Load(),
		StreamCuts:        n.streamCuts.Load(),
		StreamCorruptions: n.streamCorruptions.Load(),
		StreamStalls:      n.streamStalls.Load(),
		Pipelined:         n.pipelined.Load(),
	}
	for k := range numKinds {
		c := &n.counters[k]
		s.Kinds[k.String()] = KindStats{
			Sent: c.sent.Load(), Delivered: c.delivered.Load(), Duplicated: c.duplicated.Load(),
			Reordered: c.reordered.Load(), Lost: c.lost.Load(), Blocked: c.blocked.Load(),
			Unreachable: c.unreachable.Load(), Failed: c.failed.Load(), TimedOut: c.timedOut.Load(),
			Replied: c.replied.Load(),
		}
	}
	return s
}

// Nodes returns the ids that have been given an endpoint, sorted.
func (n *Network) Nodes() []raft.ServerID {
	n.mu.Lock()
	ids := make([]raft.ServerID, 0, len(n.endpoints))
	for id := range n.endpoints {
		ids = append(ids, id)
	}
	n.mu.Unlock()
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

func (n *Network) linkLocked(from, to raft.ServerID) *link {
	k := linkKey{from, to}
	l := n.links[k]
	if l == nil {
		l = &link{}
		base := n.seed.Hash(hashString(string(from)), hashString(string(to)))
		for kind := range numKinds {
			l.seeds[kind] = Seed(Seed(base).Hash(uint64(kind)))
		}
		n.links[k] = l
	}
	return l
}

func (n *Network) optionsLocked(l *link) LinkOptions {
	if l.opts != nil {
		return *l.opts
	}
	return n.opts.Link
}

func (n *Network) blockedLocked(from, to raft.ServerID) bool {
	return n.cut[linkKey{from, to}] || n.isolated[from] || n.isolated[to]
}
