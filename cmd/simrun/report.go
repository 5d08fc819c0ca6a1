package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/raftsnap/testbed/canaries"
	"github.com/raftsnap/testbed/scenarios"
)

// reporter prints reports as text or JSON lines, and a progress line on a
// terminal.
type reporter struct {
	stdout, stderr io.Writer
	json           bool
	progress       bool
	total, done    int
	failed         int
	started        time.Time
	// quiet leaves violations to the parent process (for --jobs workers).
	quiet bool
}

func (r *reporter) report(rep scenarios.Report) {
	if r.started.IsZero() {
		r.started = time.Now()
	}
	r.done++
	if !rep.OK {
		r.failed++
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
		fmt.Fprintf(r.stdout, "seed=%d scenario=%s engine=%s %s virtual=%.1fs wall=%.2fs (%.0f:1) snapshots built=%d installed=%d faults=%s ops=%d trace=%s\n",
			rep.Seed, rep.Scenario, rep.Engine, status, rep.VirtualSeconds, rep.WallSeconds, ratio,
			rep.SnapshotsBuilt, rep.SnapshotsInstalled, formatCounts(rep.Faults), rep.Ops, short(rep.TraceHash))
	}
	if !rep.OK && !r.quiet {
		for _, v := range rep.Violations {
			fmt.Fprintf(r.stderr, "  seed %d: %s\n", rep.Seed, v)
		}
		fmt.Fprintf(r.stderr, "  repro: %s\n", rep.Repro)
	}
	if r.progress && r.total > 1 {
		fmt.Fprintf(r.stderr, "%d/%d seeds, %d failed, %s", r.done, r.total, r.failed, time.Since(r.started).Round(time.Second))
	}
}

func (r *reporter) finish() {
	if r.progress && r.total > 1 {
		fmt.Fprintln(r.stderr)
	}
	if r.total > 1 && !r.json {
		fmt.Fprintf(r.stdout, "%d seeds: %d passed, %d failed\n", r.done, r.done-r.failed, r.failed)
	}
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
