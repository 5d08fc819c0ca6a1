package checkers

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/raftsnap/testbed/cluster"
	"pgregory.net/rapid"
)

const (
	linLog      = cluster.ReadLog
	linBarrier  = cluster.ReadBarrier
	linVerify   = cluster.ReadVerifyLeader
	callOK      = cluster.OutcomeOK
	callUnknown = cluster.OutcomeUnknown
	callFail    = cluster.OutcomeFail
)

// linAbsent stands for "no value" where a test names a previous or read value.
const linAbsent = "\x00absent"

func linResult(value string) cluster.Result {
	if value == linAbsent {
		return cluster.Result{}
	}
	return cluster.Result{Value: []byte(value), Found: true}
}

// linPut is a set whose result, if callOK, says what the key held before.
func linPut(client int, key, value, was string, invoke, ret time.Duration, outcome cluster.Outcome) cluster.Call {
	c := cluster.Call{Client: client, Command: cluster.Command{Op: cluster.OpSet, Key: []byte(key), Value: []byte(value)},
		Invoke: invoke, Return: ret, Outcome: outcome}
	if outcome == callOK {
		c.Result = linResult(was)
	}
	return c
}

func linRead(client int, key string, mode cluster.ReadMode, value string, invoke, ret time.Duration) cluster.Call {
	return cluster.Call{Client: client, Command: cluster.Command{Op: cluster.OpGet, Key: []byte(key)}, Mode: mode,
		Invoke: invoke, Return: ret, Outcome: callOK, Result: linResult(value)}
}

// linSwap is a CAS from expected (absent: ExpectAbsent) to value.
func linSwap(client int, key, expected, value string, invoke, ret time.Duration, outcome cluster.Outcome, swapped bool, was string) cluster.Call {
	cmd := cluster.Command{Op: cluster.OpCAS, Key: []byte(key), Value: []byte(value)}
	if expected == linAbsent {
		cmd.ExpectAbsent = true
	} else {
		cmd.Expected = []byte(expected)
	}
	c := cluster.Call{Client: client, Command: cmd, Invoke: invoke, Return: ret, Outcome: outcome}
	if outcome == callOK {
		c.Result = linResult(was)
		c.Result.Swapped = swapped
	}
	return c
}

func linFindMode(r LinearizabilityReport, mode cluster.ReadMode) *ModeResult {
	for i := range r.Modes {
		if r.Modes[i].Mode == mode {
			return &r.Modes[i]
		}
	}
	return nil
}

func linMode(t *testing.T, r LinearizabilityReport, mode cluster.ReadMode) ModeResult {
	t.Helper()
	m := linFindMode(r, mode)
	if m == nil {
		t.Fatalf("mode %v not checked: %+v", mode, r.Modes)
	}
	return *m
}

func requireLinearizable(t *testing.T, h []cluster.Call) LinearizabilityReport {
	t.Helper()
	r := Linearizability(h, LinearizabilityOptions{})
	if v := r.Violations(); v != nil {
		t.Fatalf("good history judged bad: %v", v)
	}
	if n := r.Notes(); n != nil {
		t.Fatalf("unexpected notes: %v", n)
	}
	for _, m := range r.Modes {
		if !r.Holds(m.Mode) {
			t.Fatalf("mode %v does not hold: %+v", m.Mode, m)
		}
	}
	return r
}

// requireIllegal checks that exactly the given mode fails, on key, and that
// every other mode checked holds.
func requireIllegal(t *testing.T, h []cluster.Call, mode cluster.ReadMode, key string) LinearizabilityReport {
	t.Helper()
	r := Linearizability(h, LinearizabilityOptions{})
	m := linMode(t, r, mode)
	if m.Result != porcupine.Illegal || !slices.Equal(m.IllegalKeys, []string{key}) {
		t.Fatalf("mode %v: result %v on keys %q, want Illegal on %q", mode, m.Result, m.IllegalKeys, key)
	}
	v := r.Violations()
	if len(v) != 1 || !strings.Contains(v[0], fmt.Sprintf("(key %q)", key)) {
		t.Fatalf("want one violation naming key %q: %q", key, v)
	}
	for _, other := range r.Modes {
		if other.Mode != mode && !r.Holds(other.Mode) {
			t.Fatalf("mode %v fails too: %+v", other.Mode, other)
		}
	}
	return r
}

