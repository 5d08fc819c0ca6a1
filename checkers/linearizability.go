package checkers

import (
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/raftsnap/testbed/cluster"
)

// DefaultLinearizabilityTimeout is the search budget used when
// LinearizabilityOptions.Timeout is zero.
const DefaultLinearizabilityTimeout = 10 * time.Second

// ErrMalformedHistory is reported (wrapped) for a history that cannot be
// checked: an unknown op, outcome or read mode, or a call that returned
// before it was invoked. Skipping such a call instead could turn a good
// history into a bad one, so nothing is checked.
var ErrMalformedHistory = errors.New("checkers: malformed history")

// LinearizabilityOptions configures Linearizability. The zero value is usable.
type LinearizabilityOptions struct {
	// Timeout bounds each porcupine search in wall-clock time. Every
	// (read mode, key) pair is searched separately and all searches run
	// concurrently, so the whole check takes about Timeout at worst (plus
	// a second search of the failing keys when an HTML file is written).
	// A search that runs out of time yields porcupine.Unknown, never Ok.
	// Zero means DefaultLinearizabilityTimeout. Inside a synctest bubble
	// porcupine's timer is virtual and does not fire while it searches.
	Timeout time.Duration
	// OutputDir, if not empty, receives linearizability-<mode>.html for
	// every read mode found not linearizable: porcupine's visualization of
	// the keys that failed, with their longest partial linearizations. The
	// directory is created if needed; an existing file is overwritten.
	OutputDir string
}

// LinearizabilityReport is the outcome of Linearizability.
type LinearizabilityReport struct {
	// Modes has one entry per read mode checked, in cluster.ReadMode order.
	Modes []ModeResult
	// Err is set, wrapping ErrMalformedHistory, when the history could not
	// be checked; Modes is then empty.
	Err error

	timeout time.Duration
}

// ModeResult is the verdict on the history restricted to every write plus
// the reads of one mode.
type ModeResult struct {
	Mode cluster.ReadMode
	// Result is porcupine.Ok (linearizable), porcupine.Illegal (some key
	// is not) or porcupine.Unknown (no key is illegal but some search ran
	// out of time).
	Result porcupine.CheckResult
	// Operations counts the calls checked: writes that did not fail and
	// this mode's reads that completed. Reads counts the latter alone;
	// zero means the history has no reads and only its writes (whose
	// results report previous values) were checked, under ReadLog.
	Operations, Reads int
	// IllegalKeys and TimedOutKeys are sorted.
	IllegalKeys, TimedOutKeys []string
	// Visualization is the path of the HTML file written for an Illegal
	// result, if OutputDir was set and writing succeeded.
	Visualization string

	stuck            map[string]string // per illegal key: where its longest linearization stops
	visualizationErr error
}

// Holds reports whether reads in mode were checked and found linearizable.
// A mode that timed out does not hold. ReadVerifyLeader is not expected to
// hold (see cluster.ReadVerifyLeader): callers decide which modes must.
func (r LinearizabilityReport) Holds(mode cluster.ReadMode) bool {
	for _, m := range r.Modes {
		if m.Mode == mode {
			return m.Result == porcupine.Ok
		}
	}
	return false
}

// Violations returns one sentence per key found not linearizable in each
// mode, and one if the history could not be checked. Timeouts are not
// violations: see Notes.
func (r LinearizabilityReport) Violations() []string {
	var out []string
	if r.Err != nil {
		out = append(out, fmt.Sprintf("linearizability: history not checked: %v", r.Err))
	}
	for _, m := range r.Modes {
		what := fmt.Sprintf("reads in mode %q are", m.Mode)
		if m.Reads == 0 {
			what = "writes (the history has no reads) are"
		}
		see := ""
		switch {
		case m.Visualization != "":
			see = "; see " + m.Visualization
		case m.visualizationErr != nil:
			see = fmt.Sprintf("; visualization not written: %v", m.visualizationErr)
		}
		for _, k := range m.IllegalKeys {
			out = append(out, fmt.Sprintf("linearizability: %s not linearizable (key %q): %s%s", what, k, m.stuck[k], see))
		}
	}
	return out
}

// Notes returns one sentence per mode whose check ran out of time on some
// key. Such a mode is neither passed nor failed: its result is unknown.
func (r LinearizabilityReport) Notes() []string {
	var out []string
	for _, m := range r.Modes {
		if len(m.TimedOutKeys) == 0 {
			continue
		}
		out = append(out, fmt.Sprintf("linearizability: check of mode %q ran out of time (%v per search) on %d key(s) %s: result unknown, not a pass",
			m.Mode, r.timeout, len(m.TimedOutKeys), kvQuoteAll(m.TimedOutKeys)))
	}
	return out
}

