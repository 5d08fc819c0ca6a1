package scenarios

import "github.com/raftsnap/testbed/faults"

// pipelineBreaksReplay reports whether a run of sched must replicate
// without pipelining (one AppendEntries at a time) to replay from its seed.
//
// Runs pipeline AppendEntries by default, as raft's NetworkTransport does
// (sim.Transport.AppendEntriesPipeline). Measured when pipelining was
// turned on: with a slow-disk fault in the schedule, 6 of 26 swarm/Pebble
// seeds in 1..90 (4, 10, 11, 29, 31, 54) took another path on a second
// run (first divergent event: a snapshot persist of the slow node, or an
// election timeout, at another instant); no seed without one diverged.
// The cause is not found yet (README, Determinism); until it is, those
// runs do not pipeline.
func pipelineBreaksReplay(sched faults.Schedule) bool {
	for _, f := range sched.Faults {
		if f.Kind == faults.KindSlowDisk {
			return true
		}
	}
	return false
}
