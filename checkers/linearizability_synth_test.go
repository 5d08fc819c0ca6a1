package checkers

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/raftsnap/testbed/cluster"
)

// synthConfig shapes a synthetic history.
type synthConfig struct {
	clients, keys int
	span          time.Duration // clients start calls until this virtual time
	// Percentages of calls whose outcome is unknown (writes and log reads
	// only, as in cluster.Client) and that fail.
	unknownPercent, failPercent int
}

// sixtySeconds is a 60-second run: about 2400 calls.
var sixtySeconds = synthConfig{clients: 4, keys: 8, span: 60 * time.Second, unknownPercent: 3, failPercent: 3}

// synthHistory simulates clients against one linearizable register per key,
// so the history is linearizable by construction: every call that takes
// effect does so at one instant (its linearization point) between its
// invocation and its return, and calls are applied in the order of those
// instants. A write of unknown outcome takes effect with probability 1/2,
// possibly after it returned, as a real one may. Calls are returned in the
// order they returned, like cluster.History.Calls.
func synthHistory(seed uint64, cfg synthConfig) []cluster.Call {
	rng := rand.New(rand.NewPCG(seed, 0x11e7ea1))
	between := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo)+1)) }
	type point struct {
		call int
		at   time.Duration
	}
	var calls []cluster.Call
	var points []point
	// Clients take turns in invocation order, so that a CAS can expect
	// the value most recently written to its key and often swap.
	next := make([]time.Duration, cfg.clients) // when each client invokes its next call
	for i := range next {
		next[i] = between(0, 20*time.Millisecond)
	}
	lastWritten := map[string][]byte{}
	for seq := 0; ; seq++ {
		client := 0
		for i := range next {
			if next[i] < next[client] {
				client = i
			}
		}
		t := next[client]
		if t >= cfg.span {
			break
		}
		key := fmt.Appendf(nil, "key-%02d", rng.IntN(cfg.keys))
		value := fmt.Appendf(nil, "c%d-%d", client, seq)
		var cmd cluster.Command
		mode := cluster.ReadLog
		switch r := rng.IntN(100); {
		case r < 35:
			cmd = cluster.Command{Op: cluster.OpSet, Key: key, Value: value}
		case r < 45:
			cmd = cluster.Command{Op: cluster.OpDelete, Key: key}
		case r < 60:
			cmd = cluster.Command{Op: cluster.OpCAS, Key: key, Value: value,
				Expected: lastWritten[string(key)], ExpectAbsent: rng.IntN(5) == 0}
		default:
			cmd = cluster.Command{Op: cluster.OpGet, Key: key}
			mode = cluster.ReadMode(rng.IntN(3))
		}
		if cmd.Op == cluster.OpSet || cmd.Op == cluster.OpCAS {
			lastWritten[string(key)] = value
		}
		call := cluster.Call{Client: client, Command: cmd, Mode: mode, Invoke: t,
			Return: t + between(5*time.Millisecond, 80*time.Millisecond), Node: "n1"}
		mayBeUnknown := cmd.Op != cluster.OpGet || mode == cluster.ReadLog
		switch r := rng.IntN(100); {
		case r < cfg.unknownPercent && mayBeUnknown:
			call.Outcome, call.Err = cluster.OutcomeUnknown, "client timeout"
			if cmd.Op != cluster.OpGet && rng.IntN(2) == 0 {
				points = append(points, point{len(calls), between(call.Invoke, call.Return+2*time.Second)})
			}
		case r < cfg.unknownPercent+cfg.failPercent:
			call.Outcome, call.Err = cluster.OutcomeFail, "node is not the leader"
		default:
			call.Outcome = cluster.OutcomeOK
			points = append(points, point{len(calls), between(call.Invoke, call.Return)})
		}
		calls = append(calls, call)
		next[client] = call.Return + between(20*time.Millisecond, 100*time.Millisecond)
	}
	slices.SortStableFunc(points, func(a, b point) int { return cmp.Compare(a.at, b.at) })
	state := map[string][]byte{}
	for i, p := range points {
		c := &calls[p.call]
		k := string(c.Command.Key)
		old, found := state[k]
		res := cluster.Result{Value: old, Found: found, Index: uint64(i + 1)}
		switch c.Command.Op {
		case cluster.OpSet:
			state[k] = c.Command.Value
		case cluster.OpDelete:
			delete(state, k)
		case cluster.OpCAS:
			ex := c.Command
			if (ex.ExpectAbsent && !found) || (!ex.ExpectAbsent && found && string(old) == string(ex.Expected)) {
				state[k] = c.Command.Value
				res.Swapped = true
			}
		}
		if c.Outcome == cluster.OutcomeOK {
			c.Result = res
		}
	}
	slices.SortStableFunc(calls, func(a, b cluster.Call) int { return cmp.Compare(a.Return, b.Return) })
	return calls
}