// Linearizability checks, for each read mode present in the history, that
// the history restricted to all writes plus the reads of that mode is
// linearizable with respect to a key-value register per key (the model
// cluster's state machine implements). Calls that failed are dropped: they
// did nothing. A write of unknown outcome may take effect at any time after
// its invocation, or never; a get of unknown outcome constrains nothing and
// is dropped. If the history has no reads, its writes alone are checked
// under ReadLog, since their results report the values they overwrote.
func Linearizability(history []cluster.Call, opts LinearizabilityOptions) LinearizabilityReport {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultLinearizabilityTimeout
	}
	report := LinearizabilityReport{timeout: timeout}
	writes, reads, err := kvOperations(history)
	if err != nil {
		report.Err = err
		return report
	}
	var modes []cluster.ReadMode
	for m := cluster.ReadLog; m <= cluster.ReadVerifyLeader; m++ {
		if len(reads[m]) > 0 {
			modes = append(modes, m)
		}
	}
	if len(modes) == 0 && len(writes) > 0 {
		modes = append(modes, cluster.ReadLog)
	}

	// One search per (mode, key): porcupine's answer for a partitioned
	// history does not say which partition failed or timed out.
	type search struct {
		mode   int // index into modes
		key    string
		ops    []porcupine.Operation
		result porcupine.CheckResult
		info   porcupine.LinearizationInfo
	}
	var searches []*search
	for i, m := range modes {
		ops := slices.Concat(writes, reads[m])
		report.Modes = append(report.Modes, ModeResult{Mode: m, Operations: len(ops), Reads: len(reads[m])})
		for _, part := range kvPartition(ops) {
			searches = append(searches, &search{mode: i, key: part[0].Input.(kvInput).key, ops: part})
		}
	}
	var wg sync.WaitGroup
	for _, s := range searches {
		wg.Go(func() { s.result, s.info = porcupine.CheckOperationsVerbose(kvModel, s.ops, timeout) })
	}
	wg.Wait()

	failed := make([][]*search, len(modes))
	for _, s := range searches {
		m := &report.Modes[s.mode]
		switch s.result {
		case porcupine.Illegal:
			m.IllegalKeys = append(m.IllegalKeys, s.key)
			if m.stuck == nil {
				m.stuck = map[string]string{}
			}
			m.stuck[s.key] = kvStuckAt(s.ops, s.info)
			failed[s.mode] = append(failed[s.mode], s)
		case porcupine.Unknown:
			m.TimedOutKeys = append(m.TimedOutKeys, s.key)
		}
	}
	for i := range report.Modes {
		m := &report.Modes[i]
		switch {
		case len(m.IllegalKeys) > 0:
			m.Result = porcupine.Illegal
		case len(m.TimedOutKeys) > 0:
			m.Result = porcupine.Unknown
		default:
			m.Result = porcupine.Ok
		}
		if m.Result != porcupine.Illegal || opts.OutputDir == "" {
			continue
		}
		info := failed[i][0].info
		if len(failed[i]) > 1 {
			// LinearizationInfo values cannot be merged: search the
			// failing keys again together. Each finished once already.
			var ops []porcupine.Operation
			for _, s := range failed[i] {
				ops = append(ops, s.ops...)
			}
			_, info = porcupine.CheckOperationsVerbose(kvModel, ops, timeout)
		}
		path := filepath.Join(opts.OutputDir, "linearizability-"+m.Mode.String()+".html")
		if err := os.MkdirAll(opts.OutputDir, 0o755); err != nil {
			m.visualizationErr = err
		} else if err := porcupine.VisualizePath(kvModel, info, path); err != nil {
			m.visualizationErr = err
		} else {
			m.Visualization = path
		}
	}
	return report
}

// kvStuckAt says where the longest linearizable prefix of a key's operations
// stops: at the earliest-returning operation it leaves out, which had to be
// linearized next and could not be.
func kvStuckAt(ops []porcupine.Operation, info porcupine.LinearizationInfo) string {
	var longest []int
	for _, part := range info.PartialLinearizations() {
		for _, l := range part {
			if len(l) > len(longest) {
				longest = l
			}
		}
	}
	in := make([]bool, len(ops))
	for _, id := range longest {
		in[id] = true // ids are positions in ops: one partition, in order
	}
	next := -1
	for i, op := range ops {
		if !in[i] && (next < 0 || op.Return < ops[next].Return) {
			next = i
		}
	}
	if next < 0 {
		return fmt.Sprintf("no linearization of its %d operations exists", len(ops))
	}
	op := ops[next]
	return fmt.Sprintf("the longest linearizable prefix orders %d of its %d operations and cannot take next: %s (%s)",
		len(longest), len(ops), kvDescribeOperation(op.Input, op.Output), kvDescribeMetadata(op.Metadata))
}