func TestLinearizabilityAcceptsASequentialHistory(t *testing.T) {
	h := []cluster.Call{
		linPut(0, "k", "a", linAbsent, 0, 10*ms, callOK),
		linRead(1, "k", linLog, "a", 20*ms, 30*ms),
		linPut(0, "k", "b", "a", 40*ms, 50*ms, callOK),
		linRead(1, "k", linBarrier, "b", 60*ms, 70*ms),
		{Client: 0, Command: cluster.Command{Op: cluster.OpDelete, Key: []byte("k")}, Invoke: 80 * ms, Return: 90 * ms,
			Outcome: callOK, Result: linResult("b")},
		linRead(1, "k", linVerify, linAbsent, 100*ms, 110*ms),
		linSwap(0, "k", linAbsent, "c", 120*ms, 130*ms, callOK, true, linAbsent),
		linRead(1, "k", linLog, "c", 140*ms, 150*ms),
		linRead(2, "other", linBarrier, linAbsent, 0, 150*ms),
	}
	r := requireLinearizable(t, h)
	if len(r.Modes) != 3 {
		t.Fatalf("want all three modes checked: %+v", r.Modes)
	}
	if m := linMode(t, r, linLog); m.Reads != 2 || m.Operations != 6 {
		t.Fatalf("log mode: %d reads of %d operations, want 2 of 6", m.Reads, m.Operations)
	}
}

func TestLinearizabilityAcceptsConcurrentWritesInEitherOrder(t *testing.T) {
	// set a [0,30] and set b [10,20] overlap: either may be linearized
	// first, and the results and the later read must agree with it.
	aFirst := []cluster.Call{
		linPut(0, "k", "a", linAbsent, 0, 30*ms, callOK),
		linPut(1, "k", "b", "a", 10*ms, 20*ms, callOK),
		linRead(2, "k", linLog, "b", 40*ms, 50*ms),
	}
	bFirst := []cluster.Call{
		linPut(0, "k", "a", "b", 0, 30*ms, callOK),
		linPut(1, "k", "b", linAbsent, 10*ms, 20*ms, callOK),
		linRead(2, "k", linLog, "a", 40*ms, 50*ms),
	}
	requireLinearizable(t, aFirst)
	requireLinearizable(t, bFirst)
	// A read overlapping a write may see the old or the new value.
	for _, seen := range []string{"a", "b"} {
		requireLinearizable(t, []cluster.Call{
			linPut(0, "k", "a", linAbsent, 0, 10*ms, callOK),
			linPut(0, "k", "b", "a", 20*ms, 40*ms, callOK),
			linRead(1, "k", linBarrier, seen, 25*ms, 30*ms),
		})
	}
	// But the order must be one order: b's result says a came first, so
	// the read after both cannot see a.
	requireIllegal(t, []cluster.Call{
		linPut(0, "k", "a", linAbsent, 0, 30*ms, callOK),
		linPut(1, "k", "b", "a", 10*ms, 20*ms, callOK),
		linRead(2, "k", linLog, "a", 40*ms, 50*ms),
	}, linLog, "k")
}

func TestLinearizabilityCatchesAStaleReadInItsModeOnly(t *testing.T) {
	h := []cluster.Call{
		linPut(0, "k", "a", linAbsent, 0, 10*ms, callOK),
		linPut(0, "k", "b", "a", 20*ms, 30*ms, callOK),
		linRead(1, "k", linLog, "b", 40*ms, 50*ms),
		linRead(2, "k", linBarrier, "a", 40*ms, 50*ms), // stale: b was acknowledged before
		linRead(3, "k", linVerify, "b", 40*ms, 50*ms),
		linRead(3, "unrelated", linBarrier, linAbsent, 40*ms, 50*ms),
	}
	r := requireIllegal(t, h, linBarrier, "k")
	v := r.Violations()[0]
	for _, want := range []string{`mode "barrier"`, `c2 get[barrier] "k": ok, read "a"`, "2 of its 3 operations"} {
		if !strings.Contains(v, want) {
			t.Errorf("violation lacks %q: %s", want, v)
		}
	}
	if len(r.Modes) != 3 || !r.Holds(linLog) || !r.Holds(linVerify) || r.Holds(linBarrier) {
		t.Fatalf("want log and verify-leader to hold, barrier not: %+v", r.Modes)
	}
}

