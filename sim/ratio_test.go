package sim_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftsnap/testbed/sim"
	"github.com/raftsnap/testbed/sim/simtest"
)

// TestVirtualWallRatio runs a 5-node cluster under steady write load (four
// writers, each one write then a pause of SIM_RATIO_GAP_MS, default 10ms;
// links of 1-5ms) for SIM_RATIO_SECONDS (default 5) virtual seconds and logs virtual seconds
// per wall second. The ratio is logged, not asserted: wall time on a shared
// machine is not a test oracle.
func TestVirtualWallRatio(t *testing.T) {
	virtual := time.Duration(envInt("SIM_RATIO_SECONDS", 5)) * time.Second
	var writes, events int
	var stats sim.Stats
	start := time.Now()
	simtest.Run(t, func(t *testing.T) {
		c := newCluster(t, sim.Seed(99), clusterOptions{
			nodes:     5,
			net:       sim.NetworkOptions{Link: sim.LinkOptions{DelayMin: time.Millisecond, DelayMax: 5 * time.Millisecond}},
			threshold: 1024,
			trailing:  256,
		})
		defer c.shutdown()
		c.leader(10 * time.Second)
		writes = steadyLoad(c, 4, time.Duration(envInt("SIM_RATIO_GAP_MS", 10))*time.Millisecond, virtual)
		c.converged(10 * time.Second)
		events = c.trace.Len()
		stats = c.net.Stats()
	})
	wall := time.Since(start)
	rpcs := uint64(0)
	for _, k := range stats.Kinds {
		rpcs += k.Sent
	}
	t.Logf("%v virtual in %v wall: %.0f virtual-s/wall-s; %d writes (%.0f/virtual-s), %d RPCs, %d trace events",
		virtual, wall.Round(time.Millisecond), virtual.Seconds()/wall.Seconds(), writes, float64(writes)/virtual.Seconds(), rpcs, events)
	for k, v := range stats.Kinds {
		if v.Sent > 0 {
			t.Logf("%s: %+v", k, v)
		}
	}
	if writes == 0 {
		t.Error("no write succeeded")
	}
}

// jitter spreads the writers over distinct virtual instants: writers that
// call raft at the same instant run in an order the Go runtime picks, which
// changes raft's batching (see the package report on determinism).
func jitter(w, i int) time.Duration {
	return time.Duration(sim.Seed(w).Hash(uint64(i+1)) % uint64(time.Millisecond))
}

// steadyLoad has writers goroutines each apply a write, wait for it, and
// pause for gap, until d of virtual time has passed. It returns how many
// writes succeeded.
func steadyLoad(c *testCluster, writers int, gap, d time.Duration) int {
	deadline := time.Now().Add(d)
	var mu sync.Mutex
	total := 0
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			time.Sleep(jitter(w, -1))
			for i := 0; time.Now().Before(deadline); i++ {
				var l *testNode
				for _, n := range c.nodes {
					if n.raft.State() == raft.Leader {
						l = n
					}
				}
				if l == nil {
					time.Sleep(min(gap, time.Until(deadline)))
					continue
				}
				err := l.raft.Apply([]byte(fmt.Sprintf("w%d-%d", w, i)), time.Second).Error()
				if err == nil {
					mu.Lock()
					total++
					mu.Unlock()
				} else if !errors.Is(err, raft.ErrNotLeader) && !errors.Is(err, raft.ErrLeadershipLost) {
					c.t.Errorf("apply: %v", err)
				}
				time.Sleep(min(gap+jitter(w, i), time.Until(deadline)))
			}
		})
	}
	wg.Wait()
	return total
}
