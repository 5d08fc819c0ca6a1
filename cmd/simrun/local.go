package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/raftsnap/testbed/cluster"
	"github.com/raftsnap/testbed/faults"
	"github.com/raftsnap/testbed/scenarios"
	"github.com/raftsnap/testbed/sim"
)

// runHere runs the seeds in this process, each in its own bubble inside a
// sub-test run by testing.Main (a bubble needs a *testing.T). testing.Main
// would exit on its own terms, so the test function exits the process
// itself once every seed's sub-test, and with it its temporary files, is
// done.
func runHere(c config, out *reporter) int {
	realStdout := os.Stdout
	test := func(t *testing.T) {
		code := 0
		var caught *scenarios.Report
		for _, seed := range c.seeds {
			var rep scenarios.Report
			passed := t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) { rep = runSeed(t, c, seed) })
			if !passed && rep.OK {
				rep.OK = false
				rep.Violations = append(rep.Violations, "the simulation itself failed: a goroutine leaked or the bubble deadlocked")
				rep.Known, rep.Signature = "", scenarios.Signature(rep.Violations)
			}
			if c.coverDir != "" {
				if err := recordCoverage(c.coverDir, rep); err != nil {
					rep.Violations = append(rep.Violations, "recording coverage: "+err.Error())
					rep.OK = false
					rep.Known, rep.Signature = "", scenarios.Signature(rep.Violations) // no known bug explains this
				}
			}
			if out.fails(rep) {
				code = 1
			}
			out.report(rep)
			if c.bug != nil && !rep.OK && rep.Known == "" {
				caught = &rep
				break
			}
		}
		os.Stdout = realStdout
		out.finish()
		if c.bug != nil {
			code = huntSummary(c, out, caught)
		}
		if c.coverDir != "" && !c.worker {
			code = max(code, coverReport(c.coverDir, out.stdout, out.stderr, c.json))
		}
		os.Exit(code)
	}
	// The testing package prints its own lines on standard output; keep
	// them away from ours, and give it no arguments so that none of the
	// -test.* flags show.
	if devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0); err == nil {
		os.Stdout = devNull
	}
	os.Args = os.Args[:1]
	testing.Main(func(string, string) (bool, error) { return true, nil }, []testing.InternalTest{{Name: "simrun", F: test}}, nil, nil)
	return 1 // not reached: the test function exits
}

// runSeed runs one seed (twice with --check-determinism).
func runSeed(t *testing.T, c config, seed uint64) scenarios.Report {
	opts := c.opts
	opts.Seed = seed
	if c.outDir != "" {
		opts.OutputDir = filepath.Join(c.outDir, fmt.Sprintf("%s-%s-seed-%d", opts.Scenario, opts.Engine, seed))
	}
	if c.bug != nil {
		opts.Mutation = c.bug.Mutation()
	}
	if c.saveSchedule != "" {
		// Saved before the run too: a run whose process dies of a
		// dependency's panic leaves its schedule all the same.
		if err := plannedSchedule(opts).Save(c.saveSchedule); err != nil {
			return scenarios.Report{Seed: seed, Scenario: opts.Scenario, Engine: opts.Engine, Violations: []string{"saving schedule: " + err.Error()}}
		}
	}
	var rep scenarios.Report
	var err error
	// known is the known upstream bug that explains the failure, once the
	// checks below have added theirs.
	known := func(rep scenarios.Report) string { return scenarios.Classify(rep, rep.Events, "") }
	if c.differential {
		var bb, pb scenarios.Report
		var diffs []string
		bb, pb, diffs, err = scenarios.Differential(t, opts)
		rep = pb
		rep.Engine = "bbolt+pebble"
		rep.Violations = append(append(prefixed("bbolt", bb.Violations), prefixed("pebble", pb.Violations)...), diffs...)
		// Each engine's run is classified on its own trace; the seed is
		// known only if every failing run is, by the same bug, and nothing
		// else failed.
		known = func(rep scenarios.Report) string {
			if len(rep.Violations) != len(bb.Violations)+len(pb.Violations) {
				return "" // the runs differ, or a later check failed too
			}
			name := ""
			for _, r := range []scenarios.Report{bb, pb} {
				if len(r.Violations) == 0 {
					continue
				}
				k := scenarios.Classify(r, r.Events, "")
				if k == "" || name != "" && k != name {
					return ""
				}
				name = k
			}
			return name
		}
	} else {
		rep, err = scenarios.Run(t, opts)
	}
	if err != nil {
		return scenarios.Report{Seed: seed, Scenario: opts.Scenario, Engine: opts.Engine, Violations: []string{err.Error()}, Signature: scenarios.Signature([]string{err.Error()})}
	}
	if c.saveSchedule != "" && rep.Schedule != nil {
		if err := rep.Schedule.Save(c.saveSchedule); err != nil {
			rep.Violations = append(rep.Violations, "saving schedule: "+err.Error())
		}
	}
	if c.checkDeterminism {
		opts.TracePath = ""
		again, err := scenarios.Run(t, opts)
		if err == nil && again.TraceHash != rep.TraceHash {
			rep.Violations = append(rep.Violations, fmt.Sprintf("determinism: trace hash %s then %s (%s)", short(rep.TraceHash), short(again.TraceHash), divergence(rep, again)))
		}
	}
	rep.Repro = repro(c, seed)
	rep.OK = len(rep.Violations) == 0
	if err := writeArtifacts(c, opts, rep); err != nil {
		rep.Violations = append(rep.Violations, err.Error())
		rep.OK = false
	}
	rep.Known, rep.Signature = known(rep), scenarios.Signature(rep.Violations)
	if c.shrink && !rep.OK && !c.differential {
		shrinkSeed(t, c, opts, rep)
	}
	return rep
}