func TestLinearizabilityCatchesALostWrite(t *testing.T) {
	// b is acknowledged, yet a later read returns the value b overwrote.
	requireIllegal(t, []cluster.Call{
		linPut(0, "k", "a", linAbsent, 0, 10*ms, callOK),
		linPut(0, "k", "b", "a", 20*ms, 30*ms, callOK),
		linRead(1, "k", linLog, "a", 40*ms, 50*ms),
	}, linLog, "k")
	// With no reads at all, a later write's result exposes it too.
	r := requireIllegal(t, []cluster.Call{
		linPut(0, "k", "a", linAbsent, 0, 10*ms, callOK),
		linPut(0, "k", "b", "a", 20*ms, 30*ms, callOK),
		linPut(1, "k", "c", "a", 40*ms, 50*ms, callOK),
	}, linLog, "k")
	if m := linMode(t, r, linLog); m.Reads != 0 || !strings.Contains(r.Violations()[0], "writes (the history has no reads)") {
		t.Fatalf("writes-only check not reported as such: %+v %q", m, r.Violations())
	}
}

func TestLinearizabilityLetsAWriteOfUnknownOutcomeTakeEffectLate(t *testing.T) {
	h := []cluster.Call{
		linPut(0, "k", "x", "", 0, 10*ms, callUnknown),
		linRead(1, "k", linLog, linAbsent, 20*ms, 30*ms), // not yet
		linRead(1, "k", linLog, "x", 40*ms, 50*ms),       // now
	}
	requireLinearizable(t, h)
	// Once seen, it cannot be undone: it takes effect at most once.
	requireIllegal(t, append(h, linRead(1, "k", linLog, linAbsent, 60*ms, 70*ms)), linLog, "k")
}

func TestLinearizabilityLetsAWriteOfUnknownOutcomeNeverTakeEffect(t *testing.T) {
	requireLinearizable(t, []cluster.Call{
		linPut(0, "k", "x", "", 0, 10*ms, callUnknown),
		linPut(1, "k", "y", linAbsent, 20*ms, 30*ms, callOK),
		linRead(1, "k", linBarrier, "y", 40*ms, 50*ms),
		linRead(2, "k", linVerify, "y", 60*ms, 70*ms),
	})
}

func TestLinearizabilityCatchesAFailedWriteThatTookEffect(t *testing.T) {
	requireIllegal(t, []cluster.Call{
		linPut(0, "k", "a", linAbsent, 0, 10*ms, callOK),
		linPut(0, "k", "never", "", 20*ms, 30*ms, callFail),
		linRead(1, "k", linVerify, "never", 40*ms, 50*ms),
	}, linVerify, "k")
}

func TestLinearizabilityDropsGetsThatFailedOrHaveUnknownOutcome(t *testing.T) {
	bogus := linRead(1, "k", linLog, "bogus", 20*ms, 30*ms)
	bogus.Outcome = callUnknown
	refused := linRead(1, "k", linBarrier, "bogus", 20*ms, 30*ms)
	refused.Outcome = callFail
	r := requireLinearizable(t, []cluster.Call{linPut(0, "k", "a", linAbsent, 0, 10*ms, callOK), bogus, refused})
	if len(r.Modes) != 1 || r.Modes[0].Reads != 0 {
		t.Fatalf("dropped reads still counted: %+v", r.Modes)
	}
}

