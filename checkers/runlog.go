package checkers

import "time"

// Apply is one log entry a node's state machine applied (commands and
// configuration changes; raft's no-ops never reach it).
type Apply struct {
	Node   string
	At     time.Duration
	Index  uint64
	Term   uint64
	Config bool
	// Data is the entry's payload: an encoded cluster.Command, or the
	// encoded configuration.
	Data []byte
}

// Install is one snapshot a node installed successfully, with a digest of
// the node's whole state right after (NodeState.Digest).
type Install struct {
	Node   string
	At     time.Duration
	Index  uint64
	Term   uint64
	Digest string
}

// Start is a node (re)starting with its engine at Applied.
type Start struct {
	Node    string
	At      time.Duration
	Applied uint64
	// StateIndex and Digest are a point-in-time read of the engine at start.
	StateIndex uint64
	Digest     string
	// Unsynced says the engine acknowledges writes before they are
	// durable (it does not sync each batch), so a crash may take it back
	// to its last durability point (see Durable) and raft replays the log
	// from there. For such a node a restart must come back at or above
	// that point, not at or above everything it had applied.
	Unsynced bool
}

// Durable is a point a node's state was made durable up to, other than an
// install: a local snapshot kept (a zero-copy store's durability barrier,
// or a copying store's snapshot file, which a restart installs if the
// engine is behind it).
type Durable struct {
	Node  string
	At    time.Duration
	Index uint64
}

// RunLog is what the cluster recorded about its state machines during a
// run, in the order it happened, for the raft and snapshot invariants.
type RunLog struct {
	Applies  []Apply
	Installs []Install
	Starts   []Start
	Durable  []Durable
	// Resets are the user restores, in the order they were installed on
	// the restoring node.
	Resets []Reset
}

// Reset is a user restore as the committed log sees it: raft's Restore of
// a backup puts the backup's contents at Index (a new index above the
// whole log), whatever the entries below it say. Entries above Index apply
// on top of it.
type Reset struct {
	Node  string // the node whose Restore it was
	At    time.Duration
	Index uint64
	Term  uint64
	Pairs map[string][]byte
}
