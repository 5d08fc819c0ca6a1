package canaries

import "github.com/raftsnap/testbed/engines"

// hollowBarrierEngine's durability barrier does nothing: Sync returns at
// once, as an engine that reports its state durable while its writes still
// sit in a buffer. A zero-copy store then records a local snapshot that
// only the engine's unsynced state backs, and raft compacts its log
// against it.
type hollowBarrierEngine struct{ engines.Engine }

func (hollowBarrierEngine) Sync() error { return nil }