func TestLinearizabilityChecksCompareAndSwap(t *testing.T) {
	a := linPut(0, "k", "a", linAbsent, 0, 10*ms, callOK)
	cases := []struct {
		name  string
		h     []cluster.Call
		legal bool
	}{
		{"swap on match", []cluster.Call{a, linSwap(1, "k", "a", "b", 20*ms, 30*ms, callOK, true, "a"), linRead(2, "k", linLog, "b", 40*ms, 50*ms)}, true},
		{"no swap on mismatch", []cluster.Call{a, linSwap(1, "k", "z", "b", 20*ms, 30*ms, callOK, false, "a"), linRead(2, "k", linLog, "a", 40*ms, 50*ms)}, true},
		{"swap on absence", []cluster.Call{linSwap(1, "k", linAbsent, "b", 20*ms, 30*ms, callOK, true, linAbsent), linRead(2, "k", linLog, "b", 40*ms, 50*ms)}, true},
		{"swapped on mismatch", []cluster.Call{a, linSwap(1, "k", "z", "b", 20*ms, 30*ms, callOK, true, "a")}, false},
		{"not swapped on match", []cluster.Call{a, linSwap(1, "k", "a", "b", 20*ms, 30*ms, callOK, false, "a")}, false},
		{"swapped absence on a present key", []cluster.Call{a, linSwap(1, "k", linAbsent, "b", 20*ms, 30*ms, callOK, true, "a")}, false},
		{"read misses a swap", []cluster.Call{a, linSwap(1, "k", "a", "b", 20*ms, 30*ms, callOK, true, "a"), linRead(2, "k", linLog, "a", 40*ms, 50*ms)}, false},
		{"read sees a refused swap", []cluster.Call{a, linSwap(1, "k", "z", "b", 20*ms, 30*ms, callOK, false, "a"), linRead(2, "k", linLog, "b", 40*ms, 50*ms)}, false},
		{"unknown swap seen when it matched", []cluster.Call{a, linSwap(1, "k", "a", "b", 20*ms, 30*ms, callUnknown, false, ""), linRead(2, "k", linLog, "b", 40*ms, 50*ms)}, true},
		{"unknown swap seen though it could not match", []cluster.Call{a, linSwap(1, "k", "z", "b", 20*ms, 30*ms, callUnknown, false, ""), linRead(2, "k", linLog, "b", 40*ms, 50*ms)}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.legal {
				requireLinearizable(t, c.h)
			} else {
				requireIllegal(t, c.h, linLog, "k")
			}
		})
	}
}

func TestLinearizabilityWritesAVisualizationOfTheFailingKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out") // created by the checker
	h := []cluster.Call{
		linPut(0, "k1", "a", linAbsent, 0, 10*ms, callOK),
		linPut(0, "k1", "b", "a", 20*ms, 30*ms, callOK),
		linRead(1, "k1", linBarrier, "a", 40*ms, 50*ms),
		linPut(0, "k2", "c", linAbsent, 0, 10*ms, callOK),
		linRead(1, "k2", linBarrier, linAbsent, 40*ms, 50*ms),
		linRead(1, "fine", linBarrier, linAbsent, 40*ms, 50*ms),
		linRead(1, "k1", linLog, "b", 40*ms, 50*ms),
	}
	r := Linearizability(h, LinearizabilityOptions{OutputDir: dir})
	m := linMode(t, r, linBarrier)
	want := filepath.Join(dir, "linearizability-barrier.html")
	if m.Visualization != want || !slices.Equal(m.IllegalKeys, []string{"k1", "k2"}) {
		t.Fatalf("visualization %q on keys %q, want %q on k1, k2", m.Visualization, m.IllegalKeys, want)
	}
	v := r.Violations()
	if len(v) != 2 || !strings.Contains(v[0], want) || !strings.Contains(v[1], want) {
		t.Fatalf("violations do not name the file: %q", v)
	}
	html, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"<html", `c1 get[barrier] \"k1\"`, `c1 get[barrier] \"k2\"`, "invoked 40ms"} {
		if !strings.Contains(string(html), s) {
			t.Errorf("visualization lacks %q", s)
		}
	}
	if strings.Contains(string(html), `\"fine\"`) {
		t.Errorf("visualization shows a key that holds")
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Fatalf("want only the barrier file in %s: %v %v", dir, entries, err)
	}
}

func TestLinearizabilityReportsATimeoutAsUnknownNotAsAPass(t *testing.T) {
	// Forty fully concurrent writes and a read of a value none of them
	// wrote: proving this illegal means trying every subset of the
	// writes, which cannot finish in 100 ms.
	var h []cluster.Call
	for i := range 40 {
		c := linPut(i, "k", fmt.Sprint(i), "", 0, 100*ms, callUnknown)
		h = append(h, c)
	}
	h = append(h, linRead(40, "k", linLog, "none", 0, 100*ms), linRead(41, "easy", linLog, linAbsent, 0, 100*ms))
	start := time.Now()
	r := Linearizability(h, LinearizabilityOptions{Timeout: 100 * ms})
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Fatalf("timeout not honoured: %v", elapsed)
	}
	m := linMode(t, r, linLog)
	if m.Result != porcupine.Unknown || r.Holds(linLog) || !slices.Equal(m.TimedOutKeys, []string{"k"}) {
		t.Fatalf("timed-out check: %+v, holds %v", m, r.Holds(linLog))
	}
	if v := r.Violations(); v != nil {
		t.Fatalf("a timeout is not a violation: %q", v)
	}
	n := r.Notes()
	if len(n) != 1 || !strings.Contains(n[0], `mode "log"`) || !strings.Contains(n[0], `"k"`) || !strings.Contains(n[0], "not a pass") {
		t.Fatalf("timeout not noted: %q", n)
	}
}

