package faults

import (
	"fmt"
	"strconv"
	"strings"
)

// Kind names a kind of fault.
type Kind string

// Network faults. Link faults (loss, delay, duplicate, reorder) apply to the
// links to and from their target, or to every link for target "all".
const (
	// KindPartition cuts links in the [Shape] given by the fault's Shape
	// around its target, for Duration.
	KindPartition Kind = "partition"
	// KindFlap is a partition that toggles: on for Period, off for Period,
	// and so on until it heals for good at At+Duration.
	KindFlap Kind = "flap"
	// KindLoss loses each message with Probability.
	KindLoss Kind = "loss"
	// KindDelay adds a one-way delay drawn from [DelayMin, DelayMax] to
	// each message.
	KindDelay Kind = "delay"
	// KindDuplicate delivers each request a second time with Probability.
	KindDuplicate Kind = "duplicate"
	// KindReorder gives each message, with Probability, an extra delay drawn
	// from [0, DelayMax], so that later messages overtake it.
	KindReorder Kind = "reorder"
)

// InstallSnapshot body faults: they are armed on every link to the target
// at At and hit the next snapshot body each link carries; what has not been
// used by At+Duration is disarmed (sim.Network.InjectStreamFault).
const (
	// KindSnapCut cuts the body after OffsetBytes bytes.
	KindSnapCut Kind = "snap-cut"
	// KindSnapCorrupt flips bits of the byte at OffsetBytes.
	KindSnapCorrupt Kind = "snap-corrupt"
	// KindSnapStall stops the body for Stall before the byte at OffsetBytes.
	KindSnapStall Kind = "snap-stall"
)

// Node faults. Crash, power-loss, pause and disk-error are the node-down
// kinds that count against the minority budget (see the package doc).
const (
	// KindCrash kills the target's process; it restarts from its disk after
	// Duration.
	KindCrash Kind = "crash"
	// KindPowerLoss is a crash that also drops unsynced writes: each unsynced
	// block is lost with probability UnsyncedDataPercent/100. Pebble's
	// vfs.CrashCloneCfg.UnsyncedDataPercent counts the opposite (the percent
	// kept), so the executor passes it 100-UnsyncedDataPercent; ours counts
	// what is lost so that a lower value is a milder fault, which is the
	// direction a shrinker lowers it in. On an engine without a crashable
	// filesystem (bbolt) the executor applies it as a crash.
	KindPowerLoss Kind = "power-loss"
	// KindPause stops the target sending and receiving for Duration; its
	// goroutines keep running, as a stopped process looks from outside.
	KindPause Kind = "pause"
	// KindDiskError makes each I/O operation of the target's simulated disk
	// fail with Probability for Duration (a Pebble node's whole disk, a
	// bbolt or custom node's snapshot store; in the snapshot store a failed
	// write may be a full disk, and reads fail too). It may stop the node.
	KindDiskError Kind = "disk-error"
	// KindSlowDisk makes each sync of the target's simulated disk take a
	// latency drawn from [DelayMin, DelayMax] for Duration.
	KindSlowDisk Kind = "slow-disk"
)

// Membership changes, instantaneous (Duration 0). The executor asks the
// leader at At and reports, not fails on, a change that cannot complete
// (e.g. no leader during a partition).
const (
	// KindAddVoter starts a fresh, empty node with the index in Target and
	// adds it as a voter; it must catch up from a snapshot.
	KindAddVoter Kind = "add-voter"
	// KindAddLearner starts a fresh, empty node with the index in Target and
	// adds it as a non-voter; it must bootstrap from a snapshot.
	KindAddLearner Kind = "add-learner"
	// KindRemoveNode removes the target from the configuration.
	KindRemoveNode Kind = "remove-node"
)

// Corruption at rest.
const (
	// KindSnapRot makes the target's stored snapshots rot for Duration:
	// each one that is opened (to be sent, or restored) first has a byte
	// flipped on disk, after the store accepted it whole.
	KindSnapRot Kind = "snap-rot"
)

// Role says how a fault's target is chosen.
type Role string

const (
	// RoleLeader is the leader at the fault's start.
	RoleLeader Role = "leader"
	// RoleFollower is a live voter that is not the leader at the start.
	RoleFollower Role = "follower"
	// RoleAll is every link (link faults only).
	RoleAll Role = "all"
	// RoleNode is the node whose index is Target.Node.
	RoleNode Role = "node"
)

// Target is the node (or, for RoleAll, the set of links) a fault acts on.
// The zero value is no target, which no kind accepts. Its text form is the
// role, or "n<index>" for RoleNode.
type Target struct {
	Role Role
	// Node is the index of the node, for RoleNode only.
	Node int
}

func (t Target) String() string {
	if t.Role == RoleNode {
		return "n" + strconv.Itoa(t.Node)
	}
	return string(t.Role)
}

