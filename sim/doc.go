// Package sim owns the simulated world a testbed run lives in: one seed from
// which every random choice is derived, virtual time (the testing/synctest
// bubble the caller runs in), an event trace with a canonical hash, and a
// simulated network that carries hashicorp/raft RPCs between in-process nodes
// with seeded delays, losses, duplicates, partitions, paused nodes and faults
// in InstallSnapshot body streams.
//
// # Determinism
//
// A run replays from its seed only if the caller also follows the rules in
// DESIGN.md: run the bubble with GOMAXPROCS=1 (see package simtest), seed the
// global math/rand that raft draws election timeouts from with
// [SeedRaftGlobalRand] (which needs the `//go:debug randseednop=0` directive
// in the main package or in the test file), call [Quiescer.Quiesce] before
// any system call that may take long in wall time (real disk I/O), and shut
// every node down before the bubble ends. Inside this package every choice that concurrent
// goroutines make is a pure function of (seed, source, destination, message
// kind, per-(link, kind) counter), so the order in which raft's goroutines
// reach the network does not change what happens to each message, and every
// RPC timeout carries a hashed sub-microsecond jitter so that it does not
// fire at the same instant as one of raft's own timers.
//
// Two more rules were measured with this package (see determinism_test.go).
// Goroutines that call raft at the same virtual instant (clients, say) run
// in an order that raft's map iteration and random select choices change,
// so workloads must spread their calls over distinct instants (a hashed
// jitter per operation does it). And with an RPC timeout longer than the
// leader lease, a leader stepping down during an RPC hits a select race in
// hashicorp/raft v1.8.0's replication loop: keep NetworkOptions.RPCTimeout
// below raft's LeaderLeaseTimeout (or patch raft) for runs that replay.
//
// # Time
//
// Everything here reads and waits on the time package; inside a bubble that is
// the virtual clock, so [NewTrace] and [NewNetwork] must be called inside the
// bubble the run uses.
package sim