// kvOperations turns calls into porcupine operations: the writes, and the
// reads of each mode.
func kvOperations(history []cluster.Call) (writes []porcupine.Operation, reads map[cluster.ReadMode][]porcupine.Operation, err error) {
	var latest time.Duration
	for i, c := range history {
		if c.Command.Op < cluster.OpSet || c.Command.Op > cluster.OpCAS {
			return nil, nil, fmt.Errorf("%w: call %d has op %v", ErrMalformedHistory, i, c.Command.Op)
		}
		if c.Outcome < cluster.OutcomeOK || c.Outcome > cluster.OutcomeUnknown {
			return nil, nil, fmt.Errorf("%w: call %d has outcome %d", ErrMalformedHistory, i, c.Outcome)
		}
		if c.Command.Op == cluster.OpGet && c.Mode > cluster.ReadVerifyLeader {
			return nil, nil, fmt.Errorf("%w: call %d has read mode %d", ErrMalformedHistory, i, c.Mode)
		}
		if c.Return < c.Invoke || c.Invoke < 0 {
			return nil, nil, fmt.Errorf("%w: call %d invoked at %v, returned at %v", ErrMalformedHistory, i, c.Invoke, c.Return)
		}
		latest = max(latest, c.Return)
	}
	// A call of unknown outcome may take effect after every call that
	// returned: it stays pending to the end of the history.
	end := int64(latest) + 1
	reads = map[cluster.ReadMode][]porcupine.Operation{}
	for _, c := range history {
		if c.Outcome == cluster.OutcomeFail {
			continue // it did nothing
		}
		unknown := c.Outcome == cluster.OutcomeUnknown
		isGet := c.Command.Op == cluster.OpGet
		if isGet && unknown {
			continue // its value was never seen: it constrains nothing
		}
		in := kvInput{
			client:       c.Client,
			op:           c.Command.Op,
			key:          string(c.Command.Key),
			value:        string(c.Command.Value),
			expected:     string(c.Command.Expected),
			expectAbsent: c.Command.ExpectAbsent,
		}
		if isGet {
			in.mode = c.Mode
		}
		// A reset (a user restore's write of one key) reports no
		// previous value: its result is not checked, but it took effect
		// before it returned.
		out := kvOutput{unknown: unknown || c.Reset}
		if !out.unknown {
			out.found, out.value, out.swapped = c.Result.Found, string(c.Result.Value), c.Result.Swapped
		}
		ret := int64(c.Return)
		if unknown {
			ret = end
		}
		op := porcupine.Operation{
			ClientId: max(c.Client, 0),
			Input:    in,
			Output:   out,
			Call:     int64(c.Invoke),
			Return:   ret,
			Metadata: kvCallMetadata{node: string(c.Node), index: c.Result.Index, err: c.Err,
				invoke: c.Invoke, ret: c.Return, unknown: unknown},
		}
		if isGet {
			reads[c.Mode] = append(reads[c.Mode], op)
		} else {
			writes = append(writes, op)
		}
	}
	return writes, reads, nil
}

// kvInput is a command as the model sees it; client and mode only describe it.
type kvInput struct {
	client       int
	op           cluster.Op
	mode         cluster.ReadMode
	key          string
	value        string
	expected     string
	expectAbsent bool
}

// kvOutput is a call's result. For an unknown outcome nothing was observed,
// so any state accepts it.
type kvOutput struct {
	unknown bool
	found   bool
	value   string // before the command; for a get, the value read
	swapped bool
}

// kvRegister is the state of one key. Comparable, so porcupine's default
// equality applies.
type kvRegister struct {
	present bool
	value   string
}

type kvCallMetadata struct {
	node    string
	index   uint64
	err     string
	invoke  time.Duration
	ret     time.Duration
	unknown bool
}

// kvModel is a key-value store partitioned by key: each partition is one
// register, initially absent.
var kvModel = porcupine.Model{
	Partition:      kvPartition,
	PartitionEvent: kvPartitionEvents,
	Init:           func() any { return kvRegister{} },
	Step:           kvStep,
	Hash: func(state any) uint64 {
		s := state.(kvRegister)
		h := fnv.New64a()
		h.Write([]byte(s.value))
		if s.present {
			h.Write([]byte{1})
		}
		return h.Sum64()
	},
	DescribeOperation:         kvDescribeOperation,
	DescribeState:             func(state any) string { return kvDescribeRegister(state.(kvRegister)) },
	DescribeOperationMetadata: func(m any) string { return kvDescribeMetadata(m) },
}