// MarshalText gives the text form, for JSON.
func (t Target) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText parses the text form.
func (t *Target) UnmarshalText(b []byte) error {
	s := string(b)
	switch Role(s) {
	case RoleLeader, RoleFollower, RoleAll:
		*t = Target{Role: Role(s)}
		return nil
	}
	if rest, ok := strings.CutPrefix(s, "n"); ok {
		// Digits only: Atoi alone would take "n+1" or "n-1".
		if n, err := strconv.Atoi(rest); err == nil && rest != "" && rest[0] >= '0' && rest[0] <= '9' {
			*t = Target{Role: RoleNode, Node: n}
			return nil
		}
	}
	return fmt.Errorf("%w: %q is not leader, follower, all or n<index>", ErrTarget, s)
}

// Shape is the form of a partition around its target.
type Shape string

const (
	// ShapeMajorityMinority splits the cluster into a majority and a
	// minority that contains the target; the executor chooses the minority's
	// other members from the run's seed.
	ShapeMajorityMinority Shape = "majority-minority"
	// ShapeIsolate cuts every link to and from the target ("isolate-leader"
	// is this shape with target leader).
	ShapeIsolate Shape = "isolate"
	// ShapeBridge splits the other nodes into two halves that only the
	// target still connects.
	ShapeBridge Shape = "bridge"
	// ShapeOneWayOut drops messages from the target; it still receives.
	ShapeOneWayOut Shape = "one-way-out"
	// ShapeOneWayIn drops messages to the target; it still sends.
	ShapeOneWayIn Shape = "one-way-in"
)

var shapes = []Shape{ShapeMajorityMinority, ShapeIsolate, ShapeBridge, ShapeOneWayOut, ShapeOneWayIn}

// param is a set of the parameter fields of a Fault.
type param uint16

const (
	pShape param = 1 << iota
	pPeriod
	pProbability
	pDelayMin
	pDelayMax
	pOffset
	pStall
	pPercent
)

// kindInfo is what the package knows about a kind; kinds lists every kind in
// canonical order (the order of generation, counts and mix printing).
type kindInfo struct {
	kind    Kind
	instant bool   // Duration must be 0
	down    bool   // counts against the minority budget
	group   string // at most one active fault per group; "" for none
	params  param  // the parameter fields it uses; the others must be zero
	roles   []Role // the target roles it accepts (RoleNode = a node index)
}

var (
	nodeRoles   = []Role{RoleLeader, RoleFollower, RoleNode}
	linkRoles   = []Role{RoleLeader, RoleFollower, RoleNode, RoleAll}
	streamRoles = []Role{RoleFollower, RoleNode} // the receiver: a leader receives no snapshot
	addRoles    = []Role{RoleNode}
)

var kinds = []kindInfo{
	{kind: KindPartition, group: "partition", params: pShape, roles: nodeRoles},
	{kind: KindFlap, group: "partition", params: pShape | pPeriod, roles: nodeRoles},
	{kind: KindLoss, group: "loss", params: pProbability, roles: linkRoles},
	{kind: KindDelay, group: "delay", params: pDelayMin | pDelayMax, roles: linkRoles},
	{kind: KindDuplicate, group: "duplicate", params: pProbability, roles: linkRoles},
	{kind: KindReorder, group: "reorder", params: pProbability | pDelayMax, roles: linkRoles},
	{kind: KindSnapCut, group: "snap-cut", params: pOffset, roles: streamRoles},
	{kind: KindSnapCorrupt, group: "snap-corrupt", params: pOffset, roles: streamRoles},
	{kind: KindSnapStall, group: "snap-stall", params: pOffset | pStall, roles: streamRoles},
	{kind: KindCrash, down: true, roles: nodeRoles},
	{kind: KindPowerLoss, down: true, params: pPercent, roles: nodeRoles},
	{kind: KindPause, down: true, roles: nodeRoles},
	{kind: KindDiskError, down: true, group: "disk-error", params: pProbability, roles: nodeRoles},
	{kind: KindSlowDisk, group: "slow-disk", params: pDelayMin | pDelayMax, roles: nodeRoles},
	{kind: KindAddVoter, instant: true, roles: addRoles},
	{kind: KindAddLearner, instant: true, roles: addRoles},
	{kind: KindRemoveNode, instant: true, roles: nodeRoles},
	{kind: KindSnapRot, group: "snap-rot", roles: nodeRoles},
}

func info(k Kind) (kindInfo, bool) {
	for _, ki := range kinds {
		if ki.kind == k {
			return ki, true
		}
	}
	return kindInfo{}, false
}

// kindIndex orders kinds canonically; unknown kinds sort last.
func kindIndex(k Kind) int {
	for i, ki := range kinds {
		if ki.kind == k {
			return i
		}
	}
	return len(kinds)
}

// Kinds returns every kind, in canonical order.
func Kinds() []Kind {
	out := make([]Kind, len(kinds))
	for i, ki := range kinds {
		out[i] = ki.kind
	}
	return out
}

// Valid reports whether k is a kind this package knows.
func (k Kind) Valid() bool { _, ok := info(k); return ok }

// Instant reports whether faults of kind k are instantaneous (Duration 0).
func (k Kind) Instant() bool { ki, _ := info(k); return ki.instant }

func isAdd(k Kind) bool { return k == KindAddVoter || k == KindAddLearner }