func TestLinearizabilityRejectsAMalformedHistory(t *testing.T) {
	good := linPut(0, "k", "a", linAbsent, 0, 10*ms, callOK)
	badOp, badOutcome, badMode, backwards := good, good, linRead(0, "k", linLog, "a", 0, 10*ms), good
	badOp.Command.Op = 0
	badOutcome.Outcome = 0
	badMode.Mode = 9
	backwards.Invoke = 20 * ms
	for _, c := range []cluster.Call{badOp, badOutcome, badMode, backwards} {
		r := Linearizability([]cluster.Call{good, c}, LinearizabilityOptions{})
		if !errors.Is(r.Err, ErrMalformedHistory) || len(r.Modes) != 0 {
			t.Fatalf("%+v: err %v, modes %+v", c, r.Err, r.Modes)
		}
		if v := r.Violations(); len(v) != 1 || !strings.Contains(v[0], "not checked") {
			t.Fatalf("unchecked history not reported: %q", v)
		}
	}
	if r := Linearizability(nil, LinearizabilityOptions{}); r.Err != nil || r.Modes != nil || r.Violations() != nil {
		t.Fatalf("empty history: %+v", r)
	}
}

func TestLinearizabilityAcceptsASixtySecondSyntheticRun(t *testing.T) {
	h := synthHistory(1, sixtySeconds)
	if len(h) < 1500 || len(h) > 3000 {
		t.Fatalf("synthetic run has %d calls, want 1500-3000", len(h))
	}
	r := requireLinearizable(t, h)
	if len(r.Modes) != 3 {
		t.Fatalf("want three modes: %+v", r.Modes)
	}
}

// TestLinearizabilityProperty: synthetic histories are linearizable by
// construction and must pass; making one read return a value nobody wrote
// must fail exactly that read's mode, on that read's key.
func TestLinearizabilityProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := synthConfig{
			clients:        rapid.IntRange(1, 4).Draw(t, "clients"),
			keys:           rapid.IntRange(1, 3).Draw(t, "keys"),
			span:           time.Duration(rapid.IntRange(50, 2000).Draw(t, "spanMs")) * time.Millisecond,
			unknownPercent: rapid.IntRange(0, 20).Draw(t, "unknownPercent"),
			failPercent:    rapid.IntRange(0, 20).Draw(t, "failPercent"),
		}
		h := synthHistory(rapid.Uint64().Draw(t, "seed"), cfg)
		r := Linearizability(h, LinearizabilityOptions{})
		if v, n := r.Violations(), r.Notes(); v != nil || n != nil {
			t.Fatalf("synthetic history judged bad: %q %q", v, n)
		}
		var reads []int
		for i, c := range h {
			if c.Command.Op == cluster.OpGet && c.Outcome == callOK {
				reads = append(reads, i)
			}
		}
		if len(reads) == 0 {
			t.Skip("no completed read to mutate")
		}
		i := reads[rapid.IntRange(0, len(reads)-1).Draw(t, "read")]
		mutated := slices.Clone(h)
		mutated[i].Result = linResult("never-written")
		mode, key := h[i].Mode, string(h[i].Command.Key)
		r = Linearizability(mutated, LinearizabilityOptions{})
		m := linFindMode(r, mode)
		if m == nil || m.Result != porcupine.Illegal || !slices.Equal(m.IllegalKeys, []string{key}) {
			t.Fatalf("read %d mutated to a phantom value: mode %v result %+v, want Illegal on %q", i, mode, m, key)
		}
		for _, other := range r.Modes {
			if other.Mode != mode && !r.Holds(other.Mode) {
				t.Fatalf("mutation in mode %v broke mode %v: %+v", mode, other.Mode, other)
			}
		}
	})
}

// BenchmarkLinearizability checks a synthetic 60-second run (4 clients,
// 8 keys, about 2400 calls, 3% unknown outcomes) in all three read modes.
func BenchmarkLinearizability(b *testing.B) {
	h := synthHistory(1, sixtySeconds)
	for b.Loop() {
		if r := Linearizability(h, LinearizabilityOptions{}); r.Violations() != nil || r.Notes() != nil {
			b.Fatalf("synthetic run judged bad: %q %q", r.Violations(), r.Notes())
		}
	}
	b.ReportMetric(float64(len(h)), "calls")
}
