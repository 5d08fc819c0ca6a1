package checkers

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"slices"

	"github.com/raftsnap/testbed/cluster"
)

// SnapshotIntegrity checks that every snapshot install left the node
// holding exactly the state the committed log defines at the snapshot's
// index: the digest recorded right after the install (Install.Digest, a
// NodeState.Digest of the node's whole engine) must equal the digest of
// replaying the committed commands 1..i with the state machine's
// semantics. A corrupted, truncated or stale stream that got installed, or
// an install that kept keys the snapshot does not hold, shows up here.
// It also checks that the installed position (index, term) is the entry
// the nodes applied at that index.
//
// The reference log is built from every node's applies: an entry applied
// anywhere is committed. Where nodes disagree about an index (which
// RaftInvariants reports) the first apply seen is taken. An index no node
// applied is treated as an entry that changes nothing: raft's no-op and
// barrier entries never reach the state machine, so gaps are normal, and
// a missing command cannot be told from them. If a command really is
// missing from every node's applies, installs above it are still compared
// and the mismatch is reported, as it should be.
func SnapshotIntegrity(log RunLog) []string {
	if len(log.Installs) == 0 && len(log.Starts) == 0 {
		return nil
	}
	ref := map[uint64]Apply{}
	for _, a := range log.Applies {
		if _, seen := ref[a.Index]; !seen {
			ref[a.Index] = a
		}
	}
	replay := newReplay(ref, log.Resets)

	wanted := map[uint64]bool{}
	for _, in := range log.Installs {
		wanted[in.Index] = true
	}
	for _, st := range log.Starts {
		if st.Digest != "" {
			wanted[st.StateIndex] = true
		}
	}
	expected := map[uint64]string{}
	for _, i := range slices.Sorted(maps.Keys(wanted)) {
		replay.advance(i)
		expected[i] = replay.digest()
	}

	var out []string
	var whereMatched map[string]uint64 // built on the first mismatch only
	for _, st := range log.Starts {
		if st.Digest != "" && st.Digest != expected[st.StateIndex] {
			out = append(out, fmt.Sprintf("snapshot-integrity: %s started at %v holding state %s at index %d, but replaying the committed log up to %d gives %s",
				st.Node, st.At, st.Digest, st.StateIndex, st.StateIndex, expected[st.StateIndex]))
		}
	}
	for _, in := range log.Installs {
		if e, ok := ref[in.Index]; ok && e.Term != in.Term {
			out = append(out, fmt.Sprintf("snapshot-integrity: %s installed a snapshot at index %d term %d at %v, but %s applied index %d with term %d",
				in.Node, in.Index, in.Term, in.At, e.Node, e.Index, e.Term))
		}
		if in.Digest == "" {
			out = append(out, fmt.Sprintf("snapshot-integrity: %s installed a snapshot at index %d at %v, but its state could not be read back", in.Node, in.Index, in.At))
			continue
		}
		want := expected[in.Index]
		if in.Digest == want {
			continue
		}
		if whereMatched == nil {
			whereMatched = digestsByIndex(ref, log.Resets)
		}
		hint := "; it matches the replay at no index"
		if j, ok := whereMatched[in.Digest]; ok {
			hint = fmt.Sprintf("; it equals the replay up to index %d", j)
		}
		out = append(out, fmt.Sprintf("snapshot-integrity: %s installed a snapshot at index %d at %v holding state %s, but replaying the committed log up to %d gives %s%s",
			in.Node, in.Index, in.At, in.Digest, in.Index, want, hint))
	}
	return out
}

// replay applies the reference log's commands in index order to a map,
// with exactly the semantics of cluster.FSM, and the user restores
// (resets) at their indexes.
type replay struct {
	entries []Apply // the reference log in index order
	next    int     // entries[next:] are not yet applied
	resets  []Reset // in index order
	nextRst int     // resets[nextRst:] are not yet applied
	state   map[string][]byte
}

func newReplay(ref map[uint64]Apply, resets []Reset) *replay {
	r := &replay{state: map[string][]byte{}}
	for _, i := range slices.Sorted(maps.Keys(ref)) {
		r.entries = append(r.entries, ref[i])
	}
	r.resets = slices.SortedStableFunc(slices.Values(resets), func(a, b Reset) int { return cmp.Compare(a.Index, b.Index) })
	// One reset per index: a node that restarts or a follower installs
	// the same restore again, the first record is the restore.
	r.resets = slices.CompactFunc(r.resets, func(a, b Reset) bool { return a.Index == b.Index })
	return r
}

// advance applies every entry and reset at or below index, in index order
// (a reset at an index comes after an entry there, which raft never
// writes: a restore's index is a hole in the log).
func (r *replay) advance(index uint64) {
	for {
		e := r.next < len(r.entries) && r.entries[r.next].Index <= index
		x := r.nextRst < len(r.resets) && r.resets[r.nextRst].Index <= index
		switch {
		case x && (!e || r.resets[r.nextRst].Index < r.entries[r.next].Index):
			r.state = maps.Clone(r.resets[r.nextRst].Pairs)
			if r.state == nil {
				r.state = map[string][]byte{}
			}
			r.nextRst++
		case e:
			applyToMap(r.state, r.entries[r.next])
			r.next++
		default:
			return
		}
	}
}

func (r *replay) digest() string { return NodeState{Pairs: r.state}.Digest() }

// applyToMap is cluster.FSM's ApplyBatch for one entry: configurations and
// entries that do not decode change nothing (the FSM applies a malformed
// entry as a no-op on every node alike), a get changes nothing, a CAS
// stores its value only if the key holds Expected (or, with ExpectAbsent,
// is absent).
func applyToMap(state map[string][]byte, a Apply) {
	if a.Config {
		return
	}
	c, err := cluster.DecodeCommand(a.Data)
	if err != nil {
		return
	}
	key := string(c.Key)
	old, found := state[key]
	switch c.Op {
	case cluster.OpSet:
		state[key] = bytes.Clone(c.Value)
	case cluster.OpDelete:
		delete(state, key)
	case cluster.OpCAS:
		if (c.ExpectAbsent && !found) || (!c.ExpectAbsent && found && bytes.Equal(old, c.Expected)) {
			state[key] = bytes.Clone(c.Value)
		}
	}
}

// maxDiagnosticWork bounds the replay digests computed to explain a
// mismatch (entries times keys), so a huge run stays cheap to judge.
const maxDiagnosticWork = 50_000_000

// digestsByIndex maps the digest of the replay after each index (and of
// the empty state, index 0) to the first index that produces it, so a
// mismatching install can be described as "stale: equals index j".
func digestsByIndex(ref map[uint64]Apply, resets []Reset) map[string]uint64 {
	r := newReplay(ref, resets)
	out := map[string]uint64{r.digest(): 0}
	var points []uint64
	for _, e := range r.entries {
		points = append(points, e.Index)
	}
	for _, x := range r.resets {
		points = append(points, x.Index)
	}
	slices.Sort(points)
	work := 0
	for _, i := range points {
		r.advance(i)
		work += len(r.state) + 1
		if work > maxDiagnosticWork {
			break
		}
		d := r.digest()
		if _, seen := out[d]; !seen {
			out[d] = i
		}
	}
	return out
}