func prefixed(engine string, vs []string) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = engine + ": " + v
	}
	return out
}

// shrinkSeed searches for a smaller failing schedule for a failing seed and
// prints it with its repro command.
func shrinkSeed(t *testing.T, c config, opts scenarios.Options, rep scenarios.Report) {
	res, err := scenarios.Shrink(t, opts, rep, c.shrinkRuns, func(o *scenarios.Options) {
		if c.bug != nil {
			o.Mutation = c.bug.Mutation()
		}
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "  shrink seed %d: %v\n", opts.Seed, err)
		return
	}
	path := filepath.Join(c.shrinkOut, fmt.Sprintf("shrunk-%s-seed-%d.json", opts.Scenario, opts.Seed))
	if err := res.Minimal.Save(path); err != nil {
		fmt.Fprintf(os.Stderr, "  shrink seed %d: saving: %v\n", opts.Seed, err)
		return
	}
	before, after := scenarios.Size(res.Original), scenarios.Size(res.Minimal)
	ftBefore, ftAfter := scenarios.FaultTime(res.Original), scenarios.FaultTime(res.Minimal)
	fmt.Fprintf(os.Stderr, "  shrunk seed %d in %d runs (%s violations kept): %d faults (%v of fault time) over %v -> %d faults (%v) over %v: %.1fx fewer faults, %.1fx less fault time, %.1fx shorter run\n",
		opts.Seed, res.Runs, res.Checker, before, ftBefore, res.Original.Duration, after, ftAfter, res.Minimal.Duration,
		float64(before)/float64(max(after, 1)), ftBefore.Seconds()/max(ftAfter.Seconds(), 0.001), res.Original.Duration.Seconds()/res.Minimal.Duration.Seconds())
	fmt.Fprintf(os.Stderr, "  minimal schedule:\n%s", indent(res.Minimal.String()))
	fmt.Fprintf(os.Stderr, "  minimal repro: go run ./cmd/simrun --seed=%d --scenario=%s --engine=%s%s%s --schedule=%s\n", opts.Seed, opts.Scenario, opts.Engine, storeFlag(c), bugFlag(c), path)
}

func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("    " + line + "\n")
	}
	return b.String()
}

func divergence(a, b scenarios.Report) string {
	ea, eb := a.Events, b.Events
	i := sim.FirstDivergence(ea, eb)
	if i < 0 {
		return "same events"
	}
	at := func(ev []sim.Event) string {
		if i < len(ev) {
			e := ev[i]
			return fmt.Sprintf("%v %s %s %s", e.At, e.Node, e.Kind, e.Detail)
		}
		return "end of trace"
	}
	return fmt.Sprintf("first divergent event #%d: %q vs %q", i, at(ea), at(eb))
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// storeFlag is the --snapshot-store flag of a repro, empty for the default.
func storeFlag(c config) string {
	if c.opts.SnapshotStore == "" || c.opts.SnapshotStore == cluster.StoreZeroCopy {
		return ""
	}
	return " --snapshot-store=" + c.opts.SnapshotStore
}

func bugFlag(c config) string {
	if c.bug != nil {
		return " --bug=" + c.bug.Name
	}
	return ""
}

func repro(c config, seed uint64) string {
	r := fmt.Sprintf("go run ./cmd/simrun --seed=%d --scenario=%s --engine=%s%s%s", seed, c.opts.Scenario, c.opts.Engine, storeFlag(c), bugFlag(c))
	if c.nodesSet {
		r += fmt.Sprintf(" --nodes=%d", c.opts.Nodes)
	}
	if c.durationSet {
		r += fmt.Sprintf(" --duration=%v", c.opts.Duration)
	}
	if c.opts.NoPipelining {
		r += " --no-pipelining"
	}
	if c.schedulePath != "" {
		r += " --schedule=" + c.schedulePath
	}
	return r
}

// plannedSchedule is the fault schedule a run of opts will follow: the one
// it replays, or the one its seed generates. parse has resolved opts.
func plannedSchedule(opts scenarios.Options) faults.Schedule {
	o, sc, _ := scenarios.Resolve(opts)
	if o.Schedule != nil {
		return *o.Schedule
	}
	return scenarios.ScheduleFor(sc, o.Seed, o.Nodes, o.Duration)
}
