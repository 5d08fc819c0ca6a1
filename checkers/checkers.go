// Package checkers owns the judgement of a run: given the client history the
// cluster recorded and the final state of every node, each checker returns
// the violations it finds as plain sentences. Checkers are pure functions of
// their inputs, so each can be shown failing on a hand-built bad history.
package checkers

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/raftsnap/testbed/cluster"
	"github.com/raftsnap/testbed/engines"
)

// NodeState is what a node holds at the end of a run.
type NodeState struct {
	ID      string
	Applied engines.Applied
	// Pairs is the node's whole engine contents.
	Pairs map[string][]byte
}

// Digest is a hash of the contents, for compact comparison and reports.
func (s NodeState) Digest() string {
	keys := make([]string, 0, len(s.Pairs))
	for k := range s.Pairs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%d:%s%d:", len(k), k, len(s.Pairs[k]))
		h.Write(s.Pairs[k])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// ReadState reads an engine's whole contents into a NodeState.
func ReadState(id string, e engines.Engine) (NodeState, error) {
	v, err := e.View()
	if err != nil {
		return NodeState{}, err
	}
	defer v.Close()
	it, err := v.Iter()
	if err != nil {
		return NodeState{}, err
	}
	defer it.Close()
	st := NodeState{ID: id, Applied: v.Applied(), Pairs: map[string][]byte{}}
	for it.Next() {
		st.Pairs[string(it.Key())] = bytes.Clone(it.Value())
	}
	return st, it.Err()
}

// Convergence checks that every live node ends at the same applied index
// with identical contents.
func Convergence(states []NodeState) []string {
	if len(states) < 2 {
		return nil
	}
	ref := states[0]
	refDigest := ref.Digest()
	var out []string
	for _, s := range states[1:] {
		if s.Applied.Index != ref.Applied.Index {
			out = append(out, fmt.Sprintf("convergence: %s applied index %d, %s applied index %d", s.ID, s.Applied.Index, ref.ID, ref.Applied.Index))
			continue
		}
		if d := s.Digest(); d != refDigest {
			out = append(out, fmt.Sprintf("convergence: %s and %s differ at index %d (%d vs %d keys; digests %s vs %s)%s",
				s.ID, ref.ID, s.Applied.Index, len(s.Pairs), len(ref.Pairs), d, refDigest, firstDifference(s.Pairs, ref.Pairs)))
		}
	}
	return out
}

func firstDifference(a, b map[string][]byte) string {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		va, oka := a[k]
		vb, okb := b[k]
		if oka != okb || !bytes.Equal(va, vb) {
			return fmt.Sprintf("; first at key %q: %s vs %s", k, show(va, oka), show(vb, okb))
		}
	}
	return ""
}

func show(v []byte, ok bool) string {
	if !ok {
		return "absent"
	}
	return fmt.Sprintf("%q", v)
}

// write is one call that may have changed a key.
type write struct {
	call   cluster.Call
	value  []byte // nil for a delete
	ret    time.Duration
	acked  bool
	absent bool
}

// Durability checks that every acknowledged write survives: for each key,
// the value every node ends with must come from a write that may be the
// last one, that is, one that did not fail and that no acknowledged write
// certainly followed (invoked after it returned). A write whose outcome is
// unknown may take effect at any later time, so it never counts as certainly
// followed. A value that no write produced is a violation too.
func Durability(history []cluster.Call, final NodeState) []string {
	writes := map[string][]write{}
	for _, c := range history {
		w, ok := asWrite(c)
		if ok {
			writes[string(c.Command.Key)] = append(writes[string(c.Command.Key)], w)
		}
	}
	keys := map[string]bool{}
	for k := range writes {
		keys[k] = true
	}
	for k := range final.Pairs {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	var out []string
	for _, k := range sorted {
		got, present := final.Pairs[k]
		ws := writes[k]
		var lastAckInvoke time.Duration = -1
		for _, w := range ws {
			if w.acked {
				lastAckInvoke = max(lastAckInvoke, w.call.Invoke)
			}
		}
		admissible := func(w write) bool { return w.ret >= lastAckInvoke }
		ok := false
		if !present && lastAckInvoke < 0 {
			ok = true // nothing acknowledged: absence is the initial state
		}
		for _, w := range ws {
			if ok {
				break
			}
			if w.absent == !present && (w.absent || bytes.Equal(w.value, got)) && admissible(w) {
				ok = true
			}
		}
		if !ok {
			out = append(out, fmt.Sprintf("durability: %s ends with %s for key %q, which no write that may be last produced (last acknowledged write invoked at %v)",
				final.ID, show(got, present), k, lastAckInvoke))
		}
	}
	return out
}

// never is the return time of a call whose outcome is unknown.
const never = time.Duration(1<<63 - 1)

func asWrite(c cluster.Call) (write, bool) {
	w := write{call: c, ret: c.Return, acked: c.Outcome == cluster.OutcomeOK}
	switch c.Outcome {
	case cluster.OutcomeFail:
		return w, false
	case cluster.OutcomeUnknown:
		w.ret = never
	}
	switch c.Command.Op {
	case cluster.OpSet:
		w.value = slices.Clip(c.Command.Value)
	case cluster.OpDelete:
		w.absent = true
	case cluster.OpCAS:
		if c.Outcome == cluster.OutcomeOK && !c.Result.Swapped {
			return w, false
		}
		w.value = c.Command.Value
	default:
		return w, false
	}
	if w.value == nil && !w.absent {
		w.value = []byte{}
	}
	return w, true
}
