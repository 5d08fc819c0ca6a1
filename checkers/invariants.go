package checkers

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/raftsnap/testbed/cluster"
	"github.com/raftsnap/testbed/sim"
)

// RaftInvariants checks the safety properties of Raft that a run's trace
// and run log show directly:
//
//   - at most one leader per term: a node that sends AppendEntries,
//     heartbeats or InstallSnapshot with term T acts as the leader of T;
//   - no two state machines apply different entries at one index (nor one
//     node across its restarts);
//   - a node's applied index never goes backwards: applies rise strictly
//     within one process, a snapshot install never lands below what the
//     node has applied, and a restart resumes at least where the node was
//     when it crashed;
//   - a node's installed snapshot index never goes backwards.
//
// Together with [SnapshotIntegrity], which checks what every install left
// in the engine, this covers "committed entries are never lost across
// crashes and snapshot installs": an entry applied anywhere is committed,
// later applies at its index must agree with it, and a later install at or
// above its index must hold a state that reflects it.
//
// events is the run's trace (network events and the world's "crash"
// events); log is what the state machines recorded, each list in the order
// it happened. Every violation is one sentence naming the nodes, indexes
// and virtual times involved.
func RaftInvariants(events []sim.Event, log RunLog) []string {
	var out []string
	out = append(out, leaderPerTerm(events)...)
	out = append(out, applyAgreement(log.Applies)...)
	out = append(out, appliedNeverBackwards(events, log)...)
	return out
}

// leaderClaim is the first trace event that showed a node leading a term.
type leaderClaim struct {
	node   string
	at     time.Duration
	detail string
}

// leaderPerTerm derives leadership from delivered requests: only a leader
// sends AppendEntries (heartbeats included) and InstallSnapshot, and each
// carries the term it leads. Only request-side events count: "recv" and
// "recv-dup" carry the request's description, while a "reply" carries the
// responder's term, and "send", "drop" and "fail" carry no term at all.
func leaderPerTerm(events []sim.Event) []string {
	leaders := map[uint64]leaderClaim{}
	reported := map[string]bool{}
	var out []string
	for _, e := range events {
		if e.Kind != "recv" && e.Kind != "recv-dup" {
			continue
		}
		src, term, ok := leaderRequest(e.Detail)
		if !ok {
			continue
		}
		first, seen := leaders[term]
		if !seen {
			leaders[term] = leaderClaim{node: src, at: e.At, detail: e.Detail}
			continue
		}
		if first.node == src {
			continue
		}
		key := strconv.FormatUint(term, 10) + "/" + src
		if reported[key] {
			continue
		}
		reported[key] = true
		out = append(out, fmt.Sprintf("raft: two leaders in term %d: %s (at %v: %s) and %s (at %v: %s)",
			term, first.node, first.at, first.detail, src, e.At, e.Detail))
	}
	return out
}

// leaderRequest parses a request description written by the simulated
// transport, "AppendEntries n0->n2 #20 term=2 prev=18 ...", and returns
// the sender and the term if it is a request only a leader sends.
func leaderRequest(detail string) (src string, term uint64, ok bool) {
	fields := strings.Fields(detail)
	if len(fields) < 4 {
		return "", 0, false
	}
	switch fields[0] {
	case "AppendEntries", "Heartbeat", "InstallSnapshot":
	default:
		return "", 0, false
	}
	src, _, found := strings.Cut(fields[1], "->")
	if !found || src == "" {
		return "", 0, false
	}
	for _, f := range fields[2:] {
		if v, found := strings.CutPrefix(f, "term="); found {
			t, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return "", 0, false
			}
			return src, t, true
		}
	}
	return "", 0, false
}

// applyAgreement checks that every apply of an index, on any node and in
// any of its processes, carries the same entry as the first one seen.
func applyAgreement(applies []Apply) []string {
	first := map[uint64]Apply{}
	reported := map[string]bool{}
	var out []string
	for _, a := range applies {
		ref, seen := first[a.Index]
		if !seen {
			first[a.Index] = a
			continue
		}
		if ref.Term == a.Term && ref.Config == a.Config && bytes.Equal(ref.Data, a.Data) {
			continue
		}
		key := strconv.FormatUint(a.Index, 10) + "/" + a.Node
		if reported[key] {
			continue
		}
		reported[key] = true
		out = append(out, fmt.Sprintf("raft: %s and %s applied different entries at index %d: %s applied term %d %s at %v, %s applied term %d %s at %v",
			ref.Node, a.Node, a.Index, ref.Node, ref.Term, describeEntry(ref), ref.At, a.Node, a.Term, describeEntry(a), a.At))
	}
	return out
}