func kvStep(state, input, output any) (bool, any) {
	s, in, out := state.(kvRegister), input.(kvInput), output.(kvOutput)
	// Every result reports the value before the command.
	if !out.unknown && (out.found != s.present || out.value != s.value) {
		return false, state
	}
	switch in.op {
	case cluster.OpSet:
		return true, kvRegister{present: true, value: in.value}
	case cluster.OpDelete:
		return true, kvRegister{}
	case cluster.OpGet:
		return true, state
	case cluster.OpCAS:
		// The same condition as cluster's state machine.
		swap := (in.expectAbsent && !s.present) || (!in.expectAbsent && s.present && s.value == in.expected)
		if !out.unknown && out.swapped != swap {
			return false, state
		}
		if swap {
			return true, kvRegister{present: true, value: in.value}
		}
		return true, state
	}
	return false, state
}

// kvPartition groups operations by key, keys sorted, each group in
// input order.
func kvPartition(ops []porcupine.Operation) [][]porcupine.Operation {
	byKey := map[string][]porcupine.Operation{}
	for _, op := range ops {
		k := op.Input.(kvInput).key
		byKey[k] = append(byKey[k], op)
	}
	return kvSortedGroups(byKey)
}

func kvPartitionEvents(events []porcupine.Event) [][]porcupine.Event {
	byKey := map[string][]porcupine.Event{}
	keyOf := map[int]string{} // event id -> key of its call
	for _, e := range events {
		if e.Kind == porcupine.CallEvent {
			keyOf[e.Id] = e.Value.(kvInput).key
		}
		k := keyOf[e.Id]
		byKey[k] = append(byKey[k], e)
	}
	return kvSortedGroups(byKey)
}

func kvSortedGroups[T any](byKey map[string][]T) [][]T {
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([][]T, 0, len(keys))
	for _, k := range keys {
		out = append(out, byKey[k])
	}
	return out
}

// kvDescribeOperation renders e.g. `c2 cas "k" "a"->"b": ok, swapped, was "a"`.
func kvDescribeOperation(input, output any) string {
	in, out := input.(kvInput), output.(kvOutput)
	var b strings.Builder
	fmt.Fprintf(&b, "c%d ", in.client)
	switch in.op {
	case cluster.OpSet:
		fmt.Fprintf(&b, "set %s=%s", kvQuote(in.key), kvQuote(in.value))
	case cluster.OpDelete:
		fmt.Fprintf(&b, "delete %s", kvQuote(in.key))
	case cluster.OpGet:
		fmt.Fprintf(&b, "get[%s] %s", in.mode, kvQuote(in.key))
	case cluster.OpCAS:
		from := kvQuote(in.expected)
		if in.expectAbsent {
			from = "absent"
		}
		fmt.Fprintf(&b, "cas %s %s->%s", kvQuote(in.key), from, kvQuote(in.value))
	}
	switch {
	case out.unknown:
		b.WriteString(": unknown")
	case in.op == cluster.OpGet:
		fmt.Fprintf(&b, ": ok, read %s", kvDescribeRegister(kvRegister{present: out.found, value: out.value}))
	case in.op == cluster.OpCAS && !out.swapped:
		fmt.Fprintf(&b, ": ok, not swapped, was %s", kvDescribeRegister(kvRegister{present: out.found, value: out.value}))
	case in.op == cluster.OpCAS:
		fmt.Fprintf(&b, ": ok, swapped, was %s", kvDescribeRegister(kvRegister{present: out.found, value: out.value}))
	default:
		fmt.Fprintf(&b, ": ok, was %s", kvDescribeRegister(kvRegister{present: out.found, value: out.value}))
	}
	return b.String()
}

func kvDescribeMetadata(m any) string {
	md, ok := m.(kvCallMetadata)
	if !ok {
		return ""
	}
	s := fmt.Sprintf("invoked %v, returned %v", md.invoke, md.ret)
	if md.unknown {
		s += " with unknown outcome"
	}
	if md.node != "" {
		s += ", node " + md.node
	}
	if md.index != 0 {
		s += fmt.Sprintf(", index %d", md.index)
	}
	if md.err != "" {
		s += ", error: " + md.err
	}
	return s
}

func kvDescribeRegister(s kvRegister) string {
	if !s.present {
		return "absent"
	}
	return kvQuote(s.value)
}

// kvQuote renders a key or value, shortened: values can be large.
func kvQuote(s string) string {
	const limit = 40
	if len(s) > limit {
		return fmt.Sprintf("%q…(%d bytes)", s[:limit], len(s))
	}
	return fmt.Sprintf("%q", s)
}

func kvQuoteAll(keys []string) string {
	q := make([]string, len(keys))
	for i, k := range keys {
		q[i] = kvQuote(k)
	}
	return strings.Join(q, ", ")
}
