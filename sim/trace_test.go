package sim_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/raftsnap/testbed/sim"
)

type rec struct{ node, kind, detail string }

// record replays instants of events into a new trace, sleeping 1ms of
// virtual time between instants.
func record(opts sim.TraceOptions, instants ...[]rec) *sim.Trace {
	tr := sim.NewTrace(opts)
	for i, in := range instants {
		if i > 0 {
			time.Sleep(time.Millisecond)
		}
		for _, r := range in {
			tr.Record(r.node, r.kind, r.detail)
		}
	}
	return tr
}

func TestTraceHashIsCanonical(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := rec{"n1", "send", "x"}
		b := rec{"n2", "recv", "x"}
		c := rec{"n1", "send", "y"}
		d := rec{"n3", "drop", "z"}
		base := record(sim.TraceOptions{}, []rec{a, b, c}, []rec{d}).Hash()
		if got := record(sim.TraceOptions{}, []rec{c, a, b}, []rec{d}).Hash(); got != base {
			t.Error("reordering events within an instant changed the hash")
		}
		if got := record(sim.TraceOptions{}, []rec{a, b}, []rec{c, d}).Hash(); got == base {
			t.Error("moving an event to another instant kept the hash")
		}
		if got := record(sim.TraceOptions{}, []rec{a, b, {"n1", "send", "Y"}}, []rec{d}).Hash(); got == base {
			t.Error("changing a detail kept the hash")
		}
		if got := record(sim.TraceOptions{}, []rec{a, b, c}).Hash(); got == base {
			t.Error("dropping the last event kept the hash")
		}
		// Asking for the hash in the middle of an instant changes nothing.
		mid := sim.NewTrace(sim.TraceOptions{})
		mid.Record(c.node, c.kind, c.detail)
		mid.Hash()
		mid.Record(a.node, a.kind, a.detail)
		mid.Events()
		mid.Record(b.node, b.kind, b.detail)
		time.Sleep(time.Millisecond)
		mid.Record(d.node, d.kind, d.detail)
		if mid.Hash() != base {
			t.Error("a Hash or Events call inside an instant changed the final hash")
		}
		// Fields are length-delimited: moving text between fields matters.
		if record(sim.TraceOptions{}, []rec{{"n1", "ab", "c"}}).Hash() == record(sim.TraceOptions{}, []rec{{"n1", "a", "bc"}}).Hash() {
			t.Error("field boundaries are not part of the hash")
		}
	})
}

func TestTraceJSONLRoundTrip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		instants := [][]rec{
			{{"n2", "recv", `quote " and \ and é`}, {"n1", "send", "AppendEntries n1->n2 #0"}},
			{{"", "partition", "n1|n2,n3"}},
			{{"n3", "fail", "x"}},
		}
		tr := record(sim.TraceOptions{}, instants...)
		var buf bytes.Buffer
		if err := tr.WriteJSONL(&buf); err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(buf.String(), "\n"); n != 4 {
			t.Fatalf("%d lines, want 4", n)
		}
		back, err := sim.ReadJSONL(&buf)
		if err != nil {
			t.Fatal(err)
		}
		want := tr.Events()
		if i := sim.FirstDivergence(want, back); i != -1 {
			t.Fatalf("event %d differs after the round trip: %+v vs %+v", i, want[i], back[i])
		}
		if want[0].Node != "n1" || want[1].At != 0 || want[2].At != time.Millisecond {
			t.Errorf("events not in canonical order with virtual times: %+v", want)
		}
		if sim.HashEvents(back) != tr.Hash() {
			t.Error("HashEvents of the parsed trace differs from Trace.Hash")
		}

		// A streaming trace writes the same lines and hashes the same.
		var sink bytes.Buffer
		streamed := record(sim.TraceOptions{Sink: &sink, DiscardEvents: true}, instants...)
		if err := streamed.Close(); err != nil {
			t.Fatal(err)
		}
		var kept bytes.Buffer
		if err := tr.WriteJSONL(&kept); err != nil {
			t.Fatal(err)
		}
		if sink.String() != kept.String() {
			t.Errorf("streamed JSONL differs:\n%s\nvs\n%s", sink.String(), kept.String())
		}
		if streamed.Hash() != tr.Hash() || len(streamed.Events()) != 0 || streamed.Len() != 4 {
			t.Error("a discarding trace must hash the same, keep nothing and count everything")
		}
	})
}

func TestReadJSONLRejectsGarbage(t *testing.T) {
	if _, err := sim.ReadJSONL(strings.NewReader("{\"t\":1}\nnot json\n")); !errors.Is(err, sim.ErrBadTrace) {
		t.Errorf("err = %v, want ErrBadTrace", err)
	}
}

func TestFirstDivergence(t *testing.T) {
	a := []sim.Event{{At: 1, Node: "n1"}, {At: 2, Node: "n2"}}
	if i := sim.FirstDivergence(a, a); i != -1 {
		t.Errorf("equal traces diverge at %d", i)
	}
	if i := sim.FirstDivergence(a, a[:1]); i != 1 {
		t.Errorf("prefix diverges at %d, want 1", i)
	}
	if i := sim.FirstDivergence(a, []sim.Event{a[0], {At: 2, Node: "n3"}}); i != 1 {
		t.Errorf("diverges at %d, want 1", i)
	}
}

func TestNilTraceRecords(t *testing.T) {
	var tr *sim.Trace
	tr.Record("n1", "x", "y") // must not panic: the network accepts a nil trace
}