// describeEntry renders an applied entry for a violation message.
func describeEntry(a Apply) string {
	if a.Config {
		return "(configuration)"
	}
	c, err := cluster.DecodeCommand(a.Data)
	if err != nil {
		return fmt.Sprintf("(malformed, %d bytes)", len(a.Data))
	}
	switch c.Op {
	case cluster.OpSet:
		return fmt.Sprintf("(set %s=%s)", clip(c.Key), clip(c.Value))
	case cluster.OpCAS:
		if c.ExpectAbsent {
			return fmt.Sprintf("(cas %s=%s if absent)", clip(c.Key), clip(c.Value))
		}
		return fmt.Sprintf("(cas %s=%s if %s)", clip(c.Key), clip(c.Value), clip(c.Expected))
	default:
		return fmt.Sprintf("(%s %s)", c.Op, clip(c.Key))
	}
}

// clip quotes b, shortened so that a message stays one readable line.
func clip(b []byte) string {
	const limit = 24
	if len(b) > limit {
		return strconv.Quote(string(b[:limit])) + "..."
	}
	return strconv.Quote(string(b))
}

// stateChange is one apply or install of a node, in the order the node
// did them.
type stateChange struct {
	at      time.Duration
	index   uint64
	install bool
}

// appliedNeverBackwards checks, node by node, that the applied index and
// the installed snapshot index only move forward.
//
// A node's life is a sequence of processes, each opened by a Start and
// ended by a "crash" event in the trace. What a process did strictly
// before its crash instant is durable (an apply is recorded only after the
// engine wrote it, synced, and a killed process keeps its committed
// writes), so the next Start must resume at or above it; for a node whose
// engine does not sync every write (Start.Unsynced), only what it had made
// durable counts: its installs and the local snapshots it kept (RunLog's
// Durable), since raft replays the log above them. What it did at or
// after the crash instant is not: the old process keeps running until it
// is shut down, but its writes land on state nobody reads, so those
// records are judged by neither rule (applyAgreement and SnapshotIntegrity
// still see them). Records at the crash instant itself are counted as
// after it, because events of one virtual instant have no order.
//
// Within a process, applies must rise strictly and an install must not
// land below the current applied index. The run log keeps applies and
// installs in two lists, so their interleaving within one virtual instant
// is unknown; the check assumes the most favourable one (an install goes
// before the applies above its index). A real regression inside one
// instant then still shows, as an index applied twice.
func appliedNeverBackwards(events []sim.Event, log RunLog) []string {
	crashes := map[string][]time.Duration{}
	for _, e := range events {
		if e.Kind == "crash" {
			crashes[e.Node] = append(crashes[e.Node], e.At)
		}
	}
	applies := map[string][]stateChange{}
	for _, a := range log.Applies {
		applies[a.Node] = append(applies[a.Node], stateChange{at: a.At, index: a.Index})
	}
	installs := map[string][]stateChange{}
	for _, in := range log.Installs {
		installs[in.Node] = append(installs[in.Node], stateChange{at: in.At, index: in.Index, install: true})
	}
	durables := map[string][]stateChange{}
	for _, d := range log.Durable {
		durables[d.Node] = append(durables[d.Node], stateChange{at: d.At, index: d.Index})
	}
	starts := map[string][]Start{}
	for _, s := range log.Starts {
		starts[s.Node] = append(starts[s.Node], s)
	}
	nodes := map[string]bool{}
	for _, m := range []map[string][]stateChange{applies, installs} {
		for node := range m {
			nodes[node] = true
		}
	}
	for node := range starts {
		nodes[node] = true
	}
	var out []string
	for _, node := range slices.Sorted(maps.Keys(nodes)) {
		changes := mergeChanges(applies[node], installs[node])
		if len(starts[node]) == 0 {
			// A log without the node's start (a hand-built one): the node
			// began empty before its first record.
			starts[node] = []Start{{Node: node, At: changes[0].at}}
		}
		slices.SortStableFunc(crashes[node], cmp.Compare)
		slices.SortStableFunc(durables[node], func(a, b stateChange) int { return cmp.Compare(a.at, b.at) })
		out = append(out, nodeNeverBackwards(node, starts[node], crashes[node], changes, durables[node])...)
	}
	return out
}

