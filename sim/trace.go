package sim

import (
	"bufio"
	"cmp"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"sync"
	"time"
)

// Event is one entry of a run's trace.
type Event struct {
	// At is the virtual time since the trace was created.
	At time.Duration `json:"t"`
	// Node is the server the event happened on ("" for the world itself).
	Node string `json:"node"`
	// Kind names what happened, e.g. "recv", "drop", "done".
	Kind string `json:"kind"`
	// Detail says the rest, in a stable textual form.
	Detail string `json:"detail"`
}

func compareEvents(a, b Event) int {
	if c := cmp.Compare(a.At, b.At); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Node, b.Node); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Kind, b.Kind); c != 0 {
		return c
	}
	return cmp.Compare(a.Detail, b.Detail)
}

// TraceOptions configures a [Trace]. The zero value keeps every event in
// memory and writes nothing.
type TraceOptions struct {
	// Sink, if set, receives every event as one JSON line, in canonical
	// order, as soon as the virtual instant it belongs to is over (the last
	// instant on Close).
	Sink io.Writer
	// DiscardEvents drops events once they are hashed and written to Sink, so
	// a long run keeps only the events of the current instant in memory.
	// Events, WriteJSONL and FirstDivergence then see nothing.
	DiscardEvents bool
}

// Trace records the events of a run. It is safe for concurrent use.
//
// Events of one virtual instant are put in a canonical order (by node, kind,
// detail) before they are hashed, kept or written: goroutines that run at the
// same virtual instant may record in any order (DESIGN.md rule 4), and that
// order is not part of the run's behaviour.
type Trace struct {
	opts  TraceOptions
	start time.Time

	mu sync.Mutex
	// events holds the closed instants (if kept) followed by the events
	// of the current, still open instant, which start at open.
	events []Event
	open   int
	sum    hash.Hash
	count  int
	buf    []byte
	sinkW  *bufio.Writer
	err    error
}

// NewTrace starts a trace whose clock starts now. Inside a synctest bubble
// that is the bubble's virtual clock, so call it inside the bubble.
func NewTrace(opts TraceOptions) *Trace {
	t := &Trace{opts: opts, start: time.Now(), sum: sha256.New()}
	if opts.Sink != nil {
		t.sinkW = bufio.NewWriterSize(opts.Sink, 64<<10)
	}
	return t
}

// Record adds an event at the current virtual time. A nil *Trace records
// nothing, so callers need not check.
func (t *Trace) Record(node, kind, detail string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	// Reading the clock under the lock makes At non-decreasing in slice
	// order: virtual time cannot advance while this goroutine is runnable.
	at := time.Since(t.start)
	if t.open < len(t.events) && t.events[t.open].At != at {
		t.closeInstantLocked()
	}
	t.events = append(t.events, Event{At: at, Node: node, Kind: kind, Detail: detail})
	t.count++
	t.mu.Unlock()
}

// closeInstantLocked sorts the open instant, folds it into the hash, writes
// it to the sink and drops it if events are not kept.
func (t *Trace) closeInstantLocked() {
	group := t.events[t.open:]
	slices.SortFunc(group, compareEvents)
	for i := range group {
		t.buf = appendCanonical(t.buf[:0], &group[i])
		t.sum.Write(t.buf)
		if t.sinkW != nil && t.err == nil {
			line, err := json.Marshal(&group[i])
			if err == nil {
				line = append(line, '\n')
				_, err = t.sinkW.Write(line)
			}
			t.err = err
		}
	}
	if t.opts.DiscardEvents {
		clear(group)
		t.events = t.events[:0]
	}
	t.open = len(t.events)
}

// appendCanonical is the byte form of an event that the hash covers: fixed
// width time, then length-prefixed strings, so no two events encode alike.
func appendCanonical(b []byte, e *Event) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(e.At))
	for _, s := range [...]string{e.Node, e.Kind, e.Detail} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

// Len returns how many events have been recorded.
func (t *Trace) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.count
}

// Hash returns the canonical hash (hex SHA-256) of all events recorded so
// far. Two runs that did the same things at the same virtual instants have
// the same hash whatever order same-instant events were recorded in.
func (t *Trace) Hash() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	// Hash a copy of the state, so that the open instant stays open: more
	// events of this instant may still come and must sort with it.
	state, err := t.sum.(encoding.BinaryMarshaler).MarshalBinary()
	sum := sha256.New()
	if err == nil {
		err = sum.(encoding.BinaryUnmarshaler).UnmarshalBinary(state)
	}
	if err != nil { // sha256 digests always marshal; keep the error path total
		return ""
	}
	var buf []byte
	for _, e := range t.openSortedLocked() {
		buf = appendCanonical(buf[:0], &e)
		sum.Write(buf)
	}
	return hex.EncodeToString(sum.Sum(nil))
}

// openSortedLocked returns a sorted copy of the open instant's events.
func (t *Trace) openSortedLocked() []Event {
	open := slices.Clone(t.events[t.open:])
	slices.SortFunc(open, compareEvents)
	return open
}

// Events returns a copy of the kept events in canonical order.
func (t *Trace) Events() []Event {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.opts.DiscardEvents {
		return nil
	}
	return append(slices.Clone(t.events[:t.open]), t.openSortedLocked()...)
}

// WriteJSONL writes the kept events in canonical order, one JSON object per
// line: {"t":<nanoseconds>,"node":...,"kind":...,"detail":...}.
func (t *Trace) WriteJSONL(w io.Writer) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for _, e := range t.Events() {
		if err := enc.Encode(&e); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// Close closes the current instant and flushes the sink. It returns the
// first error writing to the sink. Recording after Close is allowed.
func (t *Trace) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closeInstantLocked()
	if t.sinkW != nil && t.err == nil {
		t.err = t.sinkW.Flush()
	}
	return t.err
}

// ErrBadTrace is returned by [ReadJSONL] for input that is not a trace.
var ErrBadTrace = errors.New("sim: malformed trace")

// ReadJSONL parses a trace written by [Trace.WriteJSONL] or a Sink.
func ReadJSONL(r io.Reader) ([]Event, error) {
	var events []Event
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for line := 1; sc.Scan(); line++ {
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrBadTrace, line, err)
		}
		events = append(events, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadTrace, err)
	}
	return events, nil
}

// HashEvents returns the canonical hash of events, equal to [Trace.Hash] of
// a trace that recorded them.
func HashEvents(events []Event) string {
	sorted := slices.Clone(events)
	slices.SortStableFunc(sorted, compareEvents)
	sum := sha256.New()
	var buf []byte
	for i := range sorted {
		buf = appendCanonical(buf[:0], &sorted[i])
		sum.Write(buf)
	}
	return hex.EncodeToString(sum.Sum(nil))
}

// FirstDivergence returns the index of the first event at which two traces
// in canonical order differ (one being a prefix of the other counts as a
// difference at the shorter length), or -1 if they are equal.
func FirstDivergence(a, b []Event) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return n
	}
	return -1
}
