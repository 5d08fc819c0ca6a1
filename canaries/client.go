package canaries

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/raftsnap/testbed/cluster"
	"github.com/raftsnap/testbed/scenarios"
)

// blindRetryClient retries a write whose outcome it does not know, as a
// client library with a per-attempt deadline does, and tells its caller
// only about the last attempt: one call, spanning the first invocation to
// the last return, with the last attempt's outcome and result. An attempt
// that timed out may still commit, so a retried write can take effect
// twice, and a retried compare-and-swap reports "not swapped" although its
// first attempt swapped. Reads pass through untouched.
type blindRetryClient struct {
	c *cluster.Client
	// attempt makes single attempts; its history is private, so attempts
	// stay invisible to the checkers, as they are to the application.
	attempt *cluster.Client
	// total bounds the whole call, retries included.
	total time.Duration
}

// retryBackoff is the pause before retrying an attempt that took no time.
const retryBackoff = 100 * time.Millisecond

func newBlindRetryClient(c *cluster.Client, attemptTimeout time.Duration) scenarios.Doer {
	total := c.Timeout
	if total <= 0 {
		total = 5 * time.Second
	}
	return &blindRetryClient{
		c:       c,
		attempt: &cluster.Client{ID: c.ID, Nodes: c.Nodes, History: cluster.NewHistory(), Timeout: attemptTimeout, RetryDelay: c.RetryDelay},
		total:   total,
	}
}

func (b *blindRetryClient) Do(cmd cluster.Command, mode cluster.ReadMode) cluster.Call {
	if cmd.Op == cluster.OpGet {
		return b.c.Do(cmd, mode)
	}
	invoke := b.c.History.Since()
	// time.Now is the bubble's virtual clock here, as for cluster.Client.
	deadline := time.Now().Add(b.total)
	var last cluster.Call
	for {
		start := time.Now()
		last = b.attempt.Do(cmd, mode)
		if last.Outcome == cluster.OutcomeOK || !time.Now().Before(deadline) {
			break
		}
		if time.Since(start) == 0 {
			// An attempt refused at once: back off, or virtual time would
			// never advance.
			time.Sleep(retryBackoff)
		}
	}
	call := last
	call.Invoke, call.Return = invoke, b.c.History.Since()
	b.c.History.Record(call)
	return call
}

// localReadClient serves every get from the local state machine of a live
// node picked at random, leader or not, with no leadership check and no
// barrier, and reports it as an ordinary read through the log: a follower
// that lags, or an old leader cut off from the rest, answers with stale
// data. Writes pass through untouched.
type localReadClient struct {
	c   *cluster.Client
	rng *rand.Rand
}

func newLocalReadClient(c *cluster.Client, w *scenarios.World) scenarios.Doer {
	return &localReadClient{c: c, rng: w.Seed.Rand(fmt.Sprintf("canary-local-read-%d", c.ID))}
}

func (l *localReadClient) Do(cmd cluster.Command, mode cluster.ReadMode) cluster.Call {
	if cmd.Op != cluster.OpGet {
		return l.c.Do(cmd, mode)
	}
	call := cluster.Call{Client: l.c.ID, Command: cmd, Mode: cluster.ReadLog, Invoke: l.c.History.Since()}
	nodes := l.c.Nodes()
	if len(nodes) == 0 {
		call.Outcome, call.Err = cluster.OutcomeFail, "no live node"
	} else {
		n := nodes[l.rng.IntN(len(nodes))]
		call.Node = n.ID
		v, found, err := n.FSM.Get(cmd.Key)
		if err != nil {
			call.Outcome, call.Err = cluster.OutcomeFail, err.Error()
		} else {
			call.Outcome = cluster.OutcomeOK
			call.Result = cluster.Result{Value: v, Found: found, Index: n.FSM.Applied().Index}
		}
	}
	call.Return = l.c.History.Since()
	l.c.History.Record(call)
	return call
}