// mergeChanges interleaves a node's applies and installs by time, putting
// an install before same-instant applies above its index and after those
// at or below it.
func mergeChanges(applies, installs []stateChange) []stateChange {
	byTime := func(a, b stateChange) int { return cmp.Compare(a.at, b.at) }
	slices.SortStableFunc(applies, byTime)
	slices.SortStableFunc(installs, byTime)
	out := make([]stateChange, 0, len(applies)+len(installs))
	i, j := 0, 0
	for i < len(applies) || j < len(installs) {
		switch {
		case j == len(installs):
			out = append(out, applies[i])
			i++
		case i == len(applies):
			out = append(out, installs[j])
			j++
		case installs[j].at < applies[i].at || (installs[j].at == applies[i].at && installs[j].index < applies[i].index):
			out = append(out, installs[j])
			j++
		default:
			out = append(out, applies[i])
			i++
		}
	}
	return out
}

func nodeNeverBackwards(node string, starts []Start, crashes []time.Duration, changes, durables []stateChange) []string {
	var out []string
	// durable is what the previous process had reached before its crash
	// (for an unsynced engine, what it had made durable); lastInstall is
	// the highest snapshot index installed by a process before its crash
	// (or by the running one).
	var durable, lastInstall stateChange
	haveDurable, durableWhy := false, "applied"
	c := 0 // changes[c:] are not yet assigned to a process
	k := 0 // crashes[k:] have not yet ended a process
	d := 0 // durables[d:] are not yet assigned to a process
	for n, s := range starts {
		if haveDurable && s.Applied < durable.index {
			out = append(out, fmt.Sprintf("raft: %s restarted at %v with applied index %d, below index %d it had %s at %v before crashing",
				node, s.At, s.Applied, durable.index, durableWhy, durable.at))
		}
		next := time.Duration(-1) // start of the next process, if any
		if n+1 < len(starts) {
			next = starts[n+1].At
		}
		// The crash that ends this process is the first one at or after
		// its start (and not after the next start).
		for k < len(crashes) && crashes[k] < s.At {
			k++
		}
		end, crashed := time.Duration(-1), false
		if k < len(crashes) && (next < 0 || crashes[k] <= next) {
			end, crashed = crashes[k], true
			k++
		} else if next >= 0 {
			// Restarted without a recorded crash: the crash instant is
			// unknown, so everything before the restart counts.
			end, crashed = next, true
		}
		// Records before this start belong to no live process: a
		// previous process after its crash, or this one's recovery
		// install, which Start.Applied already reflects.
		for c < len(changes) && changes[c].at < s.At {
			c++
		}
		cur := stateChange{at: s.At, index: s.Applied}
		// made is the highest point made durable up to this process's end:
		// the previous process's, then this one's installs and snapshots.
		made := durable
		for d < len(durables) && durables[d].at < s.At {
			d++
		}
		for ; d < len(durables) && (!crashed || durables[d].at < end); d++ {
			if durables[d].index > made.index {
				made = durables[d]
			}
		}
		for ; c < len(changes) && (!crashed || changes[c].at < end); c++ {
			ch := changes[c]
			if ch.install {
				var why []string
				if ch.index < cur.index {
					why = append(why, fmt.Sprintf("below applied index %d (reached at %v)", cur.index, cur.at))
				}
				if ch.index < lastInstall.index {
					why = append(why, fmt.Sprintf("below snapshot index %d installed at %v", lastInstall.index, lastInstall.at))
				}
				if why != nil {
					out = append(out, fmt.Sprintf("raft: %s installed a snapshot at index %d at %v, %s", node, ch.index, ch.at, strings.Join(why, " and ")))
				}
				lastInstall = ch
				cur = ch
				if ch.index > made.index {
					made = ch
				}
				continue
			}
			if ch.index <= cur.index {
				out = append(out, fmt.Sprintf("raft: %s applied index %d at %v after reaching index %d at %v in the same process", node, ch.index, ch.at, cur.index, cur.at))
			}
			cur = ch
		}
		durable, haveDurable, durableWhy = cur, crashed, "applied"
		if s.Unsynced {
			durable, durableWhy = made, "made durable (a snapshot kept or installed)"
		}
	}
	return out
}
