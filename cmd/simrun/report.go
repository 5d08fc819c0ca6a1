package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/raftsnap/testbed/canaries"
	"github.com/raftsnap/testbed/scenarios"
)

// reporter prints reports as text or JSON lines, and a progress line on a
// terminal, and sums a sweep up: its failures grouped by known upstream
// bug and by signature.
type reporter struct {
	stdout, stderr io.Writer
	json           bool
	progress       bool
	total, done    int
	// failed counts the seeds that fail the run; known the seeds whose
	// failure a known upstream bug explains (failing too unless
	// excludeKnown).
	passed, failed, known int
	excludeKnown          bool
	// groups are the failing seeds by known bug or signature.
	groups  map[failureGroup][]uint64
	started time.Time
	// quiet leaves violations to the parent process (for --jobs workers).
	quiet bool
}

// failureGroup is what failing seeds are grouped by in a summary: the known
// upstream bug that explains them, or else their signature.
type failureGroup struct{ known, signature string }

// fails reports whether rep fails the run: it failed, and no known
// upstream bug explains it or --exclude-known was not given.
func (r *reporter) fails(rep scenarios.Report) bool {
	return !rep.OK && !(r.excludeKnown && rep.Known != "")
}

func (r *reporter) report(rep scenarios.Report) {
	if r.started.IsZero() {
		r.started = time.Now()
	}
	r.done++
	if rep.OK {
		r.passed++
	}
	if r.fails(rep) {
		r.failed++
	}
	if !rep.OK {
		if rep.Known != "" {
			r.known++
		}
		g := failureGroup{known: rep.Known}
		if g.known == "" {
			g.signature = rep.Signature
		}
		if r.groups == nil {
			r.groups = map[failureGroup][]uint64{}
		}
		r.groups[g] = append(r.groups[g], rep.Seed)
	}
	if r.progress {
		fmt.Fprint(r.stderr, "\r\033[K")
	}
	if r.json {
		b, _ := json.Marshal(rep)
		fmt.Fprintln(r.stdout, string(b))
	} else {
		status := "ok"
		if !rep.OK {
			status = "FAIL"
		}
		ratio := 0.0
		if rep.WallSeconds > 0 {
			ratio = rep.VirtualSeconds / rep.WallSeconds
		}
		if !rep.OK && rep.Known != "" {
			status += " known=" + rep.Known
		}
		fmt.Fprintf(r.stdout, "seed=%d scenario=%s engine=%s %s virtual=%.1fs wall=%.2fs (%.0f:1) snapshots built=%d installed=%d faults=%s ops=%d trace=%s\n",
			rep.Seed, rep.Scenario, rep.Engine, status, rep.VirtualSeconds, rep.WallSeconds, ratio,
			rep.SnapshotsBuilt, rep.SnapshotsInstalled, formatCounts(rep.Faults), rep.Ops, short(rep.TraceHash))
	}
	switch {
	case r.quiet || rep.OK:
	case !r.fails(rep):
		fmt.Fprintf(r.stderr, "  seed %d: known upstream bug %s: %s\n", rep.Seed, rep.Known, rep.Signature)
	default:
		for _, v := range rep.Violations {
			fmt.Fprintf(r.stderr, "  seed %d: %s\n", rep.Seed, v)
		}
		if rep.Known != "" {
			fmt.Fprintf(r.stderr, "  seed %d: explained by the known upstream bug %s (--exclude-known passes it)\n", rep.Seed, rep.Known)
		}
		fmt.Fprintf(r.stderr, "  repro: %s\n", rep.Repro)
	}
	if r.progress && r.total > 1 {
		fmt.Fprintf(r.stderr, "%d/%d seeds, %d failed, %s", r.done, r.total, r.failed, time.Since(r.started).Round(time.Second))
	}
}

// finish prints a sweep's summary: the failing seeds grouped by known
// upstream bug, then by signature, and last a line of counts. With --json
// the summary goes to stderr, so that stdout stays one object per seed.
func (r *reporter) finish() {
	if r.progress && r.total > 1 {
		fmt.Fprintln(r.stderr)
	}
	if r.total <= 1 || r.quiet {
		return
	}
	w := r.stdout
	if r.json {
		w = r.stderr
	}
	groups := make([]failureGroup, 0, len(r.groups))
	for g := range r.groups {
		groups = append(groups, g)
	}
	sort.Slice(groups, func(a, b int) bool {
		ga, gb := groups[a], groups[b]
		if (ga.known == "") != (gb.known == "") {
			return ga.known != ""
		}
		if len(r.groups[ga]) != len(r.groups[gb]) {
			return len(r.groups[ga]) > len(r.groups[gb])
		}
		return ga.known+ga.signature < gb.known+gb.signature
	})
	for _, g := range groups {
		seeds := r.groups[g]
		slices.Sort(seeds)
		list := make([]string, len(seeds))
		for i, s := range seeds {
			list[i] = strconv.FormatUint(s, 10)
		}
		what := "new failure: " + g.signature
		if g.known != "" {
			what = "known upstream bug " + g.known
		}
		fmt.Fprintf(w, "  %s, %s: %s\n", plural(len(seeds), "seed"), what, strings.Join(list, " "))
	}
	line := fmt.Sprintf("%d seeds: %d passed, %d failed", r.done, r.passed, r.failed)
	switch {
	case r.excludeKnown && r.known > 0:
		line += fmt.Sprintf(", %d known upstream (--exclude-known)", r.known)
	case r.known > 0:
		line += fmt.Sprintf(" (%d of them known upstream bugs)", r.known)
	}
	fmt.Fprintln(w, line)
}

func formatCounts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s:%d", k, m[k])
	}
	return strings.Join(parts, ",")
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// huntSummary reports a bug hunt: which checker caught the planted bug,
// and at which seed. A hunt succeeds (exit 0) when the bug was caught.
func huntSummary(c config, out *reporter, caught *scenarios.Report) int {
	type summary struct {
		Summary   bool   `json:"summary"`
		Bug       string `json:"bug"`
		Caught    bool   `json:"caught"`
		FirstSeed uint64 `json:"first_seed,omitempty"`
		CaughtBy  string `json:"caught_by,omitempty"`
		Expected  string `json:"expected_checker"`
		Seeds     int    `json:"seeds_run"`
	}
	s := summary{Summary: true, Bug: c.bug.Name, Expected: c.bug.Catcher, Seeds: out.done}
	if caught != nil {
		s.Caught, s.FirstSeed, s.CaughtBy = true, caught.Seed, canaries.CheckerOf(caught.Violations[0])
	}
	if c.json {
		b, _ := json.Marshal(s)
		fmt.Fprintln(out.stdout, string(b))
	} else if s.Caught {
		fmt.Fprintf(out.stdout, "bug %s: caught at seed %d by %s (expected %s), after %d seeds\n", s.Bug, s.FirstSeed, s.CaughtBy, s.Expected, s.Seeds)
	} else {
		fmt.Fprintf(out.stdout, "bug %s: NOT caught in %d seeds\n", s.Bug, s.Seeds)
	}
	if s.Caught {
		return 0
	}
	return 1
}

// plural is "1 seed", "2 seeds".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
